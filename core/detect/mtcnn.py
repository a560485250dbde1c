"""MTCNN from the ``facenet-pytorch`` wheel (MIT), run by that package on our torch.

Zhang et al., "Joint Face Detection and Alignment Using Multitask Cascaded Convolutional
Networks", IEEE SPL 2016. An image pyramid down to ``min_face_size`` feeds three small
cascaded CNNs (P-, R-, O-Net; weights ``facenet_pytorch/data/*.pt`` inside the wheel).
Same-size frames run as one batch. ``input_size`` is ignored (the pyramid sets the scales).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.detect.base import FaceDetector, PackageSpec, import_package


class MTCNNDetector(FaceDetector):
    """MTCNN cascade; extra option ``min_face_size`` (pixels, default 12: the P-Net's own cell)."""

    name = "mtcnn"
    package = PackageSpec(module="facenet_pytorch", dist="facenet-pytorch==2.6.0", licence="MIT", extra_pip="requests")
    default_options: ClassVar[dict] = {"score_threshold": 0.7, "nms_iou": 0.4, "input_size": None}
    extra_options: ClassVar[tuple[str, ...]] = ("min_face_size",)

    def __init__(self, min_face_size: int = 12, **opts) -> None:
        super().__init__(**opts)
        if min_face_size < 12:
            raise ValueError(f"min_face_size must be >= 12 (the P-Net cell), but got {min_face_size}")
        import torch

        mod = import_package(self.name, self.package, "facenet_pytorch.models.mtcnn")
        dev = "cuda" if self.options.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self.min_face_size = min_face_size
        self.net = mod.MTCNN(
            keep_all=True, min_face_size=min_face_size, device=dev, select_largest=False, post_process=False
        )

    def _raw(self, images: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        before = torch.get_num_threads()
        if self.options.threads:
            torch.set_num_threads(self.options.threads)  # process-wide in torch: restored below
        try:
            return self._batches(images)
        finally:
            torch.set_num_threads(before)

    def _batches(self, images: list[np.ndarray]) -> list[np.ndarray]:
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape, []).append(i)
        out: list[np.ndarray] = [np.zeros((0, 5), np.float32)] * len(images)
        for idx in groups.values():
            batch = np.stack([images[i][..., ::-1] for i in idx])  # RGB
            boxes, probs = self.net.detect(batch)
            for i, b, p in zip(idx, boxes, probs):
                if b is not None and len(b):
                    out[i] = np.concatenate(
                        [np.asarray(b, np.float32).reshape(-1, 4), np.asarray(p, np.float32).reshape(-1, 1)], axis=1
                    )
        return out
