"""Export a ``CamModel`` to ONNX for GPU inference engines (onnxruntime, TensorRT).

The graph
---------
One input ``input`` (B, 3, S, S) float32, normalised as ``meta.mean``/``meta.std`` say,
with a dynamic batch dimension ``batch``. Two outputs, named as the torch model returns them:

- ``logits`` (B, K)
- ``activations`` (B, C, h, w): the last conv layer, so every map method in ``core.cams``
  runs downstream of any backend unchanged (``core.explain.explain_features``).

Exported with the TorchScript exporter in eval mode with constant folding, so BatchNorm is
folded into the convolutions. Opset 17 by default; the file is checked with
``onnx.checker.check_model(full_check=True)``.

Head weights
------------
The gradient methods need the linear head W (K, C) and b (K,). They are the Gemm's own
initializers, renamed to ``head_weight`` (K, C) and ``head_bias`` (K,) (Gemm has
``transB=1``, so W is stored as (K, C), exactly ``CamModel.head_weights()``); the metadata
key ``maskstream.head`` names them. :func:`read_onnx_info` reads them back. No copy of the
weights is stored, and the batch semantics of the outputs stay clean (a third output
"head_weight" would not have a batch dimension).

Metadata (``metadata_props``, all strings)
-----------------------------------------
``maskstream.format`` = ``maskstream-onnx``, ``maskstream.version`` = ``1``,
``maskstream.meta`` = JSON of ``ModelMeta.to_dict()`` (the authoritative copy), plus plain keys
for non-Python consumers: ``backbone``, ``class_names`` (JSON list), ``input_size``, ``mean``,
``std`` (JSON lists), ``layout`` = ``NCHW``, ``color`` = ``RGB``; ``maskstream.head`` (JSON
``{"weight": "head_weight", "bias": "head_bias", "shape": [K, C]}``);
``maskstream.map_outputs`` (JSON list of the extra outputs below); ``maskstream.fp16``.

In-graph maps (optional, ``maps=``)
----------------------------------
Extra outputs computed inside the graph for the predicted class (argmax of the logits), with
the analytic gradient dY_c/dA = W[c] / (h·w) of a GAP + linear head:

- ``map_gradcam``, ``map_gradcam++``, ``map_layercam`` (B, h, w): the raw maps of
  ``core.cams`` (same functions, traced).
- ``haycam_gram`` (B, N, N) and ``haycam_chsum`` (B, N), N = h·w: the centred Gram matrix
  X Xᵀ and the channel sums X·1 of HayCAM+'s PCA. ONNX has no eigendecomposition op, so
  the 49×49 ``eigh`` stays outside the graph (:func:`haycam_plus_from_gram`).

Whether they pay is measured by ``core/bench.py --in-graph`` (see the README).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from core.cams.base import CamInputs
from core.cams.gradcam import gradcam
from core.cams.gradcampp import gradcam_pp
from core.cams.layercam import layercam
from core.cams.pca import components_for_fraction, flatten_positions
from core.model import BACKBONES, CamModel, ModelMeta

FORMAT = "maskstream-onnx"
VERSION = 1
DEFAULT_OPSET = 17
MIN_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "activations")
HEAD_WEIGHT = "head_weight"
HEAD_BIAS = "head_bias"
GRAD_MAPS = ("gradcam", "gradcam++", "layercam")
IN_GRAPH_MAPS = GRAD_MAPS + ("haycam+",)
_GRAD_FNS = {"gradcam": gradcam, "gradcam++": gradcam_pp, "layercam": layercam}


@dataclass(frozen=True)
class OnnxInfo:
    """What a maskstream ONNX file says about itself.

    Attributes:
        meta: the model's metadata.
        head_weight: (K, C) float32 linear head.
        head_bias: (K,) float32.
        outputs: output names, in graph order.
        map_outputs: names of the in-graph map outputs (subset of ``outputs``).
        opset: the default-domain opset.
        fp16: True when the graph computes in float16 (input and outputs float16).
    """

    meta: ModelMeta
    head_weight: np.ndarray
    head_bias: np.ndarray
    outputs: tuple[str, ...]
    map_outputs: tuple[str, ...]
    opset: int
    fp16: bool

    def __post_init__(self) -> None:
        k = len(self.meta.class_names)
        if self.head_weight.ndim != 2 or self.head_weight.shape[0] != k:
            raise ValueError(f"head_weight must have shape ({k}, C), but got {self.head_weight.shape}")
        if self.head_bias.shape != (k,):
            raise ValueError(f"head_bias must have shape ({k},), but got {self.head_bias.shape}")


def map_output_names(maps: Sequence[str]) -> tuple[str, ...]:
    """Graph output names for the requested in-graph maps, in a fixed order."""
    names: list[str] = []
    for m in IN_GRAPH_MAPS:
        if m in maps:
            names += ["haycam_gram", "haycam_chsum"] if m == "haycam+" else [f"map_{m}"]
    return tuple(names)


class _ExportWrapper(nn.Module):
    """``CamModel`` plus optional in-graph maps; what the exporter traces."""

    def __init__(self, model: CamModel, maps: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.maps = tuple(m for m in IN_GRAPH_MAPS if m in maps)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        logits, acts = self.model(x)
        outs: list[Tensor] = [logits, acts]
        if not self.maps:
            return tuple(outs)
        w = self.model.head_weights()[0]
        h, wd = acts.shape[2], acts.shape[3]
        for m in self.maps:
            if m == "haycam+":
                xc = flatten_positions(acts)  # (B, N, C), centred per channel
                outs.append(xc @ xc.transpose(1, 2))  # (B, N, N) Gram
                outs.append(xc.sum(dim=2))  # (B, N) channel sums, for the sign convention
            else:
                g = (w[logits.argmax(dim=1)] / (h * wd)).unsqueeze(2).unsqueeze(3)  # (B, C, 1, 1)
                outs.append(_GRAD_FNS[m](CamInputs(acts, g.expand_as(acts))).raw)
        return tuple(outs)


def default_meta(model: CamModel, num_classes: int | None = None) -> ModelMeta:
    """Metadata for a model that carries none (class names ``class0..``, ImageNet normalisation)."""
    if model.meta is not None:
        return model.meta
    backbone = "resnet18" if model.kind == "resnet" else "mobilenet_v2"
    k = num_classes if num_classes is not None else int(model.head_weights()[0].shape[0])
    return ModelMeta(backbone=backbone, class_names=tuple(f"class{i}" for i in range(k)),
                     output_stride=model.output_stride)


def export_onnx(
    model: CamModel,
    out_path: str | os.PathLike,
    *,
    meta: ModelMeta | None = None,
    opset: int = DEFAULT_OPSET,
    maps: Sequence[str] = (),
    fp16: bool = False,
    extra_props: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` as an ONNX file with a dynamic batch and maskstream metadata.

    Args:
        model: an eval-mode ``CamModel`` (it is traced on CPU in float32, in eval mode).
        out_path: destination ``.onnx`` file (written atomically).
        meta: metadata to embed; default ``model.meta`` or :func:`default_meta`.
        opset: ONNX opset, >= 17.
        maps: in-graph map outputs to add, from ``IN_GRAPH_MAPS`` (fp32 only).
        fp16: convert the graph to float16 (input and outputs too) with onnxruntime's
            offline converter ``onnxruntime.transformers.float16``; for CUDA/TensorRT.
        extra_props: more ``metadata_props`` (strings).

    Returns:
        The written path.

    Raises:
        ValueError: bad opset, unknown map name, maps together with fp16, or metadata whose
            output stride is not the model's.
    """
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, but got {opset}")
    unknown = [m for m in maps if m not in IN_GRAPH_MAPS]
    if unknown:
        raise ValueError(f"unknown in-graph map {unknown[0]!r}; valid names: {', '.join(IN_GRAPH_MAPS)}")
    if maps and fp16:
        raise ValueError("in-graph maps are float32 only (the Gram matrix overflows float16)")
    if not isinstance(model, CamModel):
        raise TypeError(f"`model` must be a core.model.CamModel, but got {type(model).__name__}")
    meta = meta or default_meta(model)
    if meta.backbone not in BACKBONES:
        raise ValueError(f"meta.backbone must be one of {list(BACKBONES)}, but got {meta.backbone!r}")
    src = CamModel(model.net, meta)  # refuses metadata whose output stride is not the network's
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    # Trace a float32 CPU copy in eval mode; the caller's model is left as it was.
    modes = [(m, m.training) for m in model.modules()]  # restored module by module, not by one train()
    dev, dt = next(model.parameters()).device, next(model.parameters()).dtype
    src = src.to("cpu", torch.float32).eval()
    wrapper = _ExportWrapper(src, maps).eval()
    names = OUTPUT_NAMES + map_output_names(maps)
    x = torch.zeros(2, 3, meta.input_size, meta.input_size)
    dyn = {n: {0: "batch"} for n in (INPUT_NAME, *names)}
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy (TorchScript) exporter
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                wrapper, (x,), str(tmp), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=list(names), dynamic_axes=dyn,
                do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL,
            )
    finally:
        model.to(dev, dt)
        for m, was_training in modes:
            m.training = was_training

    proto = onnx.load(str(tmp))
    k, c = (int(s) for s in src.head_weights()[0].shape)
    _name_head(proto, k, c)
    _static_map_shapes(proto)
    props = {
        "maskstream.format": FORMAT,
        "maskstream.version": str(VERSION),
        "maskstream.meta": json.dumps(meta.to_dict()),
        "maskstream.head": json.dumps({"weight": HEAD_WEIGHT, "bias": HEAD_BIAS, "shape": [k, c]}),
        "maskstream.map_outputs": json.dumps(list(map_output_names(maps))),
        "maskstream.fp16": "1" if fp16 else "0",
        "backbone": meta.backbone,
        "class_names": json.dumps(list(meta.class_names)),
        "input_size": str(meta.input_size),
        "mean": json.dumps(list(meta.mean)),
        "std": json.dumps(list(meta.std)),
        "layout": "NCHW",
        "color": "RGB",
        **(extra_props or {}),
    }
    if fp16:
        proto = _to_fp16(proto)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    proto.producer_name = "maskstream"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))
    os.replace(tmp, out_path)
    return out_path


