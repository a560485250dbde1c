"""Inference backends: ``create_backend("torch" | "onnxruntime", ...)``, registered by name in ``BACKENDS``.

A backend kind is a factory ``(checkpoint, device, fp16, onnx_path, **options) -> Backend`` registered with
:func:`register_backend` together with its options dataclass (``TorchOptions``, ``OrtOptions``): the options
are the factory's keyword arguments and the run config's ``worker.backend_options.<kind>`` section (strict:
unknown keys are refused, each dataclass validates its values).

Both return ``(logits (B, K), activations (B, C, h, w))`` torch tensors on ``backend.device``
from ``backend.forward(images)`` and the head from ``backend.head_weights()``, so every map
method (``core.explain.explain`` / ``explain_features``) runs unchanged on either.

Model source, in order: ``model=`` (a ``CamModel``, tests and benchmarks), ``checkpoint``,
``onnx_path`` (onnxruntime only), else the shipped default checkpoint. For ``onnxruntime``
given only a checkpoint (or a model), the ONNX export is made on the fly and cached under
``$MASKSTREAM_CACHE`` (default ``~/.cache/maskstream``) ``/onnx/``, keyed by the SHA-256 of
the checkpoint file (or of the model's weights), the opset, fp16 and in-graph maps; later
runs reuse it. Pass ``onnx_path`` to use a file made by ``maskstream export`` instead.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from core.backends.base import Backend, resolve_device
from core.backends.torch_backend import TorchBackend
from core.model import CamModel, ModelMeta

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TorchOptions:
    """Options of the ``torch`` backend (see ``core.backends.torch_backend.TorchBackend``).

    Attributes:
        channels_last: NHWC memory format (None: on CUDA only).
        compile: wrap the model in ``torch.compile``.
        compile_mode: ``torch.compile`` mode, e.g. ``max-autotune`` (None: its default).
        cudnn_benchmark: on CUDA, let cuDNN pick the fastest convolution per input shape.
    """

    channels_last: bool | None = None
    compile: bool = False
    compile_mode: str | None = None
    cudnn_benchmark: bool = True


@dataclass(frozen=True)
class OrtOptions:
    """Options of the ``onnxruntime`` backend (see ``core.backends.ort_backend.OrtBackend``).

    Attributes:
        providers: execution providers in priority order (empty: by device; CPU is always appended).
        tensorrt: put TensorRT first (engines cached under ``cache_dir``/trt).
        threads: intra-op threads (0: onnxruntime's default).
        inter_threads: inter-op threads (parallel mode only).
        graph_opt: ``disable``, ``basic``, ``extended`` or ``all``.
        execution_mode: ``sequential`` or ``parallel``.
        provider_options: extra options per provider name.
        io_binding: bind torch tensors as inputs/outputs (no host copy on CUDA).
        cache_dir: export and TensorRT engine cache (None: ``$MASKSTREAM_CACHE`` or ~/.cache/maskstream).
        trt_max_batch: largest batch the TensorRT optimisation profile covers.
        opset: ONNX opset of an on-the-fly export (None: the default).
        maps: map methods computed inside the exported graph (float32 only).
    """

    providers: tuple[str, ...] = ()
    tensorrt: bool = False
    threads: int = 0
    inter_threads: int = 0
    graph_opt: str = "all"
    execution_mode: str = "sequential"
    provider_options: dict[str, dict[str, str]] = field(default_factory=dict)
    io_binding: bool = True
    cache_dir: str | None = None
    trt_max_batch: int = 128
    opset: int | None = None
    maps: tuple[str, ...] = ()

    def __post_init__(self) -> None:  # graph_opt / execution_mode are checked by the session options
        for name in ("threads", "inter_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, but got {getattr(self, name)}")
        if self.trt_max_batch < 1:
            raise ValueError(f"trt_max_batch must be >= 1, but got {self.trt_max_batch}")


@dataclass(frozen=True)
class BackendKind:
    """A registered backend kind.

    Attributes:
        name: the kind's name (``worker.backend``).
        factory: ``(checkpoint, device, fp16, onnx_path, **options) -> Backend``.
        options: its options dataclass; ``model=`` (a ``CamModel``) is accepted besides its fields.
        aliases: other names accepted by :func:`create_backend`.
    """

    name: str
    factory: Callable[..., Backend]
    options: type
    aliases: tuple[str, ...] = ()

    def option_names(self) -> set[str]:
        return {f.name for f in fields(self.options)} | {"model"}


BACKENDS: dict[str, BackendKind] = {}


def register_backend(name: str, options: type, aliases: Sequence[str] = ()):
    """Decorator: register a backend factory as kind ``name`` with its options dataclass."""

    def deco(factory: Callable[..., Backend]) -> Callable[..., Backend]:
        if name in BACKENDS:
            raise ValueError(f"backend kind {name!r} is already registered")
        BACKENDS[name] = BackendKind(name, factory, options, tuple(aliases))
        return factory

    return deco


def backend_kind(kind: str) -> BackendKind:
    """The registered kind called ``kind`` (or one of its aliases); ValueError listing the kinds otherwise."""
    k = str(kind).lower()
    for b in BACKENDS.values():
        if k == b.name or k in b.aliases:
            return b
    raise ValueError(f"backend kind must be one of {list(BACKENDS)}, but got {kind!r}")


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The export cache: ``override``, else ``$MASKSTREAM_CACHE``, else ``~/.cache/maskstream``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("MASKSTREAM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "maskstream"


def _load_model(checkpoint: str | None, model: CamModel | None) -> tuple[CamModel, ModelMeta, str | None]:
    from core.checkpoint import load_checkpoint
    from core.onnx_export import default_meta

    if model is not None:
        if not isinstance(model, CamModel):
            raise TypeError(f"`model` must be a core.model.CamModel, but got {type(model).__name__}")
        return model, default_meta(model), None
    ck = load_checkpoint(checkpoint)
    return ck.model, ck.meta, str(ck.path)


def cached_export(
    *,
    checkpoint: str | None = None,
    model: CamModel | None = None,
    maps: Sequence[str] = (),
    fp16: bool = False,
    opset: int | None = None,
    cache: str | os.PathLike | None = None,
) -> Path:
    """The ONNX export of a checkpoint (or model), made once and reused from the cache.

    Returns:
        Path of a maskstream ONNX file (float16 when ``fp16``).
    """
    from core.onnx_export import DEFAULT_OPSET, export_onnx, file_digest, model_digest

    opset = opset or DEFAULT_OPSET
    m, meta, ck_path = _load_model(checkpoint, model)
    digest = file_digest(ck_path) if ck_path else model_digest(m)
    tag = "".join(f"-{x.replace('+', 'p')}" for x in maps)
    path = cache_dir(cache) / "onnx" / f"{meta.backbone}-{digest}-op{opset}{tag}{'-fp16' if fp16 else ''}.onnx"
    if not path.is_file():
        log.info("exporting %s to %s", ck_path or "model", path)
        export_onnx(m, path, meta=meta, opset=opset, maps=maps, fp16=fp16,
                    extra_props={"maskstream.source": Path(ck_path).name if ck_path else "model"})
    return path


def _fp16_copy(onnx_path: Path, cache: str | os.PathLike | None) -> Path:
    from core.onnx_export import convert_fp16, file_digest, read_onnx_info

    if read_onnx_info(onnx_path).fp16:
        return onnx_path
    dst = cache_dir(cache) / "onnx" / f"{onnx_path.stem}-{file_digest(onnx_path)}-fp16.onnx"
    if not dst.is_file():
        convert_fp16(onnx_path, dst)
    return dst


def _ort_fp16(fp16: bool | None, dev: torch.device, maps: Sequence[str]) -> bool:
    """Whether to make a float16 graph; warns only when fp16 was asked for explicitly."""
    import warnings

    if fp16 is None:
        return dev.type == "cuda" and torch.cuda.is_available() and not maps
    if not fp16:
        return False
    why = ("fp16 needs device cuda" if dev.type != "cuda" else
           "torch sees no CUDA GPU" if not torch.cuda.is_available() else
           "in-graph maps are float32 only" if maps else "")
    if why:
        warnings.warn(f"onnxruntime backend: {why}; running float32", RuntimeWarning, stacklevel=3)
        return False
    return True


def create_backend(
    kind: str = "torch",
    checkpoint: str | None = None,
    device: str | torch.device = "auto",
    fp16: bool | None = None,
    onnx_path: str | None = None,
    **opts: Any,
) -> Backend:
    """Make an inference backend.

    Args:
        kind: ``torch`` or ``onnxruntime`` (aliases ``ort``, ``onnx``, ``pytorch``).
        checkpoint: maskstream checkpoint (default: the shipped one).
        device: ``auto`` (cuda if torch sees a GPU), ``cpu``, ``cuda`` or ``cuda:N``.
        fp16: float16 compute; None = on CUDA only. Refused with a warning on CPU.
        onnx_path: an existing ``maskstream export`` file (onnxruntime only).
        **opts: torch: ``model``, ``channels_last``, ``compile``, ``compile_mode``, ``cudnn_benchmark``.
            onnxruntime: ``model``, ``providers``, ``tensorrt``, ``threads``, ``inter_threads``,
            ``graph_opt``, ``execution_mode``, ``provider_options``, ``io_binding``,
            ``cache_dir``, ``trt_max_batch``, ``maps`` (in-graph maps), ``opset``.

    Returns:
        A backend with ``forward``, ``head_weights``, ``meta``, ``device``, ``dtype``, ``name``.

    Raises:
        ValueError: unknown kind or option (named), or an option that needs the other kind.
    """
    spec = backend_kind(kind)
    allowed = spec.option_names()
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for the {spec.name} backend; valid: {sorted(allowed)}")
    model = opts.pop("model", None)
    spec.options(**opts)  # validates the values
    return spec.factory(checkpoint, resolve_device(device), fp16, onnx_path, model=model, **opts)


@register_backend("torch", TorchOptions, aliases=("pytorch",))
def _torch_backend(checkpoint: str | None, dev: torch.device, fp16: bool | None, onnx_path: str | None,
                   *, model: CamModel | None = None, **opts: Any) -> Backend:
    if onnx_path is not None and checkpoint is None and model is None:
        raise ValueError("the torch backend needs a checkpoint, not an ONNX file (`onnx_path`)")
    model, meta, _ = _load_model(checkpoint, model)
    return TorchBackend(model, meta, dev, fp16=fp16, **opts)


@register_backend("onnxruntime", OrtOptions, aliases=("ort", "onnx"))
def _ort_backend(checkpoint: str | None, dev: torch.device, fp16: bool | None, onnx_path: str | None,
                 *, model: CamModel | None = None, **opts: Any) -> Backend:
    from core.backends.ort_backend import OrtBackend

    maps = tuple(opts.pop("maps", ()) or ())
    opset = opts.pop("opset", None)
    if "providers" in opts:
        opts["providers"] = tuple(opts["providers"]) or None
    want_fp16 = _ort_fp16(fp16, dev, maps)
    if onnx_path is not None:
        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {path}: no such file")
    else:
        path = cached_export(checkpoint=checkpoint, model=model, maps=maps, opset=opset,
                             cache=opts.get("cache_dir"))
    fp16_path = None
    if want_fp16 and not opts.get("tensorrt") and "TensorrtExecutionProvider" not in (opts.get("providers") or ()):
        fp16_path = _fp16_copy(path, opts.get("cache_dir")) if onnx_path is not None else cached_export(
            checkpoint=checkpoint, model=model, fp16=True, opset=opset, cache=opts.get("cache_dir"))
    elif want_fp16:
        fp16_path = path  # TensorRT: the fp32 graph with trt_fp16_enable
    return OrtBackend(path, dev, fp16_path=fp16_path, **opts)


KINDS = tuple(BACKENDS)

__all__ = ["BACKENDS", "KINDS", "Backend", "BackendKind", "OrtOptions", "TorchOptions", "TorchBackend", "backend_kind",
           "cache_dir", "cached_export", "create_backend", "register_backend", "resolve_device"]
