"""Models trained at output stride 16 (last stage dilated): metadata, building, loading, hi-res maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import models as tvm

from core.cams.haycam_hr import HiResConfig, HiResHayCAM, _haycam_plus_raw, dilated_copy, shift_and_stitch
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.model import CamModel, ModelMeta, build_torchvision, dilate_last_stage, output_stride

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ("with_mask", "without_mask")


def _unit_bn(net: torch.nn.Module) -> torch.nn.Module:
    """Random-init BN statistics shrink MobileNetV2's activations to ~1e-7; use unit-ish ones."""
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_var.fill_(0.05)
    return net.eval()


def test_meta_round_trip_legacy_and_bad_values():
    meta = ModelMeta("mobilenet_v2", CLASSES, 224, output_stride=16)
    assert ModelMeta.from_dict(meta.to_dict()) == meta
    legacy = meta.to_dict()
    del legacy["output_stride"]  # files written before the field existed
    assert ModelMeta.from_dict(legacy).output_stride == 32
    with pytest.raises(ValueError, match="output_stride"):
        ModelMeta("resnet18", CLASSES, output_stride=8)
    with pytest.raises(ValueError, match="output_stride"):
        build_torchvision("resnet18", 2, output_stride=8)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_stride16_grid_equals_stride32_on_even_cells(backbone):
    torch.manual_seed(0)
    net32 = _unit_bn(build_torchvision(backbone, 2))
    net16 = _unit_bn(build_torchvision(backbone, 2, output_stride=16))
    net16.load_state_dict(net32.state_dict(), strict=True)  # dilation adds or reshapes no parameter
    assert (output_stride(net32), output_stride(net16)) == (32, 16)
    m32, m16 = CamModel(net32), CamModel(net16)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a32, a16 = m32.forward_features(x), m16.forward_features(x)
    assert a32.shape[-2:] == (3, 3) and a16.shape[-2:] == (6, 6)
    # DeepLab identity: the dilated stage computes the original cells at even positions
    torch.testing.assert_close(a16[..., ::2, ::2], a32, rtol=1e-3, atol=1e-4 * float(a32.abs().max()))
    with pytest.raises(ValueError, match="already dilated"):
        dilate_last_stage(net16)
    with pytest.raises(ValueError, match="already dilated"):
        dilated_copy(m16)


def test_checkpoint_keeps_the_stride_and_checks_it(tmp_path):
    torch.manual_seed(2)
    net = _unit_bn(build_torchvision("mobilenet_v2", 2, output_stride=16))
    meta = ModelMeta("mobilenet_v2", CLASSES, 64, output_stride=16)
    path = save_checkpoint(tmp_path / "os16.pt", CamModel(net, meta), meta)
    ck = load_checkpoint(path)
    assert ck.meta.output_stride == 16 and ck.model.output_stride == 16
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, acts = ck.model(x)
        ref_logits, ref_acts = CamModel(net)(x)
    assert acts.shape[-2:] == (4, 4)
    torch.testing.assert_close(acts, ref_acts)
    torch.testing.assert_close(logits, ref_logits)
    # its state dict is still plain torchvision's
    tvm.mobilenet_v2(num_classes=2).load_state_dict(torch.load(path, weights_only=True)["state_dict"], strict=True)
    # metadata that contradicts the network is refused
    with pytest.raises(ValueError, match="output stride 16 but its metadata says 32"):
        CamModel(net, ModelMeta("mobilenet_v2", CLASSES))
    blob = torch.load(path, weights_only=True)
    blob["meta"]["output_stride"] = 12
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: bad metadata"):
        load_checkpoint(tmp_path / "bad.pt")


def test_shift_variant_stitches_at_the_models_own_stride():
    torch.manual_seed(4)
    model = CamModel(_unit_bn(build_torchvision("resnet18", 2, output_stride=16)))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    r = HiResHayCAM(model, HiResConfig("shift"))(x)
    assert r.maps.shape == (1, 8, 8)  # 2x the 4x4 grid of a stride-16 model at 64 px
    with torch.no_grad():
        ref16, _ = _haycam_plus_raw(shift_and_stitch(model.forward_features, x, 16, 2), 0.9)
        ref32, _ = _haycam_plus_raw(shift_and_stitch(model.forward_features, x, 32, 2), 0.9)
    torch.testing.assert_close(r.maps, ref16)
    assert not torch.allclose(ref16, ref32, atol=1e-3)  # the stride decides the sub-cell shifts (±4 px, not ±8)


def test_eval_searches_no_dilate_variant_for_a_stride16_model():
    from core.evaluation.eval import DEFAULT_HR, HR_CANDIDATES, hr_candidates

    m32 = CamModel(build_torchvision("resnet18", 2))
    m16 = CamModel(build_torchvision("resnet18", 2, output_stride=16))
    assert hr_candidates(m32) == HR_CANDIDATES
    assert [c for c in HR_CANDIDATES if c not in hr_candidates(m16)] == [c for c in HR_CANDIDATES if c.variant == "dilate"]
    assert DEFAULT_HR.variant != "dilate"  # usable for either stride


def test_onnx_export_of_a_stride16_model_matches_torch(tmp_path):
    import onnxruntime as ort

    from core.onnx_export import default_meta, export_onnx, read_onnx_info

    torch.manual_seed(6)
    model = CamModel(build_torchvision("resnet18", 2, output_stride=16).eval())
    assert default_meta(model).output_stride == 16  # metadata derived from the model
    path = export_onnx(model, tmp_path / "os16.onnx", meta=ModelMeta("resnet18", CLASSES, 64, output_stride=16))
    assert read_onnx_info(path).meta.output_stride == 16
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, acts = sess.run(["logits", "activations"], {"input": x.numpy()})
    with torch.no_grad():
        ref_logits, ref_acts = model(x)
    assert acts.shape[-2:] == (4, 4)
    np.testing.assert_allclose(acts, ref_acts.numpy(), rtol=1e-3, atol=1e-4 * float(ref_acts.abs().max()))
    np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="output stride 16"):
        export_onnx(model, tmp_path / "bad.onnx", meta=ModelMeta("resnet18", CLASSES, 64))
