"""Boxes cut from a saliency map on a small grid: the native map upsampled ``factor``× (not to input size).

A 7×7 (or 14×14) map carries no detail that 224×224 pixels add: bilinear upsampling only
interpolates between its cells. :func:`boxes_from_grid` upsamples the normalised native map to
(h·f, w·f) cells (bilinear, half-pixel centres: the cells sample the same positions as the
centres of f-pixel blocks of the input-size map), normalises it again as ``core.explain`` does at
input size, thresholds it (``core.boxes.masks_from_maps``), labels its 8-connected components
in one batched torch pass and measures each component with scatter reductions, all on the
maps' device; only the boxes, one (N, 7) array per batch, go to the host. On the CPU the same
components come from ONE OpenCV call over the whole batch stacked into one image
(:func:`host_component_stats`), which is faster there; both give the same boxes.

Connected components: every foreground cell starts with its own flat index as label; each round
takes the maximum label over its 3×3 neighbourhood (8-connectivity, foreground only), then jumps
each label to the label of the cell it names (pointer jumping: labels always name a cell of the
same component, so this shortcuts long chains). Labels settle at the component's largest cell
index; a blob of a smooth map settles in a few rounds. Convergence is checked every
``check_every`` rounds (one device sync per check).

A box covers whole cells: a component spanning cell columns c0..c1 gives x1 = c0·W/(w·f),
x2 = (c1 + 1)·W/(w·f). It is within one cell of the input-size box (tests/test_grid_boxes.py).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.boxes import Box, Threshold, masks_from_maps
from core.postprocess import normalize_maps, normalize_maps_host

# Cells per native map cell along each side. Chosen on the val split (tools/choose_box_resolution.py,
# README "Boxes"): 8 keeps every method's val IoU of the input-size path.
DEFAULT_BOX_FACTOR = 8
LABELLERS = ("auto", "torch", "host")


def check_box_resolution(value: int | str) -> int | str:
    """``value`` as a positive int factor or ``"full"`` (strings of digits are accepted).

    Raises:
        ValueError: naming the value otherwise.
    """
    if isinstance(value, str):
        v = value.strip().lower()
        if v == "full":
            return "full"
        if v.isdigit() and int(v) >= 1:
            return int(v)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ValueError(f"box_resolution must be a positive integer or 'full', but got {value!r}")


def grid_maps(maps: Tensor, factor: int, degenerate: Tensor | None = None) -> Tensor:
    """Normalised native maps -> the box grid.

    Args:
        maps: (B, h, w) in [0, 1].
        factor: cells per native cell along each side.
        degenerate: optional (B,) bool; those maps stay all zero.

    Returns:
        (B, h·factor, w·factor) float32 in [0, 1], each map normalised again after upsampling.
    """
    h, w = maps.shape[-2:]
    up = upsample_separable(maps.float(), (h * factor, w * factor))
    return normalize_maps(up, degenerate)[0]


@lru_cache(maxsize=32)
def _interp_matrix(n_in: int, n_out: int, device: str) -> Tensor:
    """(n_out, n_in) float32 weights of 1-D linear interpolation with half-pixel centres, clamped at the
    edges: row i holds the two weights that ``F.interpolate(mode="bilinear", align_corners=False)`` gives
    output sample i along one axis."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1.0 - w1, accumulate=True)
    m.index_put_((rows, i1), w1, accumulate=True)
    return m.float().to(device)


