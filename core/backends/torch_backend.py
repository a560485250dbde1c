"""The ``torch`` backend: eager ``CamModel`` (optionally ``torch.compile``), fp16 and channels_last on CUDA."""
from __future__ import annotations

import logging
import warnings

import torch
from torch import Tensor

from core.model import CamModel, ModelMeta

log = logging.getLogger(__name__)


class TorchBackend:
    """Run a ``CamModel`` with PyTorch.

    Args:
        model: the model (moved to ``device``/dtype in place; pass a copy to keep yours).
        meta: its metadata.
        device: resolved device; ``cuda`` without a visible GPU falls back to cpu with a warning.
        fp16: compute in float16 (CUDA only; on CPU it warns and stays float32). None: True on CUDA.
        channels_last: NHWC memory format (None: on CUDA only).
        compile: wrap the model in ``torch.compile`` (first call compiles; needs a C++ compiler on CPU).
        compile_mode: ``torch.compile`` mode, e.g. ``max-autotune``.
        cudnn_benchmark: on CUDA, set ``torch.backends.cudnn.benchmark`` (process-wide) so cuDNN
            picks the fastest convolution per input shape, as onnxruntime's CUDA provider does
            by default; each new batch size pays a one-off search.
    """

    def __init__(
        self,
        model: CamModel,
        meta: ModelMeta,
        device: torch.device,
        fp16: bool | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        cudnn_benchmark: bool = True,
    ) -> None:
        if device.type == "cuda" and not torch.cuda.is_available():
            warnings.warn("torch backend: device 'cuda' requested but torch sees no CUDA GPU; "
                          "falling back to cpu", RuntimeWarning, stacklevel=3)
            device = torch.device("cpu")
        if fp16 is None:
            fp16 = device.type == "cuda"
        if fp16 and device.type != "cuda":
            warnings.warn("torch backend: fp16 needs a CUDA device; computing in float32 on cpu",
                          RuntimeWarning, stacklevel=3)
            fp16 = False
        if device.type == "cuda" and cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        self.device = device
        self.dtype = torch.float16 if fp16 else torch.float32
        self.channels_last = device.type == "cuda" if channels_last is None else bool(channels_last)
        self.meta = meta
        self.model = model.eval().to(device=device, dtype=self.dtype)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._fn = torch.compile(self.model, mode=compile_mode) if compile else self.model
        w, b = self.model.head_weights()
        self._head = (w.detach().float().clone(), b.detach().float().clone())
        extras = [s for s, on in (("fp16", fp16), ("channels_last", self.channels_last), ("compile", compile)) if on]
        self.name = f"torch[{device.type}{',' if extras else ''}{','.join(extras)}]"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) normalised images -> (logits (B, K), activations (B, C, h, w)) on ``device``."""
        x = images.to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return self._fn(x)

    __call__ = forward

    def forward_head(self, acts: Tensor) -> Tensor:
        """Logits (B, K) from activations (B, C, h, w) (for autograd gradients)."""
        return self.model.forward_head(acts.to(self.dtype))

    def head_weights(self) -> tuple[Tensor, Tensor]:
        """``(W (K, C), b (K,))`` float32 on ``device``."""
        return self._head

    def close(self) -> None:
        """Nothing to release (kept for symmetry with the onnxruntime backend)."""
