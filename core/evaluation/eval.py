"""``maskstream eval``: classification and localisation of every map method on context crops.

Pipeline (all seeded, deterministic):

1. Read the VOC-style folder (``annotations.json`` + images). With ``--split test`` the
   images are split by :func:`core.data.splits.voc_split` (THE split; group-aware) and only
   the held-out ``test`` side is evaluated; ``--split all`` evaluates every image (a user's
   own folder).
2. Cut context crops (:func:`core.data.context_crops.build_context_crops`, one face per
   square window, at the model's input size); the face box is the ground truth.
3. One forward per batch gives logits and last-conv activations; every method of
   ``core.cams.METHODS`` is computed from them (``core.explain_features``), plus the
   high-resolution ``haycam+hr`` (``core.cams.haycam_hr``).
4. Each method's box threshold comes from the checkpoint's ``thresholds`` entry, which
   ``--calibrate`` fits on the *val* side of the split (max mean IoU) and writes into a copy
   of the checkpoint; without one a documented default (0.5 of the max) is used and the
   report says "not calibrated".
5. report.json, report.md (the paper's Tables 1–2 with bootstrap intervals, per class, a
   paired bootstrap of the best maskstream map vs the best baseline) and figure.png.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.boxes import Threshold
from core.cams import METHODS
from core.cams.haycam_hr import DEFAULT_HR, HiResConfig, HiResHayCAM, forward_mid_last
from core.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint
from core.errors import UserError
from core.explain import explain_features
from core.grid_boxes import DEFAULT_BOX_FACTOR, check_box_resolution
from core.localization import (
    DEFAULT_THRESHOLD,
    MethodScores,
    box_area_ratio,
    calibrate_threshold,
    face_share,
    paired_bootstrap,
    score_method,
    stored_threshold,
    threshold_candidates,
    threshold_to_dict,
)
from core.metrics import cam_threshold_grid
from core.model import CamModel
from core.postprocess import upsample_maps
from core.preprocess import images_to_input

log = logging.getLogger("maskstream.eval")

HR_METHOD = "haycam+hr"
ALL_METHODS: tuple[str, ...] = (*METHODS, HR_METHOD)
MASKSTREAM_MAPS: tuple[str, ...] = ("haycam+", HR_METHOD)
BASELINES: tuple[str, ...] = ("gradcam", "gradcam++", "layercam", "eigencam", "haycam")
# Searched on val by --calibrate. The paper's fraction 0.9 for every variant, plus smaller fractions:
# on the shipped mobilenet_v2, val IoU of 7x7 HayCAM+ rises as the fraction falls (tools/eval_ablation.py).
HR_CANDIDATES: tuple[HiResConfig, ...] = (
    HiResConfig("dilate"),
    HiResConfig("fuse", "product"),
    HiResConfig("fuse", "mean"),
    HiResConfig("fuse", "max"),
    HiResConfig("scale", scale=2.0),
    HiResConfig("dilate", variance_fraction=0.5),
    HiResConfig("dilate", variance_fraction=0.7),
    HiResConfig("fuse", "product", variance_fraction=0.5),
    HiResConfig("shift"),
    HiResConfig("shift", variance_fraction=0.7),
    HiResConfig("shift", variance_fraction=0.5),
)


def hr_candidates(model: CamModel) -> tuple[HiResConfig, ...]:
    """The haycam+hr variants ``--calibrate`` searches for ``model``: all of ``HR_CANDIDATES``, less
    ``dilate`` for a model already at output stride 16 (its last stage is dilated by training)."""
    if model.output_stride == 16:
        return tuple(c for c in HR_CANDIDATES if c.variant != "dilate")
    return HR_CANDIDATES


SPLITS = ("test", "all")
TARGETS = ("pred", "gt")


@dataclass
class EvalOptions:
    """Everything ``maskstream eval`` is told (see ``add_arguments`` for the meaning)."""

    data: Path
    out: Path
    methods: tuple[str, ...] = ALL_METHODS
    checkpoint: Path | None = None
    seed: int = 0
    split: str = "test"
    calibrate: bool = False
    calibrated_checkpoint: Path | None = None
    batch_size: int = 32
    n_boot: int = 1000
    cam_step: float = 0.01
    target: str = "pred"
    box_select: str = "score"
    figure_rows: int = 6
    limit: int = 0
    threads: int = 0
    progress: bool = True
    box_resolution: int | str = DEFAULT_BOX_FACTOR


@dataclass
class Crops:
    """Evaluation crops as arrays: images (N of (S, S, 3) BGR), boxes (N, 4), labels, files, and
    face_px (N,): the face box's shorter side in the source photo (NaN when unknown)."""

    images: list
    boxes: np.ndarray
    labels: list
    files: list
    face_px: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class MethodThreshold:
    """The threshold a method is evaluated with, and where it came from."""

    spec: Threshold
    calibrated: bool
    val_iou: float | None = None
    hr: HiResConfig | None = None
    extra: dict = field(default_factory=dict)


