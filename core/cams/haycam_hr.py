"""HayCAM+ at a higher resolution than the last layer's 7×7 grid (beyond the paper).

At 224 px the last conv layer of ResNet18 / MobileNetV2 is 7×7, so a HayCAM+ map is a
blob of 32-px cells, too coarse for a face that covers 8–35 % of the frame. Three ways to
get a finer map with the *same* weights (pick one on the validation split):

* ``dilate``: run the last stage with stride 1 and dilation 2 (the DeepLab trick), so the
  last layer is 14×14 at 224 px; the receptive field per unit is kept. One forward of a
  modified copy of the network (the copy shares no state with the original).
* ``fuse``: HayCAM+ at the last layer (7×7) and at the 14×14 stage (MobileNetV2: the
  ReLU6 expansion of ``features[14]``, 576 channels, the input of the stride-2 depthwise
  conv; ResNet18: ``layer3``, 256 channels), each min-max normalised, fused per pixel at
  14×14 (``product``: geometric mean, the coarse semantic map gates the fine one;
  ``mean``; or ``max``, LayerCAM-style).
* ``scale``: the input upsampled by ``scale`` (e.g. 2 → 448 px, 14×14 last layer).
* ``shift``: shift-and-stitch (Long et al., FCN, 2015): the unchanged network runs on
  ``shifts``² copies of the input shifted by sub-cell offsets, and their last-layer
  activations are interleaved into a grid ``shifts`` times finer (14×14 at 224 px for
  ``shifts=2``). Every cell is a genuine response of the trained network to the image (no
  dilation, no rescaling, so no change of the input statistics); the cost is ``shifts``²
  forwards. PCA then runs once on the stitched grid.

Each variant computes HayCAM+ (``core.cams.haycam.haycam_plus``: PCA components
explaining ``variance_fraction`` of the variance, summed, deterministic signs) on the
layer(s) it uses. Logits always come from the unmodified 224-px forward, so the class is
the model's own decision. Registered as the model method ``haycam+hr`` in ``core.cams.MODEL_METHODS``
(``core.cams.METHODS`` holds the paper's six single-layer functions): :func:`hires_runner` builds it
for a ``CamModel`` (every variant) or an inference backend (``shift`` only: it needs nothing but the
backend's forward on shifted inputs; ``dilate``, ``fuse`` and ``scale`` change or tap the network and
need the torch model, so an onnxruntime backend refuses them with a message naming it).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from core.cams.base import CamInputs
from core.cams.haycam import DEFAULT_FRACTION, haycam_plus
from core.model import CamModel, dilate_last_stage
from core.postprocess import normalize_maps, sanitize

VARIANTS = ("dilate", "fuse", "scale", "shift")
FUSE_MODES = ("product", "mean", "max")


@dataclass(frozen=True)
class HiResConfig:
    """Which high-resolution HayCAM+ to compute.

    Attributes:
        variant: ``dilate``, ``fuse`` or ``scale`` (see the module docstring).
        fuse: for ``fuse``: ``product``, ``mean`` or ``max``.
        scale: for ``scale``: input upsampling factor (> 1).
        shifts: for ``shift``: the grid gets ``shifts`` times finer (``shifts``² forwards).
        variance_fraction: HayCAM+'s explained-variance fraction.
    """

    variant: str = "dilate"
    fuse: str = "product"
    scale: float = 2.0
    variance_fraction: float = DEFAULT_FRACTION
    shifts: int = 2

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, but got {self.variant!r}")
        if self.fuse not in FUSE_MODES:
            raise ValueError(f"fuse must be one of {list(FUSE_MODES)}, but got {self.fuse!r}")
        if not self.scale > 1.0:
            raise ValueError(f"scale must be > 1, but got {self.scale}")
        if isinstance(self.shifts, bool) or not isinstance(self.shifts, int) or not 2 <= self.shifts <= 8:
            raise ValueError(f"shifts must be an integer in 2..8, but got {self.shifts!r}")
        if not 0.0 < self.variance_fraction <= 1.0:
            raise ValueError(f"variance_fraction must be in (0, 1], but got {self.variance_fraction}")

    def to_dict(self) -> dict:
        """Plain dict (for checkpoints and reports)."""
        return {"variant": self.variant, "fuse": self.fuse, "scale": float(self.scale),
                "variance_fraction": float(self.variance_fraction), "shifts": int(self.shifts)}

    @classmethod
    def from_dict(cls, d: dict) -> HiResConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the key."""
        unknown = set(d) - {"variant", "fuse", "scale", "variance_fraction", "shifts"}
        if unknown:
            raise ValueError(f"unknown haycam+hr option(s): {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class HiResResult:
    """Output for a batch of B images.

    Attributes:
        logits: (B, K) from the plain forward.
        raw: (B, h', w') the high-resolution map before normalisation.
        maps: (B, h', w') min-max normalised to [0, 1] (zero where degenerate).
        degenerate: (B,) bool.
    """

    logits: Tensor
    raw: Tensor
    maps: Tensor
    degenerate: Tensor


def dilated_copy(model: CamModel) -> CamModel:
    """A copy of ``model`` whose last stage runs at stride 1 with dilation 2.

    See :func:`core.model.dilate_last_stage`; the output grid is twice as fine (14×14 at
    224 px). The copy shares no state with ``model``.

    Raises:
        ValueError: if ``model`` is already at output stride 16.
    """
    m = copy.deepcopy(model).eval()
    dilate_last_stage(m.net)
    if m.meta is not None:
        m.meta = replace(m.meta, output_stride=16)
    return m


def forward_mid_last(model: CamModel, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One forward giving (logits (B, K), mid acts (B, C', 2h, 2w), last acts (B, C, h, w)).

    ``last`` and ``logits`` equal ``model(x)``; ``mid`` is the 14×14 (at 224 px) stage
    used by the ``fuse`` variant.
    """
    net = model.net
    if model.kind == "mobilenet_v2":
        feats = net.features
        x13 = feats[:14](x)
        blk = feats[14]
        mid = blk.conv[0](x13)  # ReLU6 expansion, 576 ch, 14×14 at 224 px
        y = blk.conv[1:](mid)
        last = feats[15:](y)
    else:
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        mid = net.layer3(net.layer2(net.layer1(h)))
        last = net.layer4(mid)
    return model.forward_head(last), mid, last


def _shifted(x: Tensor, dy: int, dx: int) -> Tensor:
    """``x`` (B, C, H, W) with its content moved down by ``dy`` and right by ``dx`` pixels
    (negative: up / left); the uncovered border repeats the edge pixels. Same shape."""
    h, w = x.shape[-2:]
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))  # left, right, top, bottom
    p = F.pad(x, pad, mode="replicate")
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return p[..., y0:y0 + h, x0:x0 + w]


def shift_offsets(stride: int, shifts: int) -> list[int]:
    """Content shifts (pixels) that centre the ``shifts`` sub-grids on a grid ``stride/shifts`` finer.

    A cell i of a stride-``stride`` layer sees the input centred at ``stride·i + stride/2``;
    shifting the content by ``s`` moves that to ``stride·i + stride/2 - s``. The offsets
    ``s_j = stride/2 - (stride/shifts)(j + 1/2)`` put sub-grid j at the centres
    ``(stride/shifts)(k + 1/2)`` with ``k = shifts·i + j``: a regular finer grid.
    E.g. stride 32, 2 shifts: [8, -8].
    """
    step = stride / shifts
    return [int(round(stride / 2 - step * (j + 0.5))) for j in range(shifts)]


def shift_and_stitch(features, x: Tensor, stride: int, shifts: int = 2) -> Tensor:
    """Run ``features`` on ``shifts``² shifted copies of ``x`` and interleave the outputs.

    Args:
        features: callable (B, 3, H, W) -> (B, C, H/stride, W/stride) (e.g. a CamModel's
            ``forward_features``).
        x: (B, 3, H, W) input, H and W multiples of ``stride``.
        stride: the output stride of ``features`` (32 for ResNet18 / MobileNetV2).
        shifts: refinement factor per axis.

    Returns:
        (B, C, shifts·H/stride, shifts·W/stride): output row ``shifts·i + jy``, column
        ``shifts·i' + jx`` is cell (i, i') of the copy shifted by ``shift_offsets[jy]``
        down and ``shift_offsets[jx]`` right.
    """
    offs = shift_offsets(stride, shifts)
    out = None
    for jy, dy in enumerate(offs):
        for jx, dx in enumerate(offs):
            a = features(_shifted(x, dy, dx))
            if out is None:
                b, c, h, w = a.shape
                out = a.new_empty(b, c, h * shifts, w * shifts)
            out[:, :, jy::shifts, jx::shifts] = a
    return out


# Used when neither the caller nor the checkpoint names a variant (calibrated checkpoints store their own): the
# val winner on the labels-only mobilenet_v2, and not `dilate`, which a stride-16 model cannot take.
DEFAULT_HR = HiResConfig("fuse", "product", variance_fraction=0.5)


def _haycam_plus_raw(acts: Tensor, fraction: float) -> tuple[Tensor, Tensor]:
    clean, bad = sanitize(acts.detach().float())
    raw = haycam_plus(CamInputs(clean, None, {"variance_fraction": fraction})).raw
    return normalize_maps(raw, bad)


class HiResHayCAM:
    """High-resolution HayCAM+ for one model (builds the dilated copy once).

    Args:
        model: a ``CamModel`` (ResNet or MobileNetV2), in eval mode.
        config: the variant to compute.
    """

    def __init__(self, model: CamModel, config: HiResConfig | None = None) -> None:
        if not isinstance(model, CamModel):
            raise TypeError(f"`model` must be a CamModel, but got {type(model).__name__}")
        self.model = model
        self.config = config or HiResConfig()
        self._dilated = dilated_copy(model) if self.config.variant == "dilate" else None

    @torch.no_grad()
    def __call__(
        self, images: Tensor, *, logits: Tensor | None = None, mid: Tensor | None = None, last: Tensor | None = None
    ) -> HiResResult:
        """Maps for a batch.

        Args:
            images: (B, 3, H, W) normalised model input.
            logits: (B, K) of ``model(images)`` if already computed (saves a forward).
            mid, last: from :func:`forward_mid_last` if already computed (``fuse`` reuses them).

        Returns:
            HiResResult with maps of shape (B, 2h, 2w) for ``dilate`` (h×w the plain
            last-layer grid), (B, H/16, W/16) for ``fuse`` (the stride-16 stage; that is h×w
            itself for a model trained at output stride 16), (B, shifts·h, shifts·w) for
            ``shift``, or (B, ⌊scale·H/s⌋, ...) for ``scale`` (s the model's output stride).
        """
        cfg = self.config
        frac = cfg.variance_fraction
        if cfg.variant == "fuse":
            if mid is None or last is None:
                logits, mid, last = forward_mid_last(self.model, images)
            elif logits is None:
                logits = self.model.forward_head(last)
            m_last, bad_last = _haycam_plus_raw(last, frac)
            m_mid, bad_mid = _haycam_plus_raw(mid, frac)
            up = F.interpolate(m_last.unsqueeze(1), size=m_mid.shape[-2:], mode="bilinear",
                               align_corners=False).squeeze(1)
            if cfg.fuse == "product":
                raw = (up.clamp_min(0) * m_mid.clamp_min(0)).sqrt()
            elif cfg.fuse == "mean":
                raw = 0.5 * (up + m_mid)
            else:
                raw = torch.maximum(up, m_mid)
            maps, deg = normalize_maps(raw, bad_last | bad_mid)
            return HiResResult(logits, raw, maps, deg)
        if logits is None:
            logits = self.model(images)[0]
        if cfg.variant == "dilate":
            acts = self._dilated.forward_features(images)
        elif cfg.variant == "shift":
            acts = shift_and_stitch(self.model.forward_features, images, self.model.output_stride, cfg.shifts)
        else:
            size = [int(round(s * cfg.scale)) for s in images.shape[-2:]]
            big = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            acts = self.model.forward_features(big)
        clean, bad = sanitize(acts.detach().float())
        raw = haycam_plus(CamInputs(clean, None, {"variance_fraction": frac})).raw
        maps, deg = normalize_maps(raw, bad)
        return HiResResult(logits, raw, maps, deg)


def hires_runner(model, options: dict | None = None):
    """The ``haycam+hr`` runner for a ``CamModel`` or an inference backend (``core.cams.ModelMethod.build``).

    Args:
        model: a ``CamModel``; a torch backend (its ``model`` is used, inputs cast to its dtype); or any
            backend with ``forward(images) -> (logits, acts)``, ``meta`` and ``name`` (variant ``shift`` only).
        options: :class:`HiResConfig` fields (unknown keys are an error).

    Returns:
        ``runner(images (B, 3, S, S), logits=None) -> (raw (B, h', w'), bad (B,) bool)``: the hi-res map
        before normalisation and the images whose activations were degenerate.

    Raises:
        ValueError: bad options, or a variant the backend cannot run (naming the backend).
    """
    cfg = HiResConfig.from_dict(dict(options or {}))
    cam = getattr(model, "model", model)
    if isinstance(cam, CamModel):
        dtype = next(cam.parameters()).dtype
        hr = HiResHayCAM(cam, cfg)

        def run_model(images: Tensor, logits: Tensor | None = None) -> tuple[Tensor, Tensor]:
            r = hr(images.to(dtype), logits=logits)
            return r.raw.float(), r.degenerate

        return run_model
    if not callable(getattr(model, "forward", None)) or getattr(model, "meta", None) is None:
        raise TypeError(f"`model` must be a CamModel or an inference backend, but got {type(model).__name__}")
    name = getattr(model, "name", type(model).__name__)
    if cfg.variant != "shift":
        raise ValueError(f"haycam+hr variant {cfg.variant!r} needs the torch model (it changes or taps the network); "
                         f"the {name} backend runs only variant 'shift' (shift-and-stitch: {cfg.shifts}² forwards "
                         "of the unchanged network); use the torch backend")
    stride = int(model.meta.output_stride)

    def run_backend(images: Tensor, logits: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            acts = shift_and_stitch(lambda x: model.forward(x)[1], images, stride, cfg.shifts)
        clean, bad = sanitize(acts.detach().float())
        raw = haycam_plus(CamInputs(clean, None, {"variance_fraction": cfg.variance_fraction})).raw
        return raw, bad

    return run_backend