def _name_head(proto, k: int, c: int) -> None:
    """Rename the Gemm that produces ``logits`` so its W and b are ``head_weight``/``head_bias``."""
    gemm = next((n for n in proto.graph.node if "logits" in n.output), None)
    if gemm is None or gemm.op_type != "Gemm" or len(gemm.input) < 3:
        raise RuntimeError(f"export: expected a Gemm producing 'logits', got {gemm.op_type if gemm else None}")
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    if trans_b != 1:
        raise RuntimeError("export: the head Gemm must have transB=1 (W stored as (K, C))")
    rename = {gemm.input[1]: HEAD_WEIGHT, gemm.input[2]: HEAD_BIAS}
    inits = {i.name: i for i in proto.graph.initializer}
    for old in rename:
        if old not in inits:
            raise RuntimeError(f"export: head tensor {old!r} is not an initializer")
    if tuple(inits[gemm.input[1]].dims) != (k, c):
        raise RuntimeError(f"export: head weight has shape {tuple(inits[gemm.input[1]].dims)}, expected {(k, c)}")
    for init in proto.graph.initializer:
        init.name = rename.get(init.name, init.name)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]


def _static_map_shapes(proto) -> None:
    """Give the in-graph map outputs static non-batch dims (the tracer leaves symbolic ones)."""
    outs = {o.name: o for o in proto.graph.output}
    dims = [d.dim_value for d in outs["activations"].type.tensor_type.shape.dim[2:]]
    if len(dims) != 2 or not all(dims):
        return
    h, w = dims
    want = {"haycam_gram": [h * w, h * w], "haycam_chsum": [h * w]}
    want.update({n: [h, w] for n in outs if n.startswith("map_")})
    for name, shape in want.items():
        if name not in outs:
            continue
        dim = outs[name].type.tensor_type.shape.dim
        del dim[1:]
        for v in shape:
            dim.add().dim_value = v


