"""Batched image augmentation in torch (runs on the batch's device, no per-image Python loop).

Input is what the data path stores: (B, H, W, 3) uint8 **BGR** frames. The colour order and the
scaling to [0, 1] are exactly those of :func:`core.preprocess.bgr_to_input`; the caller then
normalises with :func:`core.preprocess.normalize`, so training and inference cannot drift apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (all per image).

    Attributes:
        scale: (min, max) zoom; < 1 zooms out (edges replicated), > 1 zooms in.
        translate: largest shift as a fraction of the side.
        rotate_deg: largest rotation in degrees.
        hflip: probability of a horizontal flip.
        brightness: largest relative brightness change.
        contrast: largest relative contrast change.
        saturation: largest relative saturation change.
        gray_p: probability of converting to grey.
        lowres_p: probability of a down- then up-sampling (small, blurry faces as in CCTV frames).
        lowres_min: smallest down-sampling factor.
        jpeg_p: probability that a down-sampled image is also JPEG-compressed at its small size (a tiny face
            in a real photo arrives with the compression blocks of its own scale; 0 = never, the default).
        jpeg_quality: (min, max) JPEG quality, one value drawn per batch.
    """

    scale: tuple[float, float] = (0.75, 1.3)
    translate: float = 0.12
    rotate_deg: float = 12.0
    hflip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    gray_p: float = 0.05
    lowres_p: float = 0.3
    lowres_min: float = 0.2
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (40, 90)

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must satisfy 0 < min <= max, but got {self.scale}")
        for name in ("hflip", "gray_p", "lowres_p", "jpeg_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], but got {getattr(self, name)}")
        if not 0.0 < self.lowres_min <= 1.0:
            raise ValueError(f"lowres_min must be in (0, 1], but got {self.lowres_min}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must satisfy 1 <= min <= max <= 100, but got {self.jpeg_quality}")


def bgr_uint8_to_rgb01(frames: Tensor) -> Tensor:
    """(B, H, W, 3) uint8 BGR -> (B, 3, H, W) float32 RGB in [0, 1], as ``bgr_to_input`` does."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (B, H, W, 3), but got {tuple(frames.shape)}")
    return frames.flip(-1).permute(0, 3, 1, 2).to(torch.float32) / 255.0


def _uniform(g: torch.Generator, n: int, lo: float, hi: float, device) -> Tensor:
    return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)


def augment_rgb01(x: Tensor, cfg: AugmentConfig, g: torch.Generator, out_size: int | None = None) -> Tensor:
    """Randomly transform a batch of RGB images in [0, 1].

    Args:
        x: (B, 3, H, W) float RGB in [0, 1].
        cfg: transform ranges.
        g: CPU generator for the random draws (results are reproducible under its seed).
        out_size: output side (default: H).

    Returns:
        (B, 3, S, S) float RGB in [0, 1].
    """
    return _augment(x, None, cfg, g, out_size)[0]


def augment_rgb01_with_masks(
    x: Tensor, masks: Tensor, cfg: AugmentConfig, g: torch.Generator, out_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`augment_rgb01` that also moves per-image masks with the geometry (not the colour).

    The images come out exactly as :func:`augment_rgb01` makes them from the same generator state.

    Args:
        x: (B, 3, H, W) float RGB in [0, 1].
        masks: (B, M, H, W) float masks in [0, 1] (e.g. 1 inside the face box).
        cfg, g, out_size: as for :func:`augment_rgb01`.

    Returns:
        ``(images (B, 3, S, S), masks (B, M, S, S))``: the masks warped, zoomed and down/up-sampled
        like the images (edges replicated where the view leaves the image).
    """
    if masks.shape[0] != x.shape[0] or masks.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"masks must be (B, M, H, W) matching images {tuple(x.shape)}, but got {tuple(masks.shape)}")
    return _augment(x, masks, cfg, g, out_size)