def parse_methods(text: str) -> tuple[str, ...]:
    """``all`` or a comma list of names from :data:`ALL_METHODS` (order kept, duplicates dropped)."""
    if text.strip() == "all":
        return ALL_METHODS
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ALL_METHODS]
    if bad or not names:
        raise UserError(f"--methods: unknown method(s) {bad or [text]}; valid: all, {', '.join(ALL_METHODS)}")
    return tuple(dict.fromkeys(names))


# ----------------------------------------------------------------------------- data


def load_splits(data: Path, split: str, seed: int) -> tuple[list, list | None]:
    """(images to evaluate, val images or None) from a VOC-style folder.

    Raises:
        UserError: naming the path when the folder or its annotations are missing or bad.
    """
    from core.data.errors import DataError
    from core.data.splits import voc_split
    from core.data.voc import read_duplicate_groups, read_voc

    if not data.is_dir():
        raise UserError(f"--data {data}: no such directory")
    try:
        images = read_voc(data)
        if split == "all":
            return images, None
        parts = voc_split(images, read_duplicate_groups(data))
    except DataError as exc:
        raise UserError(str(exc)) from None
    return parts["test"], parts["val"]


def make_crops(data: Path, images: Sequence, seed: int, size: int, limit: int = 0) -> Crops:
    """Context crops (seeded) of ``images`` at ``size`` px; ``limit`` > 0 keeps the first ones."""
    from core.data.context_crops import build_context_crops
    from core.data.errors import DataError

    try:
        cs = build_context_crops(data, images, seed, size=size)
    except DataError as exc:
        raise UserError(str(exc)) from None
    if limit > 0:
        cs = cs[:limit]
    face_px = np.array([c.face_px for c in cs], np.float64)
    return Crops([c.image for c in cs], np.array([c.box for c in cs], np.float64).reshape(-1, 4),
                 [c.label for c in cs], [c.source_file for c in cs], face_px)


# ----------------------------------------------------------------------------- maps


@dataclass
class MapSet:
    """logits (N, K) and, per method key, normalised maps (N, h, w) at their native grid."""

    logits: torch.Tensor
    maps: dict


@torch.no_grad()
def compute_maps(
    ckpt: Checkpoint,
    crops: Crops,
    methods: Sequence[str],
    hr: dict[str, HiResConfig] | None = None,
    batch_size: int = 32,
    target: str = "pred",
    progress: bool = True,
    desc: str = "maps",
) -> MapSet:
    """Maps of every engine method in ``methods`` and of each ``hr`` config, batched.

    Args:
        methods: engine names (``core.cams.METHODS``); other names are ignored here.
        hr: output key -> HiResConfig for high-resolution HayCAM+ variants.
        target: ``pred`` (explain the predicted class, as the app does) or ``gt``.
    """
    model, meta = ckpt.model, ckpt.meta
    engine = [m for m in methods if m in METHODS]
    hr_runners = {k: HiResHayCAM(model, cfg) for k, cfg in (hr or {}).items()}
    head_w = model.head_weights()[0].detach()
    cls = {c: i for i, c in enumerate(meta.class_names)}
    logits_all, out = [], {k: [] for k in [*engine, *hr_runners]}
    batches = range(0, len(crops), batch_size)
    need_mid = any(cfg.variant == "fuse" for cfg in (hr or {}).values())
    for s in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        x = images_to_input(crops.images[s:s + batch_size], meta)
        if need_mid:  # one forward serves the engine methods and every "fuse" variant
            logits, mid, acts = forward_mid_last(model, x)
        else:
            (logits, acts), mid = model(x), None
        tgt = None
        if target == "gt":
            tgt = torch.tensor([cls.get(lb, 0) for lb in crops.labels[s:s + batch_size]])
        logits_all.append(logits)
        for m in engine:
            e = explain_features(logits, acts, m, tuple(acts.shape[-2:]), tgt, head_weight=head_w, with_boxes=False)
            out[m].append(e.maps)
        for k, runner in hr_runners.items():
            out[k].append(runner(x, logits=logits, mid=mid, last=acts).maps)
    k = len(meta.class_names)
    logits = torch.cat(logits_all) if logits_all else torch.empty(0, k)
    return MapSet(logits, {m: torch.cat(v) for m, v in out.items() if v})