def upsample_separable(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (B, h, w) float maps to (B, H, W) as two small matrix products, Aᵧ · M · Aₓᵀ.

    The same values as ``core.postprocess.upsample_maps`` (``F.interpolate``, half-pixel centres) up to float
    rounding (~1e-7), several times faster on the CPU for the small grids boxes are cut on (a 7×7 map to
    56×56: 0.04 ms against 0.22 ms for 16 maps), where the interpolation kernel's per-call cost dominates.
    """
    h, w = maps.shape[-2:]
    if (h, w) == tuple(size):
        return maps
    ay = _interp_matrix(int(h), int(size[0]), str(maps.device))
    ax = _interp_matrix(int(w), int(size[1]), str(maps.device))
    return ay @ maps @ ax.T


def _neighbour_max(lab: Tensor, b: int, h: int, w: int) -> Tensor:
    """(B, 1 + H·W) labels -> the max over each grid cell's 3×3 neighbourhood, (B, H·W)."""
    x = lab[:, 1:].view(b, h, w)
    p = F.pad(x, (1, 1, 1, 1))  # zero = background
    r = torch.maximum(torch.maximum(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])
    return torch.maximum(torch.maximum(r[:, :-2], r[:, 1:-1]), r[:, 2:]).reshape(b, h * w)


def label_components(mask: Tensor, check_every: int = 2, max_rounds: int | None = None) -> Tensor:
    """8-connected component labels of a batch of binary masks, in one batched pass.

    Labels live in slots: slot 0 of each image is a background sink, slot y·W + x + 1 is
    cell (y, x). A foreground cell's label is always the slot of a cell of its own component,
    so ``lab.gather(1, lab)`` (pointer jumping) and hooking (``scatter_reduce`` of the
    neighbours' maximum into the slot a cell points at) stay inside the component; labels only
    grow, and settle at the component's largest slot.

    Args:
        mask: (B, H, W) bool.
        check_every: rounds between convergence checks (each check syncs the device once).
        max_rounds: stop after this many rounds (default H·W, enough for any shape).

    Returns:
        (B, H, W) int64: -1 on background; on foreground the flat index (y·W + x) of the
        component's last cell in row-major order, the same for every cell of the component.
    """
    b, h, w = mask.shape
    n = h * w
    if b == 0 or n == 0:
        return torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
    fg = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=mask.device), mask.reshape(b, n)], 1)
    fg_l = fg.long()
    lab = torch.arange(n + 1, device=mask.device).view(1, n + 1) * fg_l  # (B, 1 + n)
    limit = max_rounds if max_rounds is not None else n
    rounds = 0
    while rounds < limit:
        prev = lab
        for _ in range(check_every):
            pooled = torch.cat([lab[:, :1], _neighbour_max(lab, b, h, w)], 1) * fg_l
            lab = lab.scatter_reduce(1, lab, pooled, "amax")  # hook: a cell's root learns its neighbours' max
            lab = torch.maximum(lab, pooled)
            lab = lab.gather(1, lab)  # pointer jumping, twice
            lab = lab.gather(1, lab)
            rounds += 1
        if torch.equal(lab, prev):
            break
    return (lab[:, 1:] - 1).view(b, h, w)


def component_stats(labels: Tensor, values: Tensor) -> Tensor:
    """Per component: image, cell bounds, cell count and value sum.

    Args:
        labels: (B, H, W) from :func:`label_components`.
        values: (B, H, W) map values.

    Returns:
        (N, 7) float64 on the host, one row per component ordered by image then label:
        [image, x0, y0, x1, y1, cells, value sum] with x0..x1, y0..y1 inclusive cell indices.
    """
    b, h, w = labels.shape
    n = h * w
    dev = labels.device
    flat = labels.reshape(b, n)
    fg = flat >= 0
    key = (flat + torch.arange(b, device=dev).view(b, 1) * n)[fg]  # global component id per fg cell
    if key.numel() == 0:
        return np.zeros((0, 7))
    cell = torch.arange(n, device=dev).view(1, n).expand(b, n)[fg]
    xs, ys = cell % w, torch.div(cell, w, rounding_mode="floor")
    m = b * n
    lo_x = torch.full((m,), n, device=dev, dtype=torch.long).scatter_reduce(0, key, xs, "amin")
    hi_x = torch.full((m,), -1, device=dev, dtype=torch.long).scatter_reduce(0, key, xs, "amax")
    lo_y = torch.full((m,), n, device=dev, dtype=torch.long).scatter_reduce(0, key, ys, "amin")
    hi_y = torch.full((m,), -1, device=dev, dtype=torch.long).scatter_reduce(0, key, ys, "amax")
    count = torch.zeros(m, device=dev, dtype=torch.float32).index_add_(0, key, torch.ones_like(key, dtype=torch.float32))
    total = torch.zeros(m, device=dev, dtype=torch.float32).index_add_(0, key, values.reshape(b, n)[fg].float())
    roots = torch.nonzero(count > 0).squeeze(1)  # one sync: the number of components
    rows = torch.stack(
        [torch.div(roots, n, rounding_mode="floor").float(), lo_x[roots].float(), lo_y[roots].float(),
         hi_x[roots].float(), hi_y[roots].float(), count[roots], total[roots]], dim=1)
    return rows.cpu().double().numpy()


