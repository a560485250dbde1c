"""Localisation evaluation of saliency maps against ground-truth boxes.

Conventions (fixed here, used by ``core/evaluation/eval.py`` and its report):

* **Predicted box** = the *top-scoring* box of :func:`core.boxes.boxes_from_maps`
  (the connected component with the highest mean map value), i.e. exactly the box the
  app draws first (``Explanation.boxes[i][0]``). ``select="area"`` (largest component,
  the original MaxBoxAcc convention) is available for comparison. An image whose map
  yields no component has no box and scores IoU = Dice = 0.
* **CorLoc** = fraction of images whose predicted box has IoU >= 0.5.
* **MaxBoxAccV2** (``core.metrics``) uses all components at every map threshold, so it
  does not depend on the box threshold at all.
* **Threshold selection**: a method's box threshold is the candidate with the highest
  mean IoU on the *validation* split (:func:`calibrate_threshold`); never on the data
  that is reported.
* **Intervals**: percentile bootstrap over images, seeded; a paired bootstrap resamples
  the same images for two methods and gives the interval of the mean difference.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from core.boxes import Box, Threshold, boxes_from_maps
from core.grid_boxes import DEFAULT_BOX_FACTOR, boxes_from_grid, check_box_resolution
from core.metrics import (
    IOU_THRESHOLDS,
    best_iou_curve,
    box_dice_pairs,
    box_iou_pairs,
    cam_threshold_grid,
    max_box_acc_from_curve,
)
from core.postprocess import upsample_maps

BOX_SELECT = ("score", "area")
DEFAULT_THRESHOLD = Threshold("fraction", 0.5)
CORLOC_IOU = 0.5
# Buckets of the face box's share of the window area (context crops put it at 8-35%).
FACE_SHARE_EDGES: tuple[float, ...] = (0.15, 0.25)


def threshold_candidates(
    fractions: Iterable[float] | None = None, percentiles: Iterable[float] = (), otsu: bool = True
) -> list[Threshold]:
    """The grid searched on the validation split.

    Args:
        fractions: fraction-of-max values (default 0.05, 0.10, ..., 0.95).
        percentiles: percentile values (none by default).
        otsu: include Otsu's threshold.
    """
    fr = [round(0.05 * i, 2) for i in range(1, 20)] if fractions is None else list(fractions)
    out = [Threshold("fraction", float(v)) for v in fr]
    out += [Threshold("percentile", float(v)) for v in percentiles]
    if otsu:
        out.append(Threshold("otsu", 0.0))
    return out


def threshold_to_dict(t: Threshold) -> dict:
    """``Threshold`` -> ``{"mode", "value", "min_area"}`` (checkpoint ``thresholds`` entry)."""
    return {"mode": t.mode, "value": float(t.value), "min_area": float(t.min_area)}


def threshold_from_dict(d: dict | float, where: str = "thresholds") -> Threshold:
    """Inverse of :func:`threshold_to_dict`; a bare number means a fraction of the max.

    Raises:
        ValueError: naming ``where`` when the entry is malformed.
    """
    if isinstance(d, (int, float)):
        return Threshold("fraction", float(d))
    if not isinstance(d, dict) or "mode" not in d or "value" not in d:
        raise ValueError(f"{where}: expected {{'mode': ..., 'value': ...}}, but got {d!r}")
    try:
        return Threshold(str(d["mode"]), float(d["value"]), float(d.get("min_area", 0.0)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class StoredThreshold:
    """A method's entry in a checkpoint's ``thresholds`` (written by ``maskstream eval --calibrate``).

    Attributes:
        threshold: how its maps become boxes.
        options: method options stored with it (``haycam+hr``: its ``HiResConfig`` fields), else {}.
        calibrated: fitted on the val split.
        val_iou: the val IoU it reached, when stored.
        entry: the raw entry.
    """

    threshold: Threshold
    options: dict
    calibrated: bool
    val_iou: float | None
    entry: dict


def stored_threshold(thresholds: Mapping, method: str, where: str = "checkpoint") -> StoredThreshold | None:
    """The one lookup of a method's stored threshold (and options) in a checkpoint's ``thresholds``.

    Returns:
        None when ``method`` has no entry.

    Raises:
        ValueError: naming ``where`` and the method when the entry is malformed.
    """
    entry = thresholds.get(method)
    if entry is None:
        return None
    spec = threshold_from_dict(entry, f"{where}: thresholds[{method!r}]")
    if not isinstance(entry, dict):
        return StoredThreshold(spec, {}, False, None, {})
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"{where}: thresholds[{method!r}]['options'] must be a mapping, but got {options!r}")
    val = entry.get("val_iou")
    return StoredThreshold(spec, dict(options), bool(entry.get("calibrated", False)),
                           None if val is None else float(val), dict(entry))


def _iter_chunks(maps: Tensor, size: tuple[int, int], chunk: int, upsample: bool = True
                 ) -> Iterable[tuple[int, Tensor]]:
    for s in range(0, maps.shape[0], chunk):
        yield s, upsample_maps(maps[s:s + chunk].float(), size) if upsample else maps[s:s + chunk]


def _boxes(small: Tensor, up: Tensor, spec: Threshold, size: tuple[int, int], box_resolution: int | str
           ) -> list[list[Box]]:
    """The app's boxes for one chunk: on the grid from the native maps, or from the upsampled ones."""
    if box_resolution == "full":
        return boxes_from_maps(up, spec)
    return boxes_from_grid(small.float(), size, spec, int(box_resolution))


