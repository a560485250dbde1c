"""Maps against references: pytorch-grad-cam for the four baselines, scikit-learn PCA for HayCAM+."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import core
from tests.conftest import TEST_DEVICE, seeded_model

pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

REFERENCE = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM, "eigencam": EigenCAM}


def target_layer(model):
    return model.net.layer4[-1] if model.kind == "resnet" else model.net.features[-1]


@pytest.fixture(scope="module", params=["resnet18", "mobilenet_v2"])
def model_and_batch(request):
    model = seeded_model(request.param, seed=1).to(TEST_DEVICE)
    torch.manual_seed(2)
    x = torch.randn(3, 3, 224, 224, device=TEST_DEVICE)
    return model, x


@pytest.mark.parametrize("method", list(REFERENCE))
def test_maps_match_pytorch_grad_cam(model_and_batch, method):
    model, x = model_and_batch
    ours = core.explain(model, x, method)
    targets = [ClassifierOutputTarget(int(t)) for t in ours.target]
    with REFERENCE[method](model=model.net, target_layers=[target_layer(model)]) as cam:
        ref = cam(input_tensor=x, targets=targets)
    got = ours.maps.cpu().numpy()
    if method == "eigencam":
        # Same map up to the component's sign, which pytorch-grad-cam leaves to the solver.
        # Negating the activations flips the component (the convention follows the channel sum).
        with torch.no_grad():
            acts = model(x)[1]
        flipped = core.explain_features(ours.logits, -acts, "eigencam", (224, 224)).maps.cpu().numpy()
        for i in range(got.shape[0]):
            err = min(np.abs(got[i] - ref[i]).max(), np.abs(flipped[i] - ref[i]).max())
            assert err < 1e-4, f"image {i}: eigencam differs from the reference by {err}"
    else:
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert not ours.degenerate.any()


def sklearn_haycam_plus(acts: np.ndarray, fraction: float) -> tuple[np.ndarray, int]:
    """Independent HayCAM+ for one image: sklearn PCA(fraction) on (positions × channels)."""
    from sklearn.decomposition import PCA

    c, h, w = acts.shape
    x = acts.reshape(c, h * w).T.astype(np.float64)
    pca = PCA(n_components=fraction, svd_solver="full").fit(x)
    proj = pca.transform(x)  # centred X @ components.T, (N, n)
    signs = np.where(pca.components_.sum(axis=1) < 0, -1.0, 1.0)  # loadings sum >= 0
    return (proj * signs).sum(axis=1).reshape(h, w), pca.n_components_


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.99])
def test_haycam_plus_matches_sklearn_pca(model_and_batch, fraction):
    model, x = model_and_batch
    ours = core.explain(model, x, "haycam+", options={"variance_fraction": fraction})
    acts = model(x)[1].detach().double().cpu().numpy()
    for i in range(x.shape[0]):
        ref, n_ref = sklearn_haycam_plus(acts[i], fraction)
        assert int(ours.n_components[i]) == n_ref
        raw = ours.raw_maps[i].cpu().double().numpy()
        scale = np.abs(ref).max()
        assert np.abs(raw - ref).max() / scale < 2e-3, "raw HayCAM+ map differs from sklearn PCA"


def test_explained_variance_count_matches_cumulative_ratio(model_and_batch):
    model, x = model_and_batch
    acts = model(x)[1].detach().double().cpu().numpy()
    ours = core.explain(model, x, "haycam+")
    for i in range(x.shape[0]):
        c, h, w = acts[i].shape
        xc = acts[i].reshape(c, -1).T
        xc = xc - xc.mean(0)
        s = np.linalg.svd(xc, compute_uv=False) ** 2
        cum = np.cumsum(s / s.sum())
        assert int(ours.n_components[i]) == int(np.argmax(cum > 0.9)) + 1