def _to_fp16(proto):
    """Float16 graph (input and outputs too) via onnxruntime's offline converter."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:  # pragma: no cover - depends on the onnxruntime build
        raise RuntimeError(f"fp16 export needs onnxruntime.transformers.float16 ({exc})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_float_to_float16(proto, keep_io_types=False, disable_shape_infer=False)


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write a float16 copy of a float32 maskstream export (for the CUDA provider).

    Raises:
        ValueError: when ``src`` is not a maskstream export, is already fp16, or has in-graph maps.
    """
    import onnx

    info = read_onnx_info(src)
    if info.fp16:
        raise ValueError(f"ONNX model {src}: already float16")
    if info.map_outputs:
        raise ValueError(f"ONNX model {src}: in-graph maps are float32 only; export without maps for fp16")
    proto = _to_fp16(onnx.load(str(src)))
    for p in proto.metadata_props:
        if p.key == "maskstream.fp16":
            p.value = "1"
    onnx.checker.check_model(proto, full_check=True)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, dst)
    return dst


def read_onnx_info(path_or_proto) -> OnnxInfo:
    """Metadata and head weights of a maskstream ONNX file (or loaded ``ModelProto``).

    Raises:
        ValueError: naming the file, when it is not a maskstream export or its metadata is bad.
    """
    import onnx
    from onnx import numpy_helper

    where = str(path_or_proto) if not isinstance(path_or_proto, onnx.ModelProto) else "<model>"
    if isinstance(path_or_proto, onnx.ModelProto):
        proto = path_or_proto
    else:
        if not Path(path_or_proto).is_file():
            raise FileNotFoundError(f"ONNX model {where}: no such file")
        proto = onnx.load(str(path_or_proto))
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("maskstream.format") != FORMAT:
        raise ValueError(f"ONNX model {where}: not a maskstream export (metadata maskstream.format != {FORMAT!r})")
    if int(props.get("maskstream.version", "0")) > VERSION:
        raise ValueError(f"ONNX model {where}: version {props['maskstream.version']} is newer than {VERSION}")
    try:
        meta = ModelMeta.from_dict(json.loads(props["maskstream.meta"]))
        head = json.loads(props["maskstream.head"])
        map_outputs = tuple(json.loads(props.get("maskstream.map_outputs", "[]")))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"ONNX model {where}: bad maskstream metadata ({exc})") from None
    inits = {i.name: i for i in proto.graph.initializer}
    if head["weight"] not in inits or head["bias"] not in inits:
        raise ValueError(f"ONNX model {where}: head initializers {head['weight']!r}/{head['bias']!r} are missing")
    w = numpy_helper.to_array(inits[head["weight"]]).astype(np.float32)
    b = numpy_helper.to_array(inits[head["bias"]]).astype(np.float32)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxInfo(meta=meta, head_weight=w, head_bias=b, outputs=tuple(o.name for o in proto.graph.output),
                    map_outputs=map_outputs, opset=int(opset), fp16=props.get("maskstream.fp16") == "1")


