"""Inference backends: torch vs onnxruntime parity (logits and all six maps), fallbacks, options.

Runs on ``$MASKSTREAM_TEST_DEVICE`` (default cpu; ``cuda`` on a GPU machine, float32 without TF32).
"""
from __future__ import annotations

import warnings

import pytest
import torch

from core.backends import Backend, create_backend
from core.cams import METHODS
from core.explain import explain, explain_features
from core.model import ModelMeta
from core.onnx_export import export_onnx
from tests.backend_helpers import calibrated_model, device_under_test, images, strict_fp32

DEVICE = device_under_test()
ORT_OPTS = {"provider_options": {"CUDAExecutionProvider": {"use_tf32": "0"}}}


@pytest.fixture(scope="module", params=["resnet18", "mobilenet_v2"])
def pair(request, tmp_path_factory):
    """(torch backend, onnxruntime backend) for one calibrated seeded model, float32."""
    strict_fp32()
    backbone = request.param
    meta = ModelMeta(backbone=backbone, class_names=("with_mask", "without_mask"))
    model = calibrated_model(backbone, meta=meta)
    path = export_onnx(model, tmp_path_factory.mktemp(backbone) / "m.onnx")
    tb = create_backend("torch", device=DEVICE, fp16=False, model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ob = create_backend("onnxruntime", device=DEVICE, fp16=False, onnx_path=str(path), **ORT_OPTS)
    return tb, ob


# Measured max |torch - onnxruntime| over 18 images (CPU, seeds 7-12): <= 5.5e-5 for every map
# and backbone except HayCAM+ on mobilenet_v2: 2.1e-4. That is fp32 forward noise amplified by the
# PCA, not the backend: torch's own fp32 activations differ from float64 by 3.6e-5 (relative), and
# a random-weight model needs ~37 of 49 components with eigenvalue ratios ~1.01 at the cut, so the
# kept subspace is ill-conditioned. A trained model keeps a few, well separated components.
TOL = 1e-4
TOL_ILL_CONDITIONED = {("mobilenet_v2", "haycam+"): 5e-4}


@pytest.fixture(scope="module")
def forwards(pair):
    """One forward per backend on the same batch: ((logits, acts) torch, (logits, acts) onnxruntime, x)."""
    tb, ob = pair
    x = images(3, seed=7).to(tb.device)
    return tb.forward(x), ob.forward(x.to(ob.device)), x


def test_backends_agree_on_logits_and_activations(pair, forwards):
    tb, ob = pair
    (lt, at), (lo, ao), _ = forwards
    assert isinstance(tb, Backend) and isinstance(ob, Backend)
    assert tb.meta == ob.meta and tb.dtype == ob.dtype == torch.float32
    assert lo.shape == lt.shape == (3, 2) and ao.shape == at.shape
    assert float(at.abs().max()) > 0.1  # O(1) activations, so 1e-4 is a real tolerance
    torch.testing.assert_close(lo.to(lt.device), lt, atol=TOL, rtol=0)
    torch.testing.assert_close(ao.to(at.device), at, atol=TOL * float(at.abs().max()), rtol=0)
    for a, b in zip(tb.head_weights(), ob.head_weights()):
        torch.testing.assert_close(b.to(a.device), a, atol=0, rtol=0)


@pytest.mark.parametrize("method", list(METHODS))
def test_backends_agree_on_maps(pair, forwards, method):
    """All six maps from either backend's forward agree (maps in [0, 1])."""
    tb, ob = pair
    (lt, at), (lo, ao), x = forwards
    size = tuple(x.shape[2:])
    et = explain_features(lt, at, method, size, head_weight=tb.head_weights()[0])
    eo = explain_features(lo, ao, method, size, head_weight=ob.head_weights()[0])
    assert torch.equal(et.labels.cpu(), eo.labels.cpu())
    assert not et.degenerate.any()
    diff = float((et.maps - eo.maps.to(et.maps.device)).abs().max())
    tol = TOL_ILL_CONDITIONED.get((tb.meta.backbone, method), TOL)
    assert diff <= tol, f"{method}: max |torch - onnxruntime| = {diff:.2e} > {tol:.0e}"
    if et.n_components is not None:
        assert torch.equal(et.n_components.cpu(), eo.n_components.cpu())


@pytest.mark.parametrize("method", ["haycam+", "gradcam"])
def test_core_explain_takes_either_backend(pair, forwards, method):
    """core.explain duck-types a backend (forward + head_weights): same result as from its forward."""
    _, _, x = forwards
    for backend, (logits, acts) in zip(pair, forwards[:2]):
        e = explain(backend, x.to(backend.device), method)
        ref = explain_features(logits, acts, method, tuple(x.shape[2:]), head_weight=backend.head_weights()[0])
        torch.testing.assert_close(e.maps, ref.maps, atol=1e-6, rtol=0)
        assert [[bx.xyxy for bx in bs] for bs in e.boxes] == [[bx.xyxy for bx in bs] for bs in ref.boxes]


@pytest.mark.skipif(DEVICE.type != "cuda", reason="MASKSTREAM_TEST_DEVICE is not cuda")
def test_cuda_provider_is_really_used_when_testing_on_cuda(pair):
    """On a GPU run the parity above must have compared against the CUDA provider, not a CPU fallback."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} here has no CUDA provider (install onnxruntime-gpu)")
    _, ob = pair
    assert ob.providers[0] == "CUDAExecutionProvider", ob.providers
    assert ob.device.type == "cuda" and ob.io_binding


def _cuda_loads() -> bool:
    import onnxruntime as ort

    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    model = calibrated_model("resnet18", meta=ModelMeta("resnet18", ("a", "b"), input_size=64))
    return model, export_onnx(model, tmp_path_factory.mktemp("small") / "s.onnx")


@pytest.mark.skipif(_cuda_loads(), reason="the CUDA provider loads here; nothing to fall back from")
def test_unavailable_cuda_provider_falls_back_to_cpu_with_warning(small_onnx):
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider is not available.*falling back to CPUExecutionProvider"):
        ob = create_backend("onnxruntime", device="cuda", onnx_path=str(small_onnx[1]))
    assert ob.device.type == "cpu" and ob.providers == ("CPUExecutionProvider",)
    logits, _ = ob.forward(images(1, size=64))
    assert logits.device.type == "cpu"


def test_unavailable_tensorrt_provider_warns(small_onnx):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ob = create_backend("onnxruntime", device="cpu", onnx_path=str(small_onnx[1]),
                            providers=["TensorrtExecutionProvider"])
    if "TensorrtExecutionProvider" in ob.providers:
        pytest.skip("TensorRT loads here")
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("TensorrtExecutionProvider" in m and "CPUExecutionProvider" in m for m in msgs), msgs
    assert ob.providers[-1] == "CPUExecutionProvider" and ob.name.startswith("onnxruntime[")


def test_onnxruntime_exports_a_checkpoint_once_into_the_cache(tmp_path, small_onnx):
    from core.checkpoint import save_checkpoint

    model, _ = small_onnx
    ck = save_checkpoint(tmp_path / "m.pt", model, model.meta)
    b1 = create_backend("onnxruntime", checkpoint=str(ck), device="cpu", cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(files) == 1 and b1.onnx_path == files[0]
    stamp = files[0].stat().st_mtime_ns
    b2 = create_backend("onnxruntime", checkpoint=str(ck), device="cpu", cache_dir=tmp_path / "cache")
    assert b2.onnx_path == files[0] and files[0].stat().st_mtime_ns == stamp
    assert b2.meta == model.meta
    x = images(2, size=64)
    with torch.no_grad():
        torch.testing.assert_close(b2.forward(x)[0], model(x)[0], atol=1e-4, rtol=0)


def test_torch_fp16_on_cpu_warns_and_stays_float32(small_onnx):
    with pytest.warns(RuntimeWarning, match="fp16 needs a CUDA device"):
        tb = create_backend("torch", device="cpu", fp16=True, model=small_onnx[0])
    assert tb.dtype == torch.float32 and tb.name == "torch[cpu]"


@pytest.mark.parametrize("call, exc, match", [
    (lambda: create_backend("tensorflow"), ValueError, "backend kind must be one of"),
    (lambda: create_backend("torch", threads=2), ValueError, "unknown option 'threads' for the torch backend"),
    (lambda: create_backend("onnxruntime", device="tpu"), ValueError, "device must be one of"),
    (lambda: create_backend("onnxruntime", onnx_path="/nonexistent/m.onnx"), FileNotFoundError, "/nonexistent/m.onnx"),
])
def test_bad_arguments_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_io_binding_and_plain_run_agree(small_onnx):
    """The IO-binding path (torch tensors bound in place; the CUDA path on a GPU) equals session.run."""
    bound = create_backend("onnxruntime", device=DEVICE, fp16=False, onnx_path=str(small_onnx[1]), **ORT_OPTS)
    plain = create_backend("onnxruntime", device="cpu", onnx_path=str(small_onnx[1]), io_binding=False)
    assert bound.io_binding and not plain.io_binding
    x = images(3, size=64)
    for a, b in zip(bound.forward(x.to(bound.device)), plain.forward(x)):
        torch.testing.assert_close(a.cpu(), b, atol=1e-5 * max(1.0, float(b.abs().max())), rtol=0)
    empty = bound.forward(x[:0].to(bound.device))
    assert empty[0].shape == (0, 2) and empty[1].shape[0] == 0
    with pytest.raises(ValueError, match="no output 'map_gradcam'"):
        bound.run(x, ["map_gradcam"])


def test_bad_ort_session_option_is_named(small_onnx):
    with pytest.raises(ValueError, match="graph_opt must be one of"):
        create_backend("onnxruntime", device="cpu", onnx_path=str(small_onnx[1]), graph_opt="max")
