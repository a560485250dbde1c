"""Measure face-detector recall and speed on facemask_voc (research data in ../shared, never copied).

For each detector: recall of the annotated faces at IoU >= 0.5 and >= 0.3, overall, per label
(with_mask / without_mask / mask_weared_incorrect) and per face size (sqrt of box area);
detections per image and the fraction of detections that match a face (a precision proxy:
unannotated faces count as misses); median and mean ms per image (one image per call, after warm-up).

    nice python -m tools.detector_recall                      # all detectors, all 725 photos
    nice python -m tools.detector_recall --limit 100 --detectors retinaface,centerface:input_size=960

A detector spec is ``name[:key=value,...]`` with DetectorOptions keys (input_size=none for native size).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.detect import DETECTORS, create_detector  # noqa: E402 (after the sys.path fix)
from core.detect.recall import SIZE_BUCKETS, RecallCounter  # noqa: E402

LABELS = ("with_mask", "without_mask", "mask_weared_incorrect")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "facemask_voc"


def parse_spec(spec: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` -> (name, options) with numbers and ``none`` converted."""
    name, _, rest = spec.partition(":")
    opts: dict = {}
    for kv in filter(None, rest.split(",")):
        k, eq, v = kv.partition("=")
        if not eq:
            raise SystemExit(f"detector spec {spec!r}: option {kv!r} must be key=value")
        if v.lower() == "none":
            opts[k] = None
        elif v.lower() in ("true", "false"):
            opts[k] = v.lower() == "true"
        else:
            try:
                opts[k] = int(v)
            except ValueError:
                try:
                    opts[k] = float(v)
                except ValueError:
                    opts[k] = v
    return name, opts


SPLITS = ("all", "train", "val", "trainval", "test")


def split_files(data: Path, split: str) -> set[str] | None:
    """Files of ``split`` of THE split (:func:`core.data.splits.voc_split`); None for ``all``."""
    if split == "all":
        return None
    from core.data.splits import voc_split
    from core.data.voc import read_duplicate_groups, read_voc

    parts = voc_split(read_voc(data), read_duplicate_groups(data))
    sides = ("train", "val") if split == "trainval" else (split,)
    return {im.file for side in sides for im in parts[side]}