def haycam_plus_from_gram(gram: Tensor, chsum: Tensor, fraction: float = 0.9) -> tuple[Tensor, Tensor]:
    """Finish HayCAM+ from the in-graph Gram matrix (the part ONNX cannot do: ``eigh``).

    Same arithmetic as ``core.cams.pca.batched_pca`` (Gram route) and
    ``core.cams.haycam.haycam_plus``: eigenpairs of X Xᵀ give the projections s_k u_k,
    signs fixed so each correlates positively with the channel sum, then the smallest n
    components explaining ``fraction`` of the variance are summed.

    Args:
        gram: (B, N, N) X Xᵀ of the centred (positions × channels) activations.
        chsum: (B, N) X · 1, the channel sums of the centred activations.
        fraction: variance fraction in (0, 1].

    Returns:
        (raw (B, N) map, flatten to (h, w) by the caller; n_components (B,)).
    """
    g = gram.float()
    evals, evecs = torch.linalg.eigh(g)
    evals, evecs = evals.flip(-1), evecs.flip(-1)
    var = evals.clamp_min(0)
    proj = evecs * var.sqrt().unsqueeze(1)  # (B, N, R)
    dots = (proj * chsum.float().unsqueeze(2)).sum(dim=1, keepdim=True)
    proj = proj * torch.where(dots < 0, -1.0, 1.0).to(proj.dtype)
    total = var.sum(dim=1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    ratio = torch.where(total.unsqueeze(1) > 0, var / safe.unsqueeze(1), torch.zeros_like(var))
    n = components_for_fraction(ratio, fraction)
    keep = torch.arange(proj.shape[2], device=n.device).unsqueeze(0) < n.unsqueeze(1)
    return (proj * keep.unsqueeze(1).to(proj.dtype)).sum(dim=2), n


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """First ``length`` hex digits of a file's SHA-256 (for export cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def model_digest(model: nn.Module, length: int = 16) -> str:
    """First ``length`` hex digits of a SHA-256 over a model's state dict (for export cache keys)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:length]
