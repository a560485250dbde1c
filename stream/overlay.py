"""Annotators: small objects holding style, each with ``annotate(image, result) -> image``.

They draw in place on the image they get (the pipeline hands them a copy) and return it:
:class:`HeatmapAnnotator` (map blended over the frame, toggled by ``enabled``),
:class:`BoxAnnotator` (boxes with label and score, coloured by class) and
:class:`HudAnnotator` (per-source FPS, end-to-end latency and connection state). Source ids
drawn are passed through ``stream.redact.redact_text`` again: no credentials on screen.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from stream.colormaps import COLORMAPS
from stream.config import OverlayConfig
from stream.redact import redact_text
from stream.results import FrameResult
from stream.summary import SourceMonitor

Color = tuple[int, int, int]

FONT = cv2.FONT_HERSHEY_SIMPLEX


def put_label(
    image: np.ndarray, text: str, org: tuple[int, int], color: Color, scale: float = 0.5, thickness: int = 1
) -> None:
    """Text on a filled background box; ``org`` is the top-left corner, kept inside the image."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    h, w = image.shape[:2]
    x = int(min(max(org[0], 0), max(w - tw - 2, 0)))
    y = int(min(max(org[1], 0), max(h - th - base - 2, 0)))
    cv2.rectangle(image, (x, y), (x + tw + 2, y + th + base + 2), color, -1)
    lum = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    cv2.putText(
        image,
        text,
        (x + 1, y + th + 1),
        FONT,
        scale,
        (0, 0, 0) if lum > 140 else (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )


class HeatmapAnnotator:
    """Blend the result's saliency map over the frame.

    Args:
        alpha: map opacity in [0, 1] (0.4: the frame stays readable).
        colormap: a name in ``COLORMAPS``.
        enabled: draw or not (the display's ``h`` key flips it).
    """

    def __init__(self, alpha: float = 0.4, colormap: str = "jet", enabled: bool = True) -> None:
        self.alpha = float(alpha)
        self.cmap = COLORMAPS[colormap]
        self.enabled = enabled

    def annotate(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        heat = result.heatmap
        if not self.enabled or heat is None or self.alpha <= 0:
            return image
        h, w = image.shape[:2]
        if heat.shape[:2] != (h, w):
            heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
        colored = cv2.applyColorMap(heat, self.cmap)
        if result.label is None:  # faces mode: only where a face map was pasted
            mask = heat > 0
            blended = cv2.addWeighted(image, 1.0 - self.alpha, colored, self.alpha, 0.0)
            image[mask] = blended[mask]
            return image
        cv2.addWeighted(image, 1.0 - self.alpha, colored, self.alpha, 0.0, dst=image)
        return image


class BoxAnnotator:
    """Boxes with ``label score``, coloured by class; frame mode also prints the frame's class.

    Args:
        colors: BGR colour per class name.
        default_color: colour for other classes.
        thickness: line thickness.
        font_scale: label text scale.
    """

    def __init__(
        self,
        colors: Mapping[str, Sequence[int]] | None = None,
        default_color: Sequence[int] = (255, 200, 0),
        thickness: int = 2,
        font_scale: float = 0.5,
    ) -> None:
        self.colors = {k: tuple(int(c) for c in v) for k, v in (colors or {}).items()}
        self.default_color = tuple(int(c) for c in default_color)
        self.thickness = thickness
        self.font_scale = font_scale

    def color(self, label: str | None) -> Color:
        return self.colors.get(label or "", self.default_color)  # type: ignore[return-value]

    def annotate(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        h, w = image.shape[:2]
        for d in result.detections:
            x1, y1, x2, y2 = (int(round(v)) for v in d.box)
            x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2 - 1, w - 1))
            y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2 - 1, h - 1))
            c = self.color(d.label)
            cv2.rectangle(image, (x1, y1), (x2, y2), c, self.thickness)
            (_, th), base = cv2.getTextSize("Ag", FONT, self.font_scale, 1)
            ty = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1 + self.thickness
            put_label(image, f"{d.label} {d.score:.2f}", (x1, ty), c, self.font_scale)
        if result.label is not None:
            put_label(
                image, f"frame: {result.label} {result.score:.2f}", (w, 0), self.color(result.label), self.font_scale
            )
        return image


class HudAnnotator:
    """Bottom-left HUD: ``<source>  <STATE>  <fps> FPS  <latency> ms`` (the top is left to box labels).

    Args:
        monitor_for: source id -> its ``SourceMonitor`` (FPS, latency, state).
        font_scale: text scale.
    """

    def __init__(self, monitor_for: Callable[[str], SourceMonitor], font_scale: float = 0.5) -> None:
        self.monitor_for = monitor_for
        self.font_scale = font_scale

    max_id_chars = 40

    def text(self, result: FrameResult) -> str:
        m = self.monitor_for(result.frame.source_id)
        sid = redact_text(result.frame.source_id)
        if len(sid) > self.max_id_chars:  # long file paths: keep the informative tail
            sid = "..." + sid[-(self.max_id_chars - 3) :]
        return f"{sid}  {m.state_text}  {m.fps:.1f} FPS  {m.latency_ms:.0f} ms"

    def annotate(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        put_label(image, self.text(result), (4, image.shape[0]), (32, 32, 32), self.font_scale)
        return image


def build_annotators(cfg: OverlayConfig, monitor_for: Callable[[str], SourceMonitor]) -> list:
    """The annotator chain for a config, in drawing order (heatmap, boxes, HUD)."""
    chain: list = [HeatmapAnnotator(cfg.alpha, cfg.colormap, enabled=cfg.heatmap)]
    if cfg.boxes:
        chain.append(BoxAnnotator(cfg.colors, cfg.default_color, cfg.thickness, cfg.font_scale))
    if cfg.hud:
        chain.append(HudAnnotator(monitor_for, cfg.font_scale))
    return chain


def annotate(image: np.ndarray, result: FrameResult, chain: Sequence) -> np.ndarray:
    """A copy of ``image`` with every annotator of ``chain`` applied."""
    out = np.ascontiguousarray(image).copy()
    for a in chain:
        out = a.annotate(out, result)
    return out