def _pick(boxes: list, select: str) -> list[float] | None:
    if not boxes:
        return None
    return (max(boxes, key=lambda x: x.area) if select == "area" else boxes[0]).xyxy


def _check_select(select: str) -> None:
    if select not in BOX_SELECT:
        raise ValueError(f"select must be one of {list(BOX_SELECT)}, but got {select!r}")


def predicted_boxes_multi(
    maps: Tensor, specs: Sequence[Threshold], size: tuple[int, int] | None = None, select: str = "score",
    chunk: int = 64, box_resolution: int | str = DEFAULT_BOX_FACTOR,
) -> np.ndarray:
    """Predicted boxes of every map under each of several thresholds (maps upsampled once).

    ``box_resolution`` is the grid factor boxes are cut at (``core.grid_boxes``, as ``core.explain``),
    or ``"full"``: on the maps upsampled to ``size``.

    Returns:
        (len(specs), N, 4) float64; NaN rows where no box was found.
    """
    _check_select(select)
    size = tuple(maps.shape[-2:]) if size is None else tuple(size)
    box_resolution = check_box_resolution(box_resolution)
    out = np.full((len(specs), maps.shape[0], 4), np.nan)
    for s, up in _iter_chunks(maps, size, chunk, box_resolution == "full"):
        for k, spec in enumerate(specs):
            for j, bl in enumerate(_boxes(maps[s:s + chunk], up, spec, size, box_resolution)):
                b = _pick(bl, select)
                if b is not None:
                    out[k, s + j] = b
    return out


def predicted_boxes(
    maps: Tensor, spec: Threshold, size: tuple[int, int] | None = None, select: str = "score", chunk: int = 64,
    box_resolution: int | str = DEFAULT_BOX_FACTOR,
) -> np.ndarray:
    """One predicted box per map.

    Args:
        maps: (N, h, w) maps in [0, 1] (upsampled to ``size`` first, chunk by chunk,
            as ``core.explain`` does; None keeps their size).
        spec: box threshold.
        size: (H, W) the boxes' pixel frame.
        select: ``score`` (top mean value; the app's box) or ``area`` (largest component).
        box_resolution: grid factor, or ``"full"`` (see :func:`predicted_boxes_multi`).

    Returns:
        (N, 4) float64 boxes [x1, y1, x2, y2]; a row of NaN where no box was found.
    """
    return predicted_boxes_multi(maps, [spec], size, select, chunk, box_resolution)[0]


