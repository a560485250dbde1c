"""The public API: ``core.explain(model, images, method="haycam+", target=None)``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from core.boxes import Box, Threshold, boxes_from_maps
from core.cams import MODEL_METHODS, CamInputs, build_model_method, check_method, get_method
from core.gradients import analytic_grads, autograd_grads
from core.grid_boxes import DEFAULT_BOX_FACTOR, boxes_from_grid, check_box_resolution
from core.hooks import HookedModel
from core.model import CamModel
from core.postprocess import normalize_maps, sanitize, upsample_maps

GRAD_MODES = ("auto", "analytic", "autograd")


@dataclass(frozen=True)
class Explanation:
    """Result of :func:`explain` for a batch of B images of size H×W.

    Attributes:
        method: the map method's name.
        logits: (B, K) class scores.
        labels: (B,) predicted class indices (argmax of logits).
        target: (B,) class each map explains (== labels when target was None).
        raw_maps: (B, h, w) maps before normalisation (float32).
        maps: (B, H, W) maps in [0, 1] at input size (float32, on the model's device), or None
            when the caller asked for no full-size maps (``full_maps=False``).
        boxes: B lists of ``Box`` in input pixels, best score first.
        degenerate: (B,) bool; True where the map is all zero because the activations
            were zero, constant, NaN or Inf.
        n_components: (B,) PCA components used (PCA methods), else None.
        low_res_maps: (B, h, w) the native maps in [0, 1], spanning it like ``maps`` (a consumer
            that draws can upsample these itself, e.g. with cv2.resize).
    """

    method: str
    logits: Tensor
    labels: Tensor
    target: Tensor
    raw_maps: Tensor
    maps: Tensor | None
    boxes: list[list[Box]]
    degenerate: Tensor
    n_components: Tensor | None = None
    low_res_maps: Tensor | None = None

    def __post_init__(self) -> None:
        b = self.logits.shape[0]
        for name in ("labels", "target", "raw_maps", "maps", "degenerate", "low_res_maps"):
            if getattr(self, name) is not None and getattr(self, name).shape[0] != b:
                raise ValueError(f"{name} must have batch size {b}, but got shape {tuple(getattr(self, name).shape)}")
        if len(self.boxes) != b:
            raise ValueError(f"boxes must have {b} lists, but got {len(self.boxes)}")

    @property
    def probs(self) -> Tensor:
        """(B, K) softmax of the logits."""
        return torch.softmax(self.logits.float(), dim=1)


def resolve_target(target: int | Sequence[int] | Tensor | None, logits: Tensor) -> Tensor:
    """Target classes as a (B,) long tensor on the logits' device.

    Raises:
        ValueError: when a sequence's length differs from the batch size, or an index is out of range.
    """
    b, k = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, int):
        t = torch.full((b,), target, dtype=torch.long, device=logits.device)
    else:
        t = torch.as_tensor(target, dtype=torch.long, device=logits.device).flatten()
        if t.numel() != b:
            raise ValueError(f"`target` must have one class per image ({b}), but got {t.numel()}")
    if ((t < 0) | (t >= k)).any():
        raise ValueError(f"`target` classes must be in [0, {k - 1}], but got {t.tolist()}")
    return t


def explain_features(
    logits: Tensor,
    acts: Tensor,
    method: str,
    input_size: tuple[int, int],
    target: int | Sequence[int] | Tensor | None = None,
    *,
    head_weight: Tensor | None = None,
    grads: Tensor | None = None,
    threshold: Threshold | None = None,
    options: dict[str, Any] | None = None,
    with_boxes: bool = True,
    box_resolution: int | str = DEFAULT_BOX_FACTOR,
    full_maps: bool = True,
) -> Explanation:
    """Maps and boxes from an already computed forward pass (any backend).

    Args:
        logits: (B, K).
        acts: (B, C, h, w) last-conv activations.
        method: a name from ``core.cams.METHODS``.
        input_size: (H, W) of the model input, the size maps are upsampled to.
        target: None (predicted class), one int, or B ints.
        head_weight: (K, C) linear head for analytic gradients (GAP + linear models).
        grads: (B, C, h, w) precomputed dY_target/dA; takes precedence over head_weight.
        threshold: how maps become boxes.
        options: method options (``variance_fraction``, ``haycam_components``, ``gradcampp_eps``).
        with_boxes: compute boxes (False leaves B empty lists).
        box_resolution: cut boxes on the native map upsampled this many times per side
            (``core.grid_boxes``, on the maps' device, default 8), or ``"full"``: on the maps at
            input size (the reference path: a host copy of B·H·W floats and per-image components).
        full_maps: make ``maps`` at input size; False leaves ``maps`` None (only
            ``low_res_maps``), for callers that draw from the low-res map or not at all.
    """
    spec = get_method(method)
    box_resolution = check_box_resolution(box_resolution)
    tgt = resolve_target(target, logits)
    acts32, bad = sanitize(acts.detach().float())
    g = None
    if spec.needs_grads:
        if grads is None:
            if head_weight is None:
                raise ValueError(f"method {method!r} needs gradients: pass `head_weight` or `grads`")
            g = analytic_grads(head_weight.detach().float(), tgt, acts32.shape)
        else:
            g, bad_g = sanitize(grads.detach().float())
            bad = bad | bad_g
    result = spec.fn(CamInputs(acts32, g, dict(options or {})))
    return _finish(method, logits, tgt, result.raw, bad, input_size, threshold, with_boxes, result.n_components,
                   box_resolution, full_maps)


def _finish(method: str, logits: Tensor, tgt: Tensor, raw: Tensor, bad: Tensor, input_size: tuple[int, int],
            threshold: Threshold | None, with_boxes: bool, n_components: Tensor | None = None,
            box_resolution: int | str = DEFAULT_BOX_FACTOR, full_maps: bool = True) -> Explanation:
    """Raw maps (B, h, w) -> normalised native maps (B, h, w), boxes and, if asked, (B, H, W) maps in [0, 1].

    Boxes are cut on the native map's grid (``core.grid_boxes``; never finer than the input's pixels)
    unless ``box_resolution`` is ``"full"``; the input-size maps are made only when ``full_maps`` is set
    or the full-size boxes need them.
    """
    box_resolution = check_box_resolution(box_resolution)
    raw = raw.float()
    maps_small, degenerate = normalize_maps(raw, bad)
    if raw.device.type != "cpu" or bool(degenerate.any()):  # on the CPU, only where there is something to zero
        raw = torch.where(degenerate.view(-1, 1, 1), torch.zeros_like(raw), raw)
    # Once more at native size: maps of tiny activations (span near NORM_EPS) then span [0, 1] too.
    low_res, _ = normalize_maps(maps_small, degenerate)
    full = box_resolution == "full"
    maps = None
    if full_maps or (with_boxes and full):
        # Normalise again after upsampling (bilinear interpolation does not reach the grid
        # extremes), so every map spans exactly [0, 1] at input size, as pytorch-grad-cam's.
        maps, _ = normalize_maps(upsample_maps(maps_small, tuple(input_size)), degenerate)
    if not with_boxes:
        boxes: list[list[Box]] = [[] for _ in range(maps_small.shape[0])]
    elif full:
        boxes = boxes_from_maps(maps, threshold)
    else:
        boxes = boxes_from_grid(low_res, tuple(input_size), threshold, int(box_resolution), degenerate)
    return Explanation(method, logits.detach(), logits.detach().argmax(1), tgt, raw, maps if full_maps else None,
                       boxes, degenerate, n_components, low_res)


def explain_model_method(
    runner: Any,
    images: Tensor,
    logits: Tensor,
    method: str,
    target: int | Sequence[int] | Tensor | None = None,
    *,
    threshold: Threshold | None = None,
    with_boxes: bool = True,
    box_resolution: int | str = DEFAULT_BOX_FACTOR,
    full_maps: bool = True,
) -> Explanation:
    """Maps and boxes of a model method (``core.cams.MODEL_METHODS``, e.g. ``haycam+hr``).

    Args:
        runner: from ``core.cams.build_model_method(method, model, options)`` (built once per model).
        images: (B, 3, H, W) the normalised input the logits came from.
        logits: (B, K) of the plain forward (the class is the model's own decision).
        method: the method's name (recorded in the result).
        target: None, one int, or B ints (class-agnostic methods record it only).
        threshold: how maps become boxes.
        with_boxes: compute boxes (False leaves B empty lists).
        box_resolution: grid factor the boxes are cut at, or ``"full"`` (see :func:`explain_features`;
            ``haycam+hr``'s native map is 14x14 at 224 px, so its grid stops at the input's pixels).
        full_maps: make ``maps`` at input size; False leaves it None (only ``low_res_maps``).
    """
    box_resolution = check_box_resolution(box_resolution)
    tgt = resolve_target(target, logits)
    with torch.no_grad():
        raw, bad = runner(images, logits=logits)
    size = (int(images.shape[2]), int(images.shape[3]))
    return _finish(method, logits, tgt, raw, bad, size, threshold, with_boxes, None, box_resolution, full_maps)


def _as_feature_model(model: Any, layer: nn.Module | None) -> Any:
    if isinstance(model, (CamModel, HookedModel)):
        return model
    if isinstance(model, (tvm.ResNet, tvm.MobileNetV2)) and layer is None:
        return CamModel(model)
    if isinstance(model, nn.Module):
        if layer is None:
            raise ValueError(
                f"`layer` is required for a {type(model).__name__}: only torchvision ResNet and "
                "MobileNetV2 (and maskstream models) have a known last conv layer"
            )
        return HookedModel(model, layer)
    if callable(getattr(model, "forward", None)) and callable(getattr(model, "head_weights", None)):
        return model  # an inference backend: forward(images) -> (logits, acts)
    raise TypeError(f"`model` must be an nn.Module or an inference backend, but got {type(model).__name__}")


def explain(
    model: Any,
    images: Tensor,
    method: str = "haycam+",
    target: int | Sequence[int] | Tensor | None = None,
    *,
    threshold: Threshold | None = None,
    options: dict[str, Any] | None = None,
    grad_mode: str = "auto",
    layer: nn.Module | None = None,
    box_resolution: int | str = DEFAULT_BOX_FACTOR,
) -> Explanation:
    """Classify a batch and explain each decision with a saliency map and boxes.

    Args:
        model: a maskstream ``CamModel``; a torchvision ResNet or MobileNetV2
            classifier; any other classifier together with ``layer``; or an inference
            backend with ``forward(images) -> (logits, acts)`` and ``head_weights()``.
        images: (B, 3, H, W) float tensor, already normalised for the model, on its device.
        method: one of ``gradcam``, ``gradcam++``, ``layercam``, ``eigencam``, ``haycam``, ``haycam+``, or
            the model method ``haycam+hr`` (``core.cams.MODEL_METHODS``: it runs extra forwards).
        target: None (explain the predicted class), one class index, or B indices.
        threshold: box threshold (default 0.5 of each map's max).
        options: method options, e.g. ``{"variance_fraction": 0.9}``; for ``haycam+hr`` its variant
            (``core.cams.haycam_hr.HiResConfig`` fields; default ``core.cams.haycam_hr.DEFAULT_HR``).
        grad_mode: ``auto`` (analytic for GAP + linear heads, else autograd),
            ``analytic`` or ``autograd``.
        layer: the conv layer to explain, for models other than the above.
        box_resolution: grid factor the boxes are cut at, or ``"full"`` (see :func:`explain_features`).

    Returns:
        Explanation with logits (B, K), raw_maps (B, h, w), maps (B, H, W), boxes.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"`images` must be a float tensor of shape (B, 3, H, W), but got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"`images` must be a float tensor, but got dtype {images.dtype}")
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"`grad_mode` must be one of {list(GRAD_MODES)}, but got {grad_mode!r}")
    check_method(method)
    fm = _as_feature_model(model, layer)
    if method in MODEL_METHODS:
        if isinstance(fm, HookedModel):
            raise ValueError(f"map method {method!r} needs a maskstream CamModel (or a torchvision ResNet / "
                             "MobileNetV2, or an inference backend), not a model hooked at `layer`")
        runner = build_model_method(method, fm, options)
        with torch.no_grad():
            logits = fm(images)[0] if isinstance(fm, nn.Module) else fm.forward(images)[0]
        return explain_model_method(runner, images, logits, method, target, threshold=threshold,
                                    box_resolution=box_resolution)
    spec = get_method(method)
    hooked = isinstance(fm, HookedModel)
    size = (int(images.shape[2]), int(images.shape[3]))
    if spec.needs_grads and hooked:
        grad_mode = "autograd"
    if spec.needs_grads and grad_mode == "analytic" and not hasattr(fm, "head_weights"):
        raise ValueError("grad_mode='analytic' needs a GAP + linear model")

    if spec.needs_grads and grad_mode == "autograd" and hooked:
        with torch.enable_grad():
            logits, acts = fm(images)
            tgt = resolve_target(target, logits.detach())
            (grads,) = torch.autograd.grad(logits.gather(1, tgt.view(-1, 1)).sum(), acts)
        return explain_features(logits, acts, method, size, tgt, grads=grads, threshold=threshold, options=options,
                                   box_resolution=box_resolution)

    with torch.no_grad():
        logits, acts = fm(images) if isinstance(fm, nn.Module) else fm.forward(images)
    if spec.needs_grads and grad_mode == "autograd":
        tgt = resolve_target(target, logits)
        grads = autograd_grads(fm.forward_head, acts, tgt)
        return explain_features(logits, acts, method, size, tgt, grads=grads, threshold=threshold, options=options,
                                   box_resolution=box_resolution)
    head_w = fm.head_weights()[0] if spec.needs_grads else None
    return explain_features(logits, acts, method, size, target, head_weight=head_w, threshold=threshold,
                            options=options, box_resolution=box_resolution)