# ----------------------------------------------------------------------------- thresholds


def thresholds_from_checkpoint(ckpt: Checkpoint, methods: Sequence[str]) -> dict[str, MethodThreshold]:
    """Each method's stored threshold, or the default flagged as not calibrated."""
    out = {}
    for m in methods:
        hr = DEFAULT_HR if m == HR_METHOD else None
        try:
            stored = stored_threshold(ckpt.thresholds, m, str(ckpt.path))
            if stored is not None and m == HR_METHOD and stored.options:
                hr = HiResConfig.from_dict(stored.options)
        except ValueError as exc:
            log.warning("%s; using the default threshold (not calibrated)", exc)
            out[m] = MethodThreshold(DEFAULT_THRESHOLD, False, hr=hr)
            continue
        if stored is None:
            out[m] = MethodThreshold(DEFAULT_THRESHOLD, False, hr=hr)
            continue
        out[m] = MethodThreshold(stored.threshold, stored.calibrated, stored.val_iou, hr, stored.entry)
    return out


def calibrate(
    ckpt: Checkpoint, val: Crops, methods: Sequence[str], opts: EvalOptions
) -> dict[str, dict]:
    """Fit each method's box threshold (and the haycam+hr variant) on the validation crops.

    Returns:
        method -> checkpoint ``thresholds`` entry: mode, value, min_area, val_iou, n_val,
        calibrated=True; haycam+hr also gets ``options`` (its HiResConfig) and ``candidates``.
    """
    size = (ckpt.meta.input_size, ckpt.meta.input_size)
    hr = {f"{HR_METHOD}#{i}": c for i, c in enumerate(hr_candidates(ckpt.model))} if HR_METHOD in methods else {}
    ms = compute_maps(ckpt, val, methods, hr, opts.batch_size, opts.target, opts.progress, desc="val maps")
    cands = threshold_candidates()
    out: dict[str, dict] = {}
    common = {"calibrated": True, "n_val": len(val), "select": opts.box_select, "target": opts.target,
              "crop_seed": opts.seed}
    for m in tqdm([m for m in methods if m in METHODS], desc="calibrate", disable=not opts.progress, leave=False):
        cal = calibrate_threshold(ms.maps[m], val.boxes, cands, size, opts.box_select, opts.box_resolution)
        out[m] = {**threshold_to_dict(cal.threshold), "val_iou": cal.mean_iou, **common}
        log.info("calibrated %-10s on %d val crops: %s %.2f (val IoU %.4f)", m, len(val), cal.threshold.mode,
                 cal.threshold.value, cal.mean_iou)
    if hr:
        rows = []
        for key, cfg in hr.items():
            cal = calibrate_threshold(ms.maps[key], val.boxes, cands, size, opts.box_select, opts.box_resolution)
            rows.append((cal, cfg))
            log.info("haycam+hr candidate %s: %s %.2f, val IoU %.4f", cfg.to_dict(), cal.threshold.mode,
                     cal.threshold.value, cal.mean_iou)
        best_cal, best_cfg = max(rows, key=lambda r: r[0].mean_iou)
        out[HR_METHOD] = {**threshold_to_dict(best_cal.threshold), "val_iou": best_cal.mean_iou, **common,
                          "options": best_cfg.to_dict(),
                          "candidates": [{"options": c.to_dict(), **threshold_to_dict(cal.threshold),
                                          "val_iou": cal.mean_iou} for cal, c in rows]}
    return out