def box_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and Dice (N,) of predicted (N, 4; NaN = none) against GT (N, 4) boxes."""
    p, g = torch.as_tensor(np.asarray(pred, np.float64)), torch.as_tensor(np.asarray(gt, np.float64))
    return box_iou_pairs(p, g).numpy(), box_dice_pairs(p, g).numpy()


def mean_iou(maps: Tensor, gt: np.ndarray, spec: Threshold, size: tuple[int, int] | None = None,
             select: str = "score", box_resolution: int | str = DEFAULT_BOX_FACTOR) -> float:
    """Mean IoU of the predicted boxes of ``maps`` at threshold ``spec``."""
    iou, _ = box_scores(predicted_boxes(maps, spec, size, select, box_resolution=box_resolution), gt)
    return float(iou.mean()) if iou.size else 0.0


@dataclass(frozen=True)
class Calibration:
    """Result of a threshold search: the chosen threshold and every candidate's score."""

    threshold: Threshold
    mean_iou: float
    table: list = field(default_factory=list)  # [(threshold dict, mean IoU)]


def calibrate_threshold(
    maps: Tensor,
    gt: np.ndarray,
    candidates: Sequence[Threshold] | None = None,
    size: tuple[int, int] | None = None,
    select: str = "score",
    box_resolution: int | str = DEFAULT_BOX_FACTOR,
) -> Calibration:
    """Pick the box threshold with the highest mean IoU on the given (validation) maps.

    Ties go to the earlier candidate. Call this on the validation split only.

    Args:
        maps: (N, h, w) validation maps in [0, 1].
        gt: (N, 4) their ground-truth boxes in ``size`` pixels.
        candidates: thresholds to try (default :func:`threshold_candidates`).
        box_resolution: grid factor, or ``"full"`` (see :func:`predicted_boxes_multi`).
    """
    if maps.shape[0] == 0:
        raise ValueError("calibrate_threshold needs at least one map")
    cands = list(candidates) if candidates is not None else threshold_candidates()
    preds = predicted_boxes_multi(maps, cands, size, select, box_resolution=box_resolution)
    table = [(threshold_to_dict(c), float(box_scores(p, gt)[0].mean())) for c, p in zip(cands, preds)]
    best = int(np.argmax([s for _, s in table]))
    return Calibration(cands[best], table[best][1], table)


