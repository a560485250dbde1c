"""Activations of any layer of any model, via a forward hook that never outlives its call."""
from __future__ import annotations

from torch import Tensor, nn


class HookedModel(nn.Module):
    """Wrap an arbitrary classifier so ``forward`` returns ``(logits, activations of layer)``.

    The hook is registered for one forward and removed in ``finally``, so no hook is
    left behind after an exception (pytorch-grad-cam #88, #483). The activations keep
    their autograd graph when gradients are enabled, for ``autograd`` gradients.

    Args:
        model: any module mapping (B, 3, H, W) to logits (B, K).
        layer: a submodule of ``model`` producing (B, C, h, w) activations.
    """

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        super().__init__()
        if not any(m is layer for m in model.modules()):
            raise ValueError("`layer` must be a submodule of `model`")
        self.model = model
        self.layer = layer

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (B, K), activations (B, C, h, w))``."""
        store: list[Tensor] = []
        handle = self.layer.register_forward_hook(lambda _m, _i, out: store.append(out))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if not store:
            raise RuntimeError("`layer` did not run during the forward pass")
        acts = store[-1]
        if acts.dim() != 4:
            raise ValueError(f"`layer` must output (B, C, h, w) activations, but got shape {tuple(acts.shape)}")
        return logits, acts