def write_calibrated_checkpoint(src: Path, dst: Path, thresholds: dict) -> Path:
    """Copy the checkpoint file ``src`` to ``dst`` with its ``thresholds`` entries replaced.

    The copy is byte-for-byte the same model (state dict, dtype, metadata); only
    ``thresholds`` changes (existing entries for other methods are kept).
    """
    blob = torch.load(src, map_location="cpu", weights_only=True)
    merged = dict(blob.get("thresholds") or {})
    merged.update(thresholds)
    blob["thresholds"] = merged
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, dst)
    return dst


# ----------------------------------------------------------------------------- scores


def classification(logits: torch.Tensor, labels: Sequence[str], class_names: Sequence[str],
                   face_px: np.ndarray | None = None) -> dict:
    """Accuracy and balanced accuracy (mean per-class recall over classes present) of the crops.

    With ``face_px`` (N,) (face shorter side in the source photo) the same numbers are also given
    per size bucket (< 16, 16-32, >= 32 px) under ``by_face_size``.
    """
    from core.training.train_diagnostics import face_size_buckets

    out = _classification(logits, labels, class_names)
    if face_px is not None and len(face_px) == len(labels):
        out["by_face_size"] = {}
        for name, mask in face_size_buckets(face_px).items():
            sel = np.flatnonzero(mask).tolist()
            out["by_face_size"][name] = _classification(logits[sel], [labels[i] for i in sel], class_names)
    return out


def _classification(logits: torch.Tensor, labels: Sequence[str], class_names: Sequence[str]) -> dict:
    idx = {c: i for i, c in enumerate(class_names)}
    keep = [i for i, lb in enumerate(labels) if lb in idx]
    if not keep:
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "n": 0}
    y = np.array([idx[labels[i]] for i in keep])
    p = logits[keep].argmax(1).cpu().numpy()
    recalls = {class_names[c]: float((p[y == c] == c).mean()) for c in np.unique(y)}
    return {"accuracy": float((p == y).mean()), "balanced_accuracy": float(np.mean(list(recalls.values()))),
            "n": len(keep), "recall": recalls, "skipped_unknown_label": int(len(labels) - len(keep))}


def pick_best(names: Sequence[str], thr: dict[str, MethodThreshold], test_iou: dict[str, float]) -> tuple[str, str]:
    """The best of ``names``: by validation IoU when all are calibrated, else by evaluated IoU."""
    names = [n for n in names if n in test_iou]
    if names and all(thr[n].calibrated and thr[n].val_iou is not None for n in names):
        return max(names, key=lambda n: thr[n].val_iou), "val"
    return max(names, key=lambda n: test_iou[n]), "evaluated split (no val calibration)"


def _default_out_checkpoint(opts: EvalOptions, src: Path) -> Path:
    return opts.calibrated_checkpoint or (opts.out / f"{src.stem}.calibrated.pt")