def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) how often each image is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def _percentiles(s: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.quantile(s, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over images.

    Args:
        values: (N,) per-image values.
        n_boot: resamples; seed: RNG seed (same seed, same resamples).

    Returns:
        (lo, hi); (nan, nan) for empty input.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return float("nan"), float("nan")
    return _percentiles(_resample_counts(v.size, n_boot, seed) @ v / v.size, level)


def maxboxacc_bootstrap_ci(
    best_iou: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> tuple[float, float]:
    """Percentile bootstrap interval of MaxBoxAccV2 (map thresholds re-maximised per resample).

    Args:
        best_iou: (N, T) curve from :func:`core.metrics.best_iou_curve`.
    """
    b = np.asarray(best_iou, dtype=np.float64)
    if b.ndim != 2 or b.shape[0] == 0 or b.shape[1] == 0:
        return float("nan"), float("nan")
    n, t = b.shape
    deltas = np.asarray(iou_thresholds, dtype=np.float64)
    hits = (b[:, :, None] >= deltas - 1e-12).reshape(n, -1).astype(np.float64)  # (N, T*D)
    acc = (_resample_counts(n, n_boot, seed) @ hits / n).reshape(n_boot, t, deltas.size)
    return _percentiles(acc.max(axis=1).mean(axis=1), level)


@dataclass(frozen=True)
class PairedDiff:
    """Paired bootstrap of mean(a) - mean(b) over the same images."""

    diff: float
    ci95: tuple[float, float]
    p_le_zero: float  # fraction of resamples with difference <= 0
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci95[0] > 0 or self.ci95[1] < 0


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> PairedDiff:
    """Paired percentile bootstrap of mean(a - b).

    Args:
        a, b: (N,) per-image scores of two methods on the same images.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be matching 1-D arrays, but got shapes {a.shape} and {b.shape}")
    d = a - b
    if d.size == 0:
        return PairedDiff(float("nan"), (float("nan"), float("nan")), float("nan"), 0)
    s = _resample_counts(d.size, n_boot, seed) @ d / d.size
    lo, hi = _percentiles(s, level)
    return PairedDiff(float(d.mean()), (float(lo), float(hi)), float((s <= 0).mean()), int(d.size))


@dataclass(frozen=True)
class MethodScores:
    """Per-image localisation scores of one method.

    Attributes:
        iou, dice: (N,) of the predicted box.
        pred: (N, 4) predicted boxes (NaN rows: none).
        best_iou: (N, T) MaxBoxAccV2 curve (best component IoU per map threshold).
        cam_thresholds: (T,) the map-threshold grid.
    """

    iou: np.ndarray
    dice: np.ndarray
    pred: np.ndarray
    best_iou: np.ndarray
    cam_thresholds: np.ndarray

    def summary(self, idx: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
        """Means, CorLoc, MaxBoxAccV2 and bootstrap intervals over ``idx`` (default all)."""
        sel = np.arange(self.iou.size) if idx is None else np.asarray(idx)
        iou, dice = self.iou[sel], self.dice[sel]
        if sel.size == 0:
            return {"n": 0}
        if self.cam_thresholds.size:
            mba = max_box_acc_from_curve(self.best_iou[sel], self.cam_thresholds)
            mba_value, per_delta = mba.value, {f"{d:.1f}": v for d, v in mba.per_delta.items()}
            mba_ci = list(maxboxacc_bootstrap_ci(self.best_iou[sel], n_boot, seed))
        else:  # MaxBoxAccV2 skipped
            mba_value, per_delta, mba_ci = float("nan"), {}, [float("nan"), float("nan")]
        return {
            "n": int(sel.size),
            "iou": float(iou.mean()),
            "dice": float(dice.mean()),
            "corloc": float((iou >= CORLOC_IOU).mean()),
            "maxboxacc_v2": mba_value,
            "iou_ci95": list(bootstrap_ci(iou, n_boot, seed)),
            "dice_ci95": list(bootstrap_ci(dice, n_boot, seed)),
            "corloc_ci95": list(bootstrap_ci((iou >= CORLOC_IOU).astype(float), n_boot, seed)),
            "maxboxacc_v2_ci95": mba_ci,
            "boxacc": per_delta,
            "no_box_rate": float(np.isnan(self.pred[sel, 0]).mean()),
        }

    def by_face_share(self, gt: np.ndarray, size: tuple[int, int],
                      edges: Sequence[float] = FACE_SHARE_EDGES) -> dict[str, dict]:
        """Whether the boxes follow the face's size: scores per bucket of the face's share of the window.

        Args:
            gt: (N, 4) ground-truth boxes in ``size`` pixels, the ones these scores were computed against.
            size: (H, W) of the window.
            edges: increasing bucket edges on gt area / window area.

        Returns:
            ``{bucket: {"n", "iou", "area_ratio", "oracle_iou"}}`` in the order of
            :func:`face_share_labels`: mean IoU (no box counts 0), the median predicted/true box area
            over crops that got a box (1 = the right size; NaN when none did), and the mean per-crop
            best IoU over the MaxBoxAccV2 map thresholds (what a perfect per-crop threshold would give;
            absent when MaxBoxAccV2 was skipped). Empty buckets give ``{"n": 0}``.
        """
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        if gt.shape[0] != self.iou.size:
            raise ValueError(f"gt must have one box per scored image ({self.iou.size}), but got {gt.shape[0]}")
        ratios = box_area_ratio(self.pred, gt)
        bucket = np.digitize(face_share(gt, size), np.asarray(edges, np.float64))
        out = {}
        for k, name in enumerate(face_share_labels(edges)):
            sel = np.flatnonzero(bucket == k)
            if sel.size == 0:
                out[name] = {"n": 0}
                continue
            ratio = ratios[sel][~np.isnan(ratios[sel])]
            out[name] = {"n": int(sel.size), "iou": float(self.iou[sel].mean()),
                         "area_ratio": float(np.median(ratio)) if ratio.size else float("nan")}
            if self.cam_thresholds.size:
                out[name]["oracle_iou"] = float(self.best_iou[sel].max(axis=1).mean())
        return out


def face_share(gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N,) area of each (N, 4) ground-truth box over the window area ``H·W``."""
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    return (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) / float(size[0] * size[1])


def box_area_ratio(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N,) predicted box area over ground-truth box area (NaN where ``pred`` is a NaN row: no box)."""
    pred = np.asarray(pred, np.float64).reshape(-1, 4)
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    return ((pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])) / ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))


def face_share_labels(edges: Sequence[float] = FACE_SHARE_EDGES) -> list[str]:
    """Bucket names for :meth:`MethodScores.by_face_share`, e.g. ``['<15%', '15-25%', '>=25%']``."""
    pct = [f"{100 * e:g}" for e in edges]
    return [f"<{pct[0]}%", *(f"{a}-{b}%" for a, b in zip(pct, pct[1:])), f">={pct[-1]}%"]


def score_method(
    maps: Tensor,
    gt: np.ndarray,
    spec: Threshold,
    size: tuple[int, int] | None = None,
    select: str = "score",
    cam_thresholds: np.ndarray | None = None,
    chunk: int = 64,
    box_resolution: int | str = DEFAULT_BOX_FACTOR,
) -> MethodScores:
    """Everything the report needs for one method.

    Args:
        maps: (N, h, w) maps in [0, 1] (upsampled to ``size`` chunk by chunk).
        gt: (N, 4) ground-truth boxes in ``size`` pixels (one per image).
        spec: box threshold (from validation).
        cam_thresholds: MaxBoxAccV2 grid (default 0.00..0.99 step 0.01); an empty
            array skips MaxBoxAccV2 (which is always measured on the maps at ``size``).
        box_resolution: grid factor the predicted boxes are cut at, or ``"full"``.
    """
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    if gt.shape[0] != maps.shape[0]:
        raise ValueError(f"gt must have one box per map ({maps.shape[0]}), but got {gt.shape[0]}")
    size = tuple(maps.shape[-2:]) if size is None else tuple(size)
    thr = cam_threshold_grid() if cam_thresholds is None else np.asarray(cam_thresholds, np.float64)
    _check_select(select)
    box_resolution = check_box_resolution(box_resolution)
    pred = np.full((maps.shape[0], 4), np.nan)
    curve = np.zeros((maps.shape[0], thr.size))
    for s, up in _iter_chunks(maps, size, chunk):  # upsample each chunk once for both
        for j, bl in enumerate(_boxes(maps[s:s + chunk], up, spec, size, box_resolution)):
            b = _pick(bl, select)
            if b is not None:
                pred[s + j] = b
        if thr.size:
            curve[s:s + up.shape[0]] = best_iou_curve(up, list(gt[s:s + up.shape[0]]), thr)
    iou, dice = box_scores(pred, gt)
    return MethodScores(iou, dice, pred, curve, thr)


def peak_in_box(maps: Tensor, gt: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Whether each map's maximum falls inside its ground-truth box (a threshold-free check).

    The peak is taken on the map upsampled to ``size`` (bilinear, as for boxes); ties go to
    the first position in row-major order. A pixel (x, y) is inside [x1, y1, x2, y2] when
    x1 <= x + 0.5 <= x2 and y1 <= y + 0.5 <= y2 (pixel centres).

    Args:
        maps: (N, h, w) maps.
        gt: (N, 4) boxes in ``size`` pixels.
        size: (H, W) pixel frame of ``gt`` (default the maps' own size).

    Returns:
        (N,) bool.
    """
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    if gt.shape[0] != maps.shape[0]:
        raise ValueError(f"gt must have one box per map ({maps.shape[0]}), but got {gt.shape[0]}")
    size = tuple(maps.shape[-2:]) if size is None else tuple(size)
    out = np.zeros(maps.shape[0], dtype=bool)
    for s, up in _iter_chunks(maps, size, 64):
        flat = up.reshape(up.shape[0], -1).argmax(dim=1).cpu().numpy()
        y, x = np.divmod(flat, size[1])
        g = gt[s:s + up.shape[0]]
        cx, cy = x + 0.5, y + 0.5
        out[s:s + up.shape[0]] = (g[:, 0] <= cx) & (cx <= g[:, 2]) & (g[:, 1] <= cy) & (cy <= g[:, 3])
    return out
