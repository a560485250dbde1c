"""``maskstream eval``: thin wrapper over :mod:`core.evaluation.eval` (all logic lives there)."""
from __future__ import annotations

NAME = "eval"
HELP = "evaluate classification and map localisation (IoU, Dice, CorLoc, MaxBoxAccV2) on a VOC-style folder"
DESCRIPTION = (
    "Evaluate the model and every map method (gradcam, gradcam++, layercam, eigencam, haycam, haycam+, and the "
    "high-resolution haycam+hr) on context crops cut from a VOC-style folder (annotations.json + images). "
    "By default only the held-out test side of the shared split is used; box thresholds come from the "
    "checkpoint (fit them on the val side with --calibrate). Writes OUT/report.json, OUT/report.md (tables "
    "with 95% bootstrap intervals, accuracy by face size), OUT/figure.png (example maps and boxes), "
    "OUT/errors.png (the misclassified crops), OUT/extent.png (box size against face size) and OUT/per_crop.csv."
)
ORDER = 60


def add_arguments(parser) -> None:
    from core.evaluation.eval import add_arguments as add

    add(parser)


def run(args) -> int:
    from core.evaluation.eval import options_from_args, run_eval

    report = run_eval(options_from_args(args))
    loc = report["localization"]
    best = max(loc, key=lambda m: loc[m]["iou"])
    c = report["classification"]
    print(f"wrote {args.out}/report.json, report.md, figure.png, errors.png, extent.png, per_crop.csv; "
          f"accuracy {c['accuracy']:.4f}; best mean IoU: {best} {loc[best]['iou']:.4f}")
    return 0
