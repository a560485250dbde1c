"""ONNX export: graph contract, metadata round-trip, head weights, in-graph maps."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from core.cams import CamInputs
from core.cams.gradcam import gradcam
from core.cams.gradcampp import gradcam_pp
from core.cams.haycam import haycam_plus
from core.cams.layercam import layercam
from core.gradients import analytic_grads
from core.model import ModelMeta
from core.onnx_export import (
    IN_GRAPH_MAPS,
    convert_fp16,
    export_onnx,
    haycam_plus_from_gram,
    read_onnx_info,
)
from tests.backend_helpers import calibrated_model, images

META = ModelMeta(backbone="resnet18", class_names=("with_mask", "without_mask"), input_size=224,
                 mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


@pytest.fixture(scope="module")
def model():
    return calibrated_model("resnet18")


@pytest.fixture(scope="module")
def resnet_maps(tmp_path_factory, model):
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "r18.onnx", meta=META, maps=IN_GRAPH_MAPS)
    return model, path


@pytest.fixture(scope="module")
def session(resnet_maps):
    return _cpu_session(resnet_maps[1])


def _cpu_session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_graph_contract_and_metadata_round_trip(resnet_maps):
    model, path = resnet_maps
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17
    inp = proto.graph.input[0]
    assert inp.name == "input" and inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in proto.graph.output][:2] == ["logits", "activations"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["backbone"] == "resnet18"
    assert json.loads(props["class_names"]) == ["with_mask", "without_mask"]
    assert props["input_size"] == "224"
    assert json.loads(props["mean"]) == [0.5, 0.4, 0.3] and json.loads(props["std"]) == [0.2, 0.25, 0.3]

    info = read_onnx_info(path)
    assert info.meta == META and info.opset == opset and not info.fp16
    w, b = model.head_weights()
    np.testing.assert_array_equal(info.head_weight, w.detach().numpy())  # exact: same initializer
    np.testing.assert_array_equal(info.head_bias, b.detach().numpy())
    assert info.map_outputs == ("map_gradcam", "map_gradcam++", "map_layercam", "haycam_gram", "haycam_chsum")


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_matches_torch(resnet_maps, session, batch):
    model, _ = resnet_maps
    x = images(batch)
    logits, acts = session.run(["logits", "activations"], {"input": x.numpy()})
    with torch.no_grad():
        ref_l, ref_a = model(x)
    scale = float(ref_a.abs().max())
    assert scale > 0.1  # calibrated model: activations are O(1), so the tolerance means something
    np.testing.assert_allclose(logits, ref_l.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(acts, ref_a.numpy(), atol=1e-4 * scale, rtol=0)


def test_in_graph_maps_equal_core_maps(resnet_maps):
    """The in-graph maps, read through the onnxruntime backend, equal core.cams on the torch forward."""
    from core.backends import create_backend

    model, path = resnet_maps
    x = images(3, seed=5)
    backend = create_backend("onnxruntime", device="cpu", onnx_path=str(path))
    out = {k: v.numpy() for k, v in backend.run(x).items()}
    assert out["map_gradcam"].shape == (3, 7, 7) and out["haycam_gram"].shape == (3, 49, 49)
    with torch.no_grad():
        logits, acts = model(x)
    g = analytic_grads(model.head_weights()[0].detach(), logits.argmax(1), acts.shape)
    for name, fn in (("gradcam", gradcam), ("gradcam++", gradcam_pp), ("layercam", layercam)):
        ref = fn(CamInputs(acts, g)).raw
        got = torch.from_numpy(out[f"map_{name}"])
        assert float((got - ref).abs().max()) <= 1e-4 * max(float(ref.abs().max()), 1.0), name
    ref = haycam_plus(CamInputs(acts))
    raw, n = haycam_plus_from_gram(torch.from_numpy(out["haycam_gram"]), torch.from_numpy(out["haycam_chsum"]))
    assert torch.equal(n, ref.n_components)
    # the Gram route squares the condition number: float32 agreement is ~1e-4 of the peak and moves with
    # the BLAS thread count; a wrong component or sign would be off by O(peak)
    torch.testing.assert_close(raw.reshape(ref.raw.shape), ref.raw, atol=5e-4 * float(ref.raw.abs().max()), rtol=0)


def test_fp16_export_runs_and_keeps_metadata(tmp_path, model):
    meta = ModelMeta(backbone="resnet18", class_names=("a", "b"), input_size=64)  # small: fp16 is slow on CPU
    p32 = export_onnx(model, tmp_path / "m.onnx", meta=meta)
    p16 = convert_fp16(p32, tmp_path / "m16.onnx")
    info = read_onnx_info(p16)
    assert info.fp16 and info.meta == meta
    np.testing.assert_allclose(info.head_weight, model.head_weights()[0].detach().numpy(), atol=1e-3)
    sess = _cpu_session(p16)
    assert sess.get_inputs()[0].type == "tensor(float16)"
    x = images(2, size=64)
    logits = sess.run(["logits"], {"input": x.numpy().astype(np.float16)})[0].astype(np.float32)
    with torch.no_grad():
        ref = model(x)[0].numpy()
    np.testing.assert_allclose(logits, ref, atol=0.05 * max(1.0, float(np.abs(ref).max())))
    with pytest.raises(ValueError, match="already float16"):
        convert_fp16(p16, tmp_path / "again.onnx")


@pytest.mark.parametrize("kwargs, match", [
    ({"opset": 13}, "opset must be >= 17"),
    ({"maps": ["cam"]}, "unknown in-graph map 'cam'"),
    ({"maps": ["gradcam"], "fp16": True}, "float32 only"),
])
def test_export_rejects_bad_arguments(tmp_path, model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_onnx(model, tmp_path / "x.onnx", **kwargs)
    assert not (tmp_path / "x.onnx").exists()


def test_read_rejects_foreign_onnx(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="foreign.onnx: not a maskstream export"):
        read_onnx_info(path)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        read_onnx_info(tmp_path / "missing.onnx")


def test_cli_export_writes_a_verified_file(tmp_path, model, capsys):
    from core.checkpoint import save_checkpoint
    from stream.cli.main import main

    meta = ModelMeta(backbone="resnet18", class_names=("with_mask", "without_mask"), input_size=64)
    ck = save_checkpoint(tmp_path / "m.pt", model, meta)
    out = tmp_path / "out" / "m.onnx"
    assert main(["export", "--checkpoint", str(ck), "--out", str(out)]) == 0
    assert read_onnx_info(out).meta == meta
    printed = capsys.readouterr().out
    assert "verified with onnxruntime" in printed and "opset 17" in printed
    assert main(["export", "--checkpoint", str(ck), "--out", str(tmp_path / "m.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["bench", "--methods", "forward,nope"]) == 2
    assert "--methods: unknown 'nope'" in capsys.readouterr().err