def run_eval(opts: EvalOptions) -> dict:
    """Run the whole evaluation and write report.json, report.md, figure.png under ``opts.out``."""
    from core.evaluation.eval_extent_plot import render_extent
    from core.evaluation.eval_figure import render_figure
    from core.evaluation.eval_report import write_markdown

    t0 = time.time()
    if opts.threads > 0:
        import cv2

        torch.set_num_threads(opts.threads)
        cv2.setNumThreads(opts.threads)
    if opts.split not in SPLITS:
        raise UserError(f"--split must be one of {list(SPLITS)}, but got {opts.split!r}")
    if opts.calibrate and opts.split != "test":
        raise UserError("--calibrate needs --split test: thresholds are fitted on the val side of the split, "
                        "never on the evaluated images")
    ckpt_path = Path(opts.checkpoint) if opts.checkpoint else DEFAULT_CHECKPOINT
    try:
        ckpt = load_checkpoint(ckpt_path)
    except CheckpointError as exc:
        raise UserError(f"--checkpoint: {exc}") from None
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {opts.out}: cannot create ({exc.strerror})") from None
    methods = opts.methods
    size = ckpt.meta.input_size
    eval_images, val_images = load_splits(opts.data, opts.split, opts.seed)
    crops = make_crops(opts.data, eval_images, opts.seed, size, opts.limit)
    if len(crops) == 0:
        raise UserError(f"--data {opts.data}: no usable face ({', '.join(ckpt.meta.class_names)}) in the "
                        f"{opts.split} images, so there is nothing to evaluate")
    log.info("%d %s images -> %d context crops (seed %d)", len(eval_images), opts.split, len(crops), opts.seed)

    calibrated_path = None
    val = make_crops(opts.data, val_images, opts.seed, size, opts.limit) if val_images is not None else None
    if opts.calibrate:
        if val is None or len(val) == 0:
            raise UserError(f"--data {opts.data}: the val side of the split has no usable face to calibrate on")
        entries = calibrate(ckpt, val, methods, opts)
        calibrated_path = write_calibrated_checkpoint(ckpt_path, _default_out_checkpoint(opts, ckpt_path), entries)
        ckpt = load_checkpoint(calibrated_path)
        log.info("calibrated thresholds written to %s", calibrated_path)
    thr = thresholds_from_checkpoint(ckpt, methods)

    hr = {HR_METHOD: thr[HR_METHOD].hr or DEFAULT_HR} if HR_METHOD in methods else {}
    ms = compute_maps(ckpt, crops, methods, hr, opts.batch_size, opts.target, opts.progress, desc="test maps")
    grid = cam_threshold_grid(opts.cam_step)
    scores: dict[str, MethodScores] = {}
    for m in tqdm(methods, desc="score", disable=not opts.progress, leave=False):
        scores[m] = score_method(ms.maps[m], crops.boxes, thr[m].spec, (size, size), opts.box_select, grid,
                                 box_resolution=opts.box_resolution)

    labels = np.array(crops.labels)
    loc, per_class = {}, {}
    for m in methods:
        loc[m] = {**scores[m].summary(None, opts.n_boot, opts.seed), "threshold": float(thr[m].spec.value),
                  "threshold_mode": thr[m].spec.mode, "calibrated": thr[m].calibrated, "val_iou": thr[m].val_iou,
                  "by_face_share": scores[m].by_face_share(crops.boxes, (size, size))}
        if m == HR_METHOD:
            loc[m]["options"] = (thr[m].hr or DEFAULT_HR).to_dict()
    for lb in sorted(set(crops.labels)):
        idx = np.flatnonzero(labels == lb)
        per_class[lb] = {m: scores[m].summary(idx, opts.n_boot, opts.seed) for m in methods}

    comparison = {}
    ours = [m for m in MASKSTREAM_MAPS if m in methods]
    base = [m for m in BASELINES if m in methods]
    if ours and base:
        test_iou = {m: loc[m]["iou"] for m in methods}
        best_ours, how = pick_best(ours, thr, test_iou)
        best_base, how_b = pick_best(base, thr, test_iou)
        d_iou = paired_bootstrap(scores[best_ours].iou, scores[best_base].iou, opts.n_boot, opts.seed)
        d_dice = paired_bootstrap(scores[best_ours].dice, scores[best_base].dice, opts.n_boot, opts.seed)
        comparison = {
            "best_maskstream": best_ours, "best_baseline": best_base,
            "chosen_on": how if how == how_b else f"{how} / {how_b}",
            "iou_diff": d_iou.diff, "iou_diff_ci95": list(d_iou.ci95), "iou_p_le_zero": d_iou.p_le_zero,
            "dice_diff": d_dice.diff, "dice_diff_ci95": list(d_dice.ci95),
            "excludes_zero": d_iou.excludes_zero, "n": d_iou.n,
        }
        ranking = sorted(methods, key=lambda m: -loc[m]["iou"])
        comparison["ranking_by_iou"] = ranking

    report = {
        "classification": classification(ms.logits, crops.labels, ckpt.meta.class_names, crops.face_px),
        "localization": loc,
        "per_class": per_class,
        "comparison": comparison,
        "reference": {"fixed_box_prior": fixed_box_prior(val, crops, opts.n_boot, opts.seed)} if val else {},
        "setup": {
            "data": str(opts.data), "split": opts.split, "n_images": len(eval_images), "n_crops": len(crops),
            "seed": opts.seed, "checkpoint": str(ckpt.path), "backbone": ckpt.meta.backbone,
            "input_size": size, "class_names": list(ckpt.meta.class_names), "target": opts.target,
            "box_select": opts.box_select, "box_resolution": opts.box_resolution,
            "cam_threshold_step": opts.cam_step, "n_boot": opts.n_boot,
            "calibrated_checkpoint": str(calibrated_path) if calibrated_path else None,
            "limit": opts.limit, "elapsed_s": None,
        },
    }

    rows = pick_examples(crops.labels, opts.figure_rows, opts.seed)
    if rows.size:
        sel = torch.as_tensor(rows)
        fig_maps = {m: upsample_maps(ms.maps[m][sel].float(), (size, size)).numpy() for m in methods}
        render_figure(opts.out / "figure.png", [crops.images[i] for i in rows], crops.boxes[rows],
                      [crops.labels[i] for i in rows], methods, fig_maps,
                      {m: scores[m].pred[rows] for m in methods}, {m: scores[m].iou[rows] for m in methods})
    if len(crops):
        shown = [m for m in dict.fromkeys([comparison.get("best_maskstream"), "haycam+", comparison.get("best_baseline")])
                 if m in methods][:4] or methods[:4]
        render_extent(opts.out / "extent.png", face_share(crops.boxes, (size, size)),
                      {m: box_area_ratio(scores[m].pred, crops.boxes) for m in shown})
        report["setup"]["extent_figure"] = "extent.png"
    err_png = write_errors(opts.out / "errors.png", crops, ms.logits, ckpt.meta.class_names)
    report["setup"]["errors_figure"] = err_png.name if err_png else None
    report["setup"]["elapsed_s"] = round(time.time() - t0, 1)
    (opts.out / "report.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    write_markdown(opts.out / "report.md", report)
    write_per_crop(opts.out / "per_crop.csv", crops, ms.logits, ckpt.meta.class_names, scores)
    log.info("wrote %s, report.md, figure.png, extent.png (%.1f s)", opts.out / "report.json", time.time() - t0)
    return report


def write_errors(path: Path, crops: Crops, logits: torch.Tensor, class_names: Sequence[str],
                 limit: int = 64) -> Path | None:
    """``errors.png``: the misclassified crops (most confident first, at most ``limit``), zoomed on the face."""
    from core.evaluation.eval_figure import render_errors

    probs = logits.float().softmax(1)
    conf, pred = probs.max(1)
    wrong = [i for i in range(len(crops)) if crops.labels[i] in class_names and class_names[int(pred[i])] != crops.labels[i]]
    wrong = sorted(wrong, key=lambda i: -float(conf[i]))[:limit]
    if path.exists():
        path.unlink()  # a stale grid from an earlier run would be misleading
    face_px = crops.face_px if crops.face_px is not None else np.full(len(crops), np.nan)
    return render_errors(path, [crops.images[i] for i in wrong], crops.boxes[wrong], [crops.labels[i] for i in wrong],
                         [class_names[int(pred[i])] for i in wrong], [float(conf[i]) for i in wrong],
                         [float(face_px[i]) for i in wrong])


def write_per_crop(path: Path, crops: Crops, logits: torch.Tensor, class_names: Sequence[str],
                   scores: dict[str, MethodScores]) -> Path:
    """One row per crop: source, label, prediction, GT box, and per method IoU, Dice and predicted box."""
    import csv

    pred = [class_names[i] for i in logits.argmax(1).tolist()]
    head = ["i", "source_file", "label", "predicted", "gt_x1", "gt_y1", "gt_x2", "gt_y2"]
    for m in scores:
        head += [f"{m}:iou", f"{m}:dice", f"{m}:x1", f"{m}:y1", f"{m}:x2", f"{m}:y2"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for i in range(len(crops)):
            row = [i, crops.files[i], crops.labels[i], pred[i], *(f"{v:.2f}" for v in crops.boxes[i])]
            for sc in scores.values():
                row += [f"{sc.iou[i]:.4f}", f"{sc.dice[i]:.4f}", *("" if np.isnan(v) else f"{v:.0f}" for v in sc.pred[i])]
            w.writerow(row)
    return path


def fixed_box_prior(val: Crops, test: Crops, n_boot: int, seed: int) -> dict:
    """A data-only reference: the same box for every crop (the median val GT box), scored on ``test``.

    Maps that do not beat it have not localised anything beyond the crops' layout prior.
    """
    from core.localization import bootstrap_ci, box_scores

    box = np.median(val.boxes, axis=0)
    iou, dice = box_scores(np.repeat(box[None], len(test), 0), test.boxes)
    return {"box": [float(v) for v in box], "iou": float(iou.mean()), "dice": float(dice.mean()),
            "corloc": float((iou >= 0.5).mean()), "iou_ci95": list(bootstrap_ci(iou, n_boot, seed)),
            "fitted_on": f"median GT box of {len(val)} val crops"}


def pick_examples(labels: Sequence[str], rows: int, seed: int) -> np.ndarray:
    """Up to ``rows`` crop indices for the figure, alternating classes, seeded."""
    if rows <= 0 or not labels:
        return np.zeros(0, dtype=int)
    rng = np.random.default_rng(seed)
    lab = np.array(labels)
    pools = [list(rng.permutation(np.flatnonzero(lab == c))) for c in sorted(set(labels))]
    out: list[int] = []
    while len(out) < min(rows, len(labels)):
        for p in pools:
            if p and len(out) < rows:
                out.append(int(p.pop()))
    return np.array(out, dtype=int)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# ----------------------------------------------------------------------------- CLI


def add_arguments(p) -> None:
    """Options of ``maskstream eval`` (also used by ``python -m core.evaluation.eval``)."""
    p.add_argument("--data", type=Path, required=True,
                   help="VOC-style folder: annotations.json + images (e.g. ../shared/data/facemask_voc)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder for report.json, report.md, figure.png, errors.png, extent.png, per_crop.csv")
    p.add_argument("--methods", default="all",
                   help=f"'all' or a comma list of: {', '.join(ALL_METHODS)}")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help=f"model checkpoint (default: the shipped {DEFAULT_CHECKPOINT.name})")
    p.add_argument("--seed", type=int, default=0, help="seed of the context crops, the figure and the bootstrap")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="'test': the held-out side of THE split (voc_split); 'all': every image of --data")
    p.add_argument("--calibrate", action="store_true",
                   help="fit each method's box threshold (and the haycam+hr variant) on the val side of the "
                        "split, write them into a copy of the checkpoint, and evaluate with them")
    p.add_argument("--calibrated-checkpoint", type=Path, default=None,
                   help="where --calibrate writes the checkpoint copy (default: OUT/<name>.calibrated.pt)")
    p.add_argument("--batch-size", type=int, default=32, help="crops per forward pass")
    p.add_argument("--bootstrap", dest="n_boot", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--cam-step", type=float, default=0.01, help="map-threshold step of MaxBoxAccV2")
    p.add_argument("--target", choices=TARGETS, default="pred",
                   help="class the gradient methods explain: the predicted one (as the app) or the true one")
    p.add_argument("--box-select", choices=("score", "area"), default="score",
                   help="which component's box is the prediction: top mean map value (as the app) or largest")
    p.add_argument("--box-resolution", default=str(DEFAULT_BOX_FACTOR),
                   help="cut boxes on the native map upsampled this many times per side (as the app does), or "
                        f"'full': on the maps at input size (the reference path); default {DEFAULT_BOX_FACTOR}")
    p.add_argument("--figure-rows", type=int, default=6, help="example rows in figure.png")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N crops (0: all; for smoke runs)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def options_from_args(args) -> EvalOptions:
    """Validated :class:`EvalOptions` from parsed arguments."""
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, but got {args.batch_size}")
    if args.n_boot < 10:
        raise UserError(f"--bootstrap must be >= 10, but got {args.n_boot}")
    if not 0.0 < args.cam_step < 1.0:
        raise UserError(f"--cam-step must be in (0, 1), but got {args.cam_step}")
    try:
        box_resolution = check_box_resolution(args.box_resolution)
    except ValueError as exc:
        raise UserError(f"--box-resolution: {exc}") from None
    return EvalOptions(
        box_resolution=box_resolution,
        data=args.data, out=args.out, methods=parse_methods(args.methods), checkpoint=args.checkpoint,
        seed=args.seed, split=args.split, calibrate=args.calibrate, calibrated_checkpoint=args.calibrated_checkpoint,
        batch_size=args.batch_size, n_boot=args.n_boot, cam_step=args.cam_step, target=args.target,
        box_select=args.box_select, figure_rows=args.figure_rows, limit=args.limit, threads=args.threads,
        progress=args.progress,
    )
