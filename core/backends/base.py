"""The inference-backend contract shared by the stream worker and ``core.explain``."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from core.model import ModelMeta

DEVICES = ("auto", "cpu", "cuda")


@runtime_checkable
class Backend(Protocol):
    """Runs the classifier; everything after the forward (maps, boxes) is ``core``'s.

    Attributes:
        name: ``torch`` or ``onnxruntime`` plus details, e.g. ``onnxruntime[CUDAExecutionProvider]``.
        meta: the model's metadata (class names, input size, normalisation).
        device: where ``forward`` wants its input and leaves its outputs.
        dtype: the input dtype the model computes in (float16 or float32).
    """

    name: str
    meta: ModelMeta
    device: torch.device
    dtype: torch.dtype

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) normalised images on ``device`` (any float dtype; cast to ``dtype``)
        -> ``(logits (B, K), activations (B, C, h, w))``, torch tensors on ``device`` in ``dtype``."""
        ...

    def head_weights(self) -> tuple[Tensor, Tensor]:
        """The linear head as ``(W (K, C), b (K,))``, float32 on ``device``."""
        ...


def resolve_device(device: str | torch.device, strict: bool = False) -> torch.device:
    """The one device resolver: ``auto`` -> cuda when torch sees a GPU, else cpu; otherwise ``torch.device(device)``.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a ``torch.device``.
        strict: refuse a cuda device torch cannot use (else the caller decides, e.g. the torch backend
            falls back to cpu with a warning).

    Raises:
        ValueError: naming the value, when it is not a device string (or, with ``strict``, when CUDA is missing).
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be one of {list(DEVICES)} (or cuda:N), but got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be one of {list(DEVICES)} (or cuda:N), but got {device!r}")
    if strict and dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available here")
    return dev