def host_component_stats(mask: Tensor, values: Tensor) -> np.ndarray:
    """:func:`component_stats` of ``mask``'s 8-connected components, labelled on the host in ONE call.

    The B grids are stacked into one (B·(H+1), W+1) image with a background row after each grid and a
    background column after each row, so no component crosses from one image to the next and every run of
    foreground cells ends inside its row; a single ``cv2.connectedComponents`` labels the whole batch (no
    per-image loop). The statistics come from the runs (maximal horizontal stretches of foreground), not
    from every cell: each run's label, row, first and last column and value sum (one ``np.add.reduceat``
    over the stacked values), then per label the run extremes, cell count and value sum. OpenCV's own
    statistics (``connectedComponentsWithStats``) cost six times its labelling on these small grids.
    Cheaper than the torch labelling on the CPU, where the grids already are; on CUDA it costs a copy of
    B·H·W bytes and floats to the host.

    Args:
        mask: (B, H, W) bool.
        values: (B, H, W) map values.

    Returns:
        (N, 7) float64 rows as :func:`component_stats`, ordered by OpenCV's label (callers sort).
    """
    return _host_stats(mask.to("cpu", torch.uint8).numpy(), values.detach().to("cpu", torch.float32).numpy())


def _host_stats(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`host_component_stats` of a (B, H, W) uint8/bool mask and float32 values, as numpy arrays."""
    b, h, w = mask.shape
    if b == 0 or h * w == 0:
        return np.zeros((0, 7))
    hh, ww = h + 1, w + 1
    tile = np.zeros((b, hh, ww), np.uint8)
    tile[:, :h, :w] = mask
    n, lab = cv2.connectedComponents(tile.reshape(b * hh, ww), connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return np.zeros((0, 7))
    edge = np.diff(tile.reshape(-1).view(np.int8), prepend=np.int8(0))
    starts = np.flatnonzero(edge == 1)  # first cell of each run, row-major
    ends = np.flatnonzero(edge == -1)  # one past its last cell (the background column ends every row)
    vals = np.zeros((b, hh, ww), np.float32)
    vals[:, :h, :w] = values
    bounds = np.empty(2 * len(starts), np.intp)
    bounds[0::2], bounds[1::2] = starts, ends
    run_sum = np.add.reduceat(vals.reshape(-1), bounds, dtype=np.float64)[0::2]  # [start, end) of each run
    run_lab = lab.reshape(-1)[starts]
    row = starts // ww  # in the stacked image
    count = np.bincount(run_lab, weights=ends - starts, minlength=n)[1:]
    sums = np.bincount(run_lab, weights=run_sum, minlength=n)[1:]
    x0 = np.full(n, ww, np.intp)
    np.minimum.at(x0, run_lab, starts - row * ww)
    x1 = np.full(n, -1, np.intp)
    np.maximum.at(x1, run_lab, ends - 1 - row * ww)
    y0 = np.full(n, b * hh, np.intp)
    np.minimum.at(y0, run_lab, row)
    y1 = np.full(n, -1, np.intp)
    np.maximum.at(y1, run_lab, row)
    img = y0[1:] // hh
    return np.stack([img, x0[1:], y0[1:] - img * hh, x1[1:], y1[1:] - img * hh, count, sums], axis=1).astype(
        np.float64)


def _fraction_grid_host(maps: Tensor, factor: int, degenerate: Tensor | None,
                        fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`grid_maps` then ``masks_from_maps(.., Threshold("fraction", fraction))`` for CPU maps, in numpy.

    The same float32 operations as the torch path (its upsampling, ``core.postprocess.normalize_maps_host``,
    ``max · fraction``, ``>=``), so the same grid values and masks bit for bit (tested), with a fraction of
    torch's per-call cost on arrays this small.

    Returns:
        (grid (B, Hg, Wg) float32, mask (B, Hg, Wg) bool) as numpy arrays.
    """
    h, w = maps.shape[-2:]
    up = upsample_separable(maps.detach().float(), (h * factor, w * factor)).numpy()
    b = up.shape[0]
    g, _ = normalize_maps_host(up.reshape(b, -1), None if degenerate is None else degenerate.cpu().numpy())
    t = g.max(axis=1, keepdims=True) * np.float32(fraction)  # in float32, as torch's amax(..) * value
    mask = g >= t
    if not (t > 0).all():  # only then can a cell at or above the threshold be zero
        mask &= g > 0
    return g.reshape(up.shape), mask.reshape(up.shape)


def boxes_from_stats(
    rows: np.ndarray, batch: int, grid: tuple[int, int], input_size: tuple[int, int], min_area: float = 0.0
) -> list[list[Box]]:
    """Component rows -> one list of ``Box`` per image in input pixels, best score first.

    Args:
        rows: (N, 7) from :func:`component_stats`.
        batch: B.
        grid: (Hg, Wg) cells of the box grid.
        input_size: (H, W) pixels the grid covers.
        min_area: drop components below this fraction of the grid.
    """
    out: list[list[Box]] = [[] for _ in range(batch)]
    if len(rows) == 0:
        return out
    gh, gw = grid
    sy, sx = input_size[0] / gh, input_size[1] / gw
    keep = rows[:, 5] >= min_area * gh * gw
    rows = rows[keep]
    score = rows[:, 6] / rows[:, 5]
    order = np.lexsort((rows[:, 1], rows[:, 2], -score, rows[:, 0]))  # image, best score, then top-left first
    rows, score = rows[order], score[order]
    x1, y1 = rows[:, 1] * sx, rows[:, 2] * sy
    x2, y2 = (rows[:, 3] + 1) * sx, (rows[:, 4] + 1) * sy
    area = np.rint(rows[:, 5] * sx * sy).astype(np.int64)
    for i, a, b_, c, d, s, ar in zip(rows[:, 0].astype(np.int64).tolist(), x1.tolist(), y1.tolist(), x2.tolist(),
                                     y2.tolist(), score.tolist(), area.tolist()):
        out[i].append(Box(a, b_, c, d, s, ar))
    return out


def boxes_from_grid(
    maps: Tensor,
    input_size: tuple[int, int],
    spec: Threshold | None = None,
    factor: int = DEFAULT_BOX_FACTOR,
    degenerate: Tensor | None = None,
    labeller: str = "auto",
) -> list[list[Box]]:
    """Boxes of a batch of native maps, cut on the (h·factor, w·factor) grid.

    Args:
        maps: (B, h, w) normalised native maps in [0, 1], any device (the work stays there).
        input_size: (H, W) of the model input; boxes are in its pixels.
        spec: threshold (default: 0.5 of the max), applied on the grid map.
        factor: grid cells per native cell along each side (at most input pixels per native cell).
        degenerate: optional (B,) bool; those maps give no box.
        labeller: ``torch`` (:func:`label_components` on the maps' device), ``host`` (one OpenCV call for
            the whole batch, :func:`host_component_stats`) or ``auto``: host for CPU maps, torch otherwise.
            Both find the same components.

    Returns:
        B lists of ``Box`` in input pixels, best score (mean grid value in the blob) first.
    """
    spec = spec or Threshold()
    h, w = maps.shape[-2:]
    # never finer than the input's pixels: maps already at input size are their own grid
    factor = max(1, min(int(factor), int(input_size[0]) // h, int(input_size[1]) // w))
    if labeller not in LABELLERS:
        raise ValueError(f"labeller must be one of {list(LABELLERS)}, but got {labeller!r}")
    if maps.device.type == "cpu" and labeller != "torch" and spec.mode == "fraction" and maps.numel() > 0:
        g_np, mask_np = _fraction_grid_host(maps, factor, degenerate, spec.value)
        return boxes_from_stats(_host_stats(mask_np, g_np), maps.shape[0], g_np.shape[-2:], tuple(input_size),
                                spec.min_area)
    g = grid_maps(maps, factor, degenerate)
    mask = masks_from_maps(g, spec)
    if labeller == "host" or (labeller == "auto" and g.device.type == "cpu"):
        rows = host_component_stats(mask, g)
    else:
        rows = component_stats(label_components(mask), g)
    return boxes_from_stats(rows, maps.shape[0], tuple(g.shape[-2:]), tuple(input_size), spec.min_area)
