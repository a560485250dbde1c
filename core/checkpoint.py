"""Checkpoints with metadata, loaded safely with ``torch.load(weights_only=True)``.

File layout (a plain dict, nothing but tensors, str, int, float, list, dict):

    {"format": "maskstream-checkpoint", "version": 1,
     "meta": ModelMeta.to_dict(),
     "state_dict": <torchvision state_dict, loads into tv.<backbone>(num_classes=K) strict>,
     "metrics": {...}, "data_fingerprint": str, "thresholds": {method: float}, "extra": {...}}
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.model import CamModel, ModelMeta, build_torchvision

FORMAT = "maskstream-checkpoint"
VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "maskstream_mobilenet_v2.pt"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match its metadata."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model plus everything stored beside it."""

    model: CamModel
    meta: ModelMeta
    path: Path | None = None
    metrics: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    thresholds: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike,
    model: CamModel | torch.nn.Module,
    meta: ModelMeta,
    *,
    metrics: dict | None = None,
    data_fingerprint: str = "",
    thresholds: dict | None = None,
    extra: dict | None = None,
    half: bool = False,
) -> Path:
    """Write ``model`` and its metadata to ``path`` (atomically: temp file then rename).

    Args:
        half: store floating tensors as float16 (halves the file; loads back as float32).
    """
    net = model.net if isinstance(model, CamModel) else model
    sd = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
          for k, v in net.state_dict().items()}
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "meta": meta.to_dict(),
        "state_dict": sd,
        "metrics": metrics or {},
        "data_fingerprint": data_fingerprint,
        "thresholds": thresholds or {},
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def _read_blob(path: str | os.PathLike | None, map_location: str | torch.device = "cpu") -> tuple[Path, dict]:
    """(path, the checked file dict) of a maskstream checkpoint (default: the shipped model)."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with disallowed globals, truncated file...
        raise CheckpointError(f"checkpoint {path}: cannot be read as a safe torch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a maskstream checkpoint (missing format={FORMAT!r})")
    if int(blob.get("version", 0)) > VERSION:
        raise CheckpointError(f"checkpoint {path}: version {blob.get('version')} is newer than this maskstream ({VERSION})")
    return path, blob


def read_thresholds(path: str | os.PathLike | None = None) -> dict:
    """The ``thresholds`` entry of a checkpoint (default: the shipped model), without building its model.

    Returns:
        ``{method: {"mode", "value", "min_area", ...}}`` as fitted by ``maskstream eval --calibrate``
        (empty when the file stores none).

    Raises:
        CheckpointError: as :func:`load_checkpoint`.
    """
    return dict(_read_blob(path)[1].get("thresholds", {}))


def load_checkpoint(path: str | os.PathLike | None = None, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a maskstream checkpoint (default: the shipped model) into an eval-mode ``CamModel``.

    Raises:
        CheckpointError: naming the file, when it is missing, not a torch file, not a
            maskstream checkpoint, or its weights do not fit the backbone it names.
    """
    path, blob = _read_blob(path, map_location)
    try:
        meta = ModelMeta.from_dict(blob["meta"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad metadata ({exc})") from None
    net = build_torchvision(meta.backbone, len(meta.class_names), meta.output_stride)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in blob.get("state_dict", {}).items()}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path}: weights do not match backbone {meta.backbone!r} with "
            f"{len(meta.class_names)} classes ({first})"
        ) from None
    model = CamModel(net, meta).eval()
    return Checkpoint(
        model=model,
        meta=meta,
        path=path,
        metrics=dict(blob.get("metrics", {})),
        data_fingerprint=str(blob.get("data_fingerprint", "")),
        thresholds=dict(blob.get("thresholds", {})),
        extra=dict(blob.get("extra", {})),
    )
