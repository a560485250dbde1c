"""The contract every map method follows, and the table they are registered in."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import Tensor


@dataclass(frozen=True)
class CamInputs:
    """What a map method may use, all for one batch.

    Attributes:
        acts: (B, C, h, w) last-conv activations, finite (degenerate images are zeroed
            before a method sees them).
        grads: (B, C, h, w) dY_target/dA, or None for gradient-free methods.
        options: method options (see each method's docstring), with defaults applied.
    """

    acts: Tensor
    grads: Tensor | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MapResult:
    """A method's output.

    Attributes:
        raw: (B, h, w) map before normalisation.
        n_components: (B,) number of PCA components used, for PCA methods; else None.
    """

    raw: Tensor
    n_components: Tensor | None = None


@dataclass(frozen=True)
class Method:
    """A registered map method."""

    name: str
    fn: Callable[[CamInputs], MapResult]
    needs_grads: bool
    doc: str


@dataclass(frozen=True)
class ModelMethod:
    """A registered map method that needs the model and the input, not only one layer's activations
    (e.g. ``haycam+hr``'s shift-and-stitch runs extra forwards).

    Attributes:
        name: the method's name.
        build: ``build(model, options) -> runner``; ``model`` is a ``CamModel`` or an inference backend,
            ``options`` the method's options (e.g. a checkpoint's calibrated variant). The runner is
            called as ``runner(images (B, 3, S, S), logits=(B, K) or None) -> (raw (B, h', w'),
            bad (B,) bool)``; it raises ValueError naming the backend when it cannot run there.
        doc: one line for ``--help``.
        default_options: the options used when neither the caller nor the checkpoint gives any.
    """

    name: str
    build: Callable[[Any, dict], Callable[..., tuple[Tensor, Tensor]]]
    doc: str
    default_options: dict = field(default_factory=dict)