def load(data: Path, limit: int | None, split: str = "all") -> list[tuple[dict, np.ndarray]]:
    """(annotation, BGR image) of the first ``limit`` photos of ``split``, in annotation order."""
    ann_path = data / "annotations.json"
    if not ann_path.is_file():
        raise SystemExit(f"{ann_path} not found (pass --data)")
    keep = split_files(data, split)
    anns = [a for a in json.loads(ann_path.read_text()) if keep is None or a["file"] in keep][: limit or None]
    out = []
    for a in anns:
        img = cv2.imread(str(data / a["file"]), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read {data / a['file']}")
        out.append((a, img))
    return out


def measure(dets: list, items, warmup: int = 3) -> list[tuple[list[np.ndarray], list[float]]]:
    """Run each detector over all photos in turn (one photo per call, after ``warmup`` calls).

    Detectors are timed one after the other, not interleaved: onnxruntime's and OpenMP's worker
    threads spin for a while after each call, and interleaving made that spin steal the CPU from the
    next detector (MTCNN measured 30x slower interleaved than alone on the 2-core machine).

    Returns, per detector, (detections per photo, ms per photo).
    """
    out = []
    for det in dets:
        for _, img in items[:warmup]:
            det.detect([img])
        found, times = [], []
        for _, img in items:
            t0 = time.perf_counter()
            found.append(det.detect([img])[0])
            times.append((time.perf_counter() - t0) * 1000)
        out.append((found, times))
    return out


def count(items, found: list[np.ndarray], score: float) -> RecallCounter:
    """Recall counts for detections scoring >= ``score``."""
    rc = RecallCounter()
    for (a, _), d in zip(items, found):
        rc.add(a["boxes"], d[d[:, 4] >= score])
    return rc


def sweep_table(label: str, items, found: list[np.ndarray], scores: list[float]) -> str:
    rows = [
        f"#### {label}: score threshold sweep",
        "",
        "| score >= | recall@0.5 % | recall@0.3 % | masked@0.3 % | <16px@0.3 % | >=32px@0.3 % | dets/img "
        "| false dets/img@0.3 | matched dets@0.3 % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        rc = count(items, found, s)
        cells = [f"{s:g}", pct(rc.recall("all", 0.5)), pct(rc.recall("all", 0.3)), pct(rc.masked_recall(0.3))]
        cells += [pct(rc.recall("<16px", 0.3)), pct(recall_over(rc, ("32-64px", ">=64px"), 0.3))]
        false = (rc.detections - rc.det_matched.get(0.3, 0)) / max(rc.images, 1)
        cells += [f"{rc.detections / max(rc.images, 1):.2f}", f"{false:.2f}", pct(rc.matched_fraction(0.3))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def detector_table(label: str, rc: RecallCounter) -> str:
    rows = [f"### {label}", "", "| faces | n | recall@0.5 % | recall@0.3 % |", "|---|---:|---:|---:|"]
    for key in ("all",) + LABELS + tuple(b for b, _ in SIZE_BUCKETS):
        rows.append(f"| {key} | {rc.total.get(key, 0)} | {pct(rc.recall(key, 0.5))} | {pct(rc.recall(key, 0.3))} |")
    return "\n".join(rows)


def summary_table(results) -> str:
    rows = [
        (
            "| detector | input | recall@0.5 | masked@0.5 | unmasked@0.5 | recall@0.3 | masked@0.3 "
            "| <16px@0.3 | 16-32px@0.3 | dets/img | matched dets@0.3 % | ms/img median | ms/img mean |"
        ),
        "|---|---|" + "---:|" * 11,
    ]
    for label, det, rc, times in results:
        cells = [label, str(det.options.input_size or "native")]
        cells += [pct(rc.recall("all", 0.5)), pct(rc.masked_recall(0.5)), pct(rc.recall("without_mask", 0.5))]
        cells += [pct(rc.recall("all", 0.3)), pct(rc.masked_recall(0.3))]
        cells += [pct(rc.recall("<16px", 0.3)), pct(rc.recall("16-32px", 0.3))]
        cells += [f"{rc.detections / max(rc.images, 1):.2f}", pct(rc.matched_fraction(0.3))]
        cells += [f"{statistics.median(times):.1f}", f"{statistics.fmean(times):.1f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def recall_over(rc: RecallCounter, keys: tuple[str, ...], iou: float) -> float:
    """Recall over several groups together (e.g. the 32-64px and >=64px buckets); nan when empty."""
    n = sum(rc.total.get(k, 0) for k in keys)
    return sum(rc.hits.get((iou, k), 0) for k in keys) / n if n else float("nan")


CROWD_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("<16px", ("<16px",)),
    ("16-32px", ("16-32px",)),
    (">=32px", ("32-64px", ">=64px")),
    ("with_mask", ("with_mask",)),
    ("without_mask", ("without_mask",)),
    ("incorrect", ("mask_weared_incorrect",)),
    ("all", ("all",)),
)


def crowd_table(results, iou: float = 0.3) -> str:
    """Recall % by face size and class at ``iou``, false detections per image, and cost against the
    first row (all rows measured in the same run, one after another)."""
    if not results:
        return ""
    base = statistics.median(results[0][3])
    first = results[0][2]
    head = " | ".join(f"{c} (n={sum(first.total.get(k, 0) for k in keys)})" for c, keys in CROWD_COLUMNS)
    rows = [
        f"| detector | {head} | false dets/img | ms/img median | x first |",
        "|---|" + "---:|" * (len(CROWD_COLUMNS) + 3),
    ]
    for label, _, rc, times in results:
        cells = [label] + [pct(recall_over(rc, keys, iou)) for _, keys in CROWD_COLUMNS]
        false = (rc.detections - rc.det_matched.get(iou, 0)) / max(rc.images, 1)
        med = statistics.median(times)
        cells += [f"{false:.2f}", f"{med:.1f}", f"{med / base:.2f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="facemask_voc folder (annotations.json + images/)")
    p.add_argument("--limit", type=int, default=None, help="first N photos only")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="side of THE split (core.data.splits.voc_split): choose options on trainval, report test only",
    )
    p.add_argument(
        "--detectors",
        default=",".join(DETECTORS),
        help="semicolon- or comma-separated specs name[:k=v,...]; "
        "use ';' between specs when a spec has several options",
    )
    p.add_argument("--sweep", default="", help="comma-separated score thresholds to tabulate (runs at the lowest)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per detector (0: runtime default)")
    args = p.parse_args(argv)

    sep = ";" if ";" in args.detectors else ","
    specs = [s.strip() for s in args.detectors.split(sep) if s.strip()]
    sweep = sorted(float(x) for x in args.sweep.split(",")) if args.sweep else []
    items = load(args.data, args.limit, args.split)
    print(f"{len(items)} photos, {sum(len(a['boxes']) for a, _ in items)} faces from {args.data} ({args.split})\n")
    built = []
    for spec in specs:
        name, opts = parse_spec(spec)
        if args.threads:
            opts.setdefault("threads", args.threads)
        if sweep:
            opts["score_threshold"] = min(sweep + [opts.get("score_threshold", 1.0)])
        try:
            built.append((spec, create_detector(name, **opts)))
        except ValueError as e:
            print(f"skipping {spec}: {e}\n", file=sys.stderr)
    if not built:
        return 1
    measured = measure([d for _, d in built], items)
    results = []
    for (spec, det), (found, times) in zip(built, measured):
        _, opts = parse_spec(spec)
        score = opts.get("score_threshold", type(det).default_options.get("score_threshold", 0.5))
        rc = count(items, found, score)
        results.append((spec, det, rc, times))
        runs_on = det.session.get_providers()[0] if hasattr(det, "session") else det.options.device
        print(
            detector_table(f"{spec} (score >= {score}, input {det.options.input_size or 'native'}, on {runs_on})", rc)
        )
        print()
        if sweep:
            print(sweep_table(spec, items, found, sweep))
            print()
    print("### summary (recall % of annotated faces; masked = with_mask + mask_weared_incorrect)\n")
    print(summary_table(results))
    print(
        f"\n### crowd view: recall % at IoU 0.3 by face size (sqrt of area) and class; false = detections "
        f"matching no annotated face; cost relative to {results[0][0]!r}\n"
    )
    print(crowd_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