def jpeg_bgr(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> the same image JPEG-encoded and decoded by OpenCV's libjpeg (4:2:0 chroma,
    as most cameras save)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"JPEG encoding of a {image.shape} image failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def jpeg_roundtrip(x: Tensor, quality: int) -> Tensor:
    """:func:`jpeg_bgr` for a batch of RGB images (one image at a time, as JPEG codes them; the
    augmentation codes only small, down-sampled ones).

    Args:
        x: (B, 3, H, W) float RGB in [0, 1], on any device (coded on the CPU).
        quality: JPEG quality 1-100.

    Returns:
        (B, 3, H, W) float RGB in [0, 1] on ``x``'s device: the decoded images.
    """
    bgr = (x.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).flip(1).permute(0, 2, 3, 1).cpu().numpy()
    dec = torch.from_numpy(np.stack([jpeg_bgr(im, quality) for im in bgr])).permute(0, 3, 1, 2).flip(1)
    return dec.to(device=x.device, dtype=x.dtype) / 255.0


def _jpeg_some(lo: Tensor, which: Tensor, quality: tuple[int, int], g: torch.Generator) -> Tensor:
    """JPEG round-trip of the image channels (the first 3) of the images ``which`` (B,) marks."""
    q = int(torch.randint(quality[0], quality[1] + 1, (1,), generator=g))
    if not bool(which.any()):
        return lo
    coded = lo.clone()
    coded[which, :3] = jpeg_roundtrip(lo[which, :3], q)
    return coded


def _augment(x: Tensor, extra: Tensor | None, cfg: AugmentConfig, g: torch.Generator,
             out_size: int | None) -> tuple[Tensor, Tensor | None]:
    b, _, h, _ = x.shape
    s = out_size or h
    if extra is not None:  # geometry and resolution apply to both; colour to the image only
        x = torch.cat([x, extra.to(x.dtype)], 1)
    dev = x.device
    # geometry: one affine grid for the whole batch (output -> input coordinates)
    zoom = torch.exp(_uniform(g, b, math.log(cfg.scale[0]), math.log(cfg.scale[1]), dev))
    ang = _uniform(g, b, -cfg.rotate_deg, cfg.rotate_deg, dev) * (math.pi / 180.0)
    tx = _uniform(g, b, -cfg.translate, cfg.translate, dev) * 2.0
    ty = _uniform(g, b, -cfg.translate, cfg.translate, dev) * 2.0
    flip = torch.where(torch.rand(b, generator=g).to(dev) < cfg.hflip, -1.0, 1.0)
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), [b, 3, s, s], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # resolution: some images down- then up-sampled (one factor per batch keeps it one op)
    if cfg.lowres_p > 0:
        pick = (torch.rand(b, generator=g) < cfg.lowres_p).to(dev)
        if bool(pick.any()):
            f = float(_uniform(g, 1, cfg.lowres_min, 1.0, "cpu"))
            small = max(8, int(round(s * f)))
            lo = F.interpolate(x, size=(small, small), mode="area")
            if cfg.jpeg_p > 0:
                lo = _jpeg_some(lo, pick & (torch.rand(b, generator=g) < cfg.jpeg_p).to(dev), cfg.jpeg_quality, g)
            lo = F.interpolate(lo, size=(s, s), mode="bilinear", align_corners=False)
            x = torch.where(pick.view(b, 1, 1, 1), lo, x)
    if extra is not None:
        x, extra = x[:, :3], x[:, 3:]
    # colour
    br = 1.0 + _uniform(g, b, -cfg.brightness, cfg.brightness, dev).view(b, 1, 1, 1)
    x = x * br
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    ct = 1.0 + _uniform(g, b, -cfg.contrast, cfg.contrast, dev).view(b, 1, 1, 1)
    x = (x - gray.mean(dim=(2, 3), keepdim=True)) * ct + gray.mean(dim=(2, 3), keepdim=True)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    sat = 1.0 + _uniform(g, b, -cfg.saturation, cfg.saturation, dev).view(b, 1, 1, 1)
    sat = torch.where((torch.rand(b, generator=g) < cfg.gray_p).to(dev).view(b, 1, 1, 1), torch.zeros_like(sat), sat)
    x = (x - gray) * sat + gray
    return x.clamp_(0.0, 1.0), extra
