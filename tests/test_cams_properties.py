"""Properties of the map methods: sign convention, gradients, degenerate input, batching, errors."""
from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

import core
from core.cams import METHODS, CamInputs
from core.cams.haycam import haycam_plus
from core.cams.pca import batched_pca, components_for_fraction, fix_signs, flatten_positions
from core.gradients import analytic_grads, autograd_grads
from tests.conftest import TEST_DEVICE, seeded_model


def blob_acts(b: int = 2, c: int = 64, seed: int = 0) -> torch.Tensor:
    """Activations that respond strongly on a 2x2 blob at rows 2-3, cols 4-5 of a 7x7 grid."""
    g = torch.Generator().manual_seed(seed)
    acts = 0.1 * torch.rand(b, c, 7, 7, generator=g)
    acts[:, : c // 2, 2:4, 4:6] += 3.0 + torch.rand(b, c // 2, 2, 2, generator=g)
    return acts.to(TEST_DEVICE)


def test_flipping_component_signs_changes_nothing():
    acts = torch.randn(4, 32, 7, 7, device=TEST_DEVICE).relu()
    x = flatten_positions(acts)
    pca = batched_pca(acts)
    n = components_for_fraction(pca.ratio, 0.9)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        flips = (torch.randint(0, 2, pca.proj.shape[::2], generator=g) * 2 - 1).to(pca.proj)  # (B, R)
        refixed = fix_signs(pca.proj * flips.unsqueeze(1), x)
        torch.testing.assert_close(refixed, pca.proj)
    keep = torch.arange(pca.proj.shape[2], device=n.device)[None] < n[:, None]
    summed = (pca.proj * keep[:, None]).sum(2).reshape(4, 7, 7)
    torch.testing.assert_close(summed, haycam_plus(CamInputs(acts)).raw)


@pytest.mark.parametrize("method", ["haycam+", "eigencam"])
def test_pca_maps_point_at_the_response(method):
    """The sign convention makes the peak land on the blob, and so would any solver sign."""
    acts = blob_acts()
    raw = METHODS[method].fn(CamInputs(acts)).raw
    for i in range(acts.shape[0]):
        r, c = divmod(int(raw[i].argmax()), 7)
        assert 2 <= r <= 3 and 4 <= c <= 5, f"peak at ({r},{c}), not on the blob"
        assert raw[i, 2:4, 4:6].mean() > raw[i].mean()


def test_haycam_plus_component_count_is_per_image():
    """A rank-1 image needs 1 component, a noisy one many: one batch, masked, same as alone."""
    g = torch.Generator().manual_seed(0)
    rank1 = torch.outer(torch.rand(16, generator=g), torch.rand(49, generator=g)).reshape(1, 16, 7, 7)
    noisy = torch.rand(1, 16, 7, 7, generator=g)
    acts = torch.cat([rank1, noisy]).to(TEST_DEVICE)
    both = haycam_plus(CamInputs(acts))
    assert int(both.n_components[0]) == 1 and int(both.n_components[1]) > 3
    for i in range(2):
        alone = haycam_plus(CamInputs(acts[i : i + 1]))
        torch.testing.assert_close(both.raw[i], alone.raw[0], atol=1e-4, rtol=1e-3)
        assert int(alone.n_components[0]) == int(both.n_components[i])


def test_components_for_fraction_hand_case():
    ratio = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.95, 0.05, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert components_for_fraction(ratio, 0.9).tolist() == [3, 1, 1]
    assert components_for_fraction(ratio, 0.8).tolist() == [3, 1, 1]  # 0.8 is reached, not exceeded, at 2
    with pytest.raises(ValueError, match="variance fraction"):
        components_for_fraction(ratio, 0.0)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_analytic_and_autograd_gradients_agree(backbone):
    model = seeded_model(backbone, seed=3).to(TEST_DEVICE)
    x = torch.randn(2, 3, 224, 224, device=TEST_DEVICE)
    with torch.no_grad():
        logits, acts = model(x)
    target = torch.tensor([0, 1], device=TEST_DEVICE)
    ga = analytic_grads(model.head_weights()[0], target, acts.shape)
    gb = autograd_grads(model.forward_head, acts, target)
    torch.testing.assert_close(ga, gb, atol=1e-7, rtol=1e-5)
    for method in ("gradcam", "gradcam++", "layercam", "haycam"):
        a = core.explain(model, x, method, [0, 1], grad_mode="analytic")
        b = core.explain(model, x, method, [0, 1], grad_mode="autograd")
        torch.testing.assert_close(a.maps, b.maps, atol=1e-5, rtol=0)


def test_any_model_with_a_layer_uses_autograd_and_matches():
    torch.manual_seed(4)
    net = resnet18(num_classes=2).eval().to(TEST_DEVICE)
    x = torch.randn(2, 3, 224, 224, device=TEST_DEVICE)
    for method in ("gradcam", "gradcam++", "haycam+"):
        hooked = core.explain(net, x, method, layer=net.layer4)
        plain = core.explain(net, x, method)  # torchvision ResNet: analytic path
        torch.testing.assert_close(hooked.maps, plain.maps, atol=1e-5, rtol=0)
    assert not net.layer4._forward_hooks, "the hook must be removed after the call"


def test_hook_removed_after_exception():
    net = resnet18(num_classes=2).eval()
    with pytest.raises(ValueError):
        core.explain(net, torch.randn(1, 3, 224, 224), "gradcam", layer=net.fc)  # fc output is not 4-D
    assert not net.fc._forward_hooks


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("kind", ["zero", "constant", "nan", "inf"])
def test_degenerate_activations_give_zero_map_and_flag(method, kind):
    acts = blob_acts(b=3)
    head = torch.randn(2, 64, generator=torch.Generator().manual_seed(0)).to(acts.device)
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], device=acts.device)
    good = core.explain_features(logits, acts, method, (28, 28), head_weight=head).maps[1]
    bad = acts.clone()
    bad[0] = {"zero": 0.0, "constant": 1.5, "nan": float("nan"), "inf": float("inf")}[kind]
    if kind in ("nan", "inf"):
        bad[2, 3, 1, 1] = float(kind)  # one bad value is enough
    res = core.explain_features(logits, bad, method, (28, 28), head_weight=head)
    expected_bad = [True, False, kind in ("nan", "inf")]
    assert res.degenerate.tolist() == expected_bad
    for i, is_bad in enumerate(expected_bad):
        assert torch.isfinite(res.maps[i]).all() and torch.isfinite(res.raw_maps[i]).all()
        if is_bad:
            assert res.maps[i].abs().max() == 0 and res.boxes[i] == []
    torch.testing.assert_close(res.maps[1], good)  # a bad neighbour changes nothing


def test_sanitize_flags_exactly_the_images_holding_nan_or_inf():
    from core.postprocess import sanitize

    acts = torch.ones(6, 8, 7, 7)
    acts[1, 0, 0, 0] = float("nan")
    acts[2, 5, 6, 6] = float("-inf")
    acts[3, 0, 0, 0], acts[3, 1, 0, 0] = float("inf"), float("-inf")  # a float32 sum would be nan too
    acts[4] = 3.0e38  # finite everywhere: a float32 sum overflows, the check must not call it bad
    acts[5, 7, 3, 3] = -1e30
    clean, bad = sanitize(acts)
    assert bad.tolist() == [False, True, True, True, False, False]
    assert (clean[1:4] == 0).all() and torch.equal(clean[4], acts[4]) and torch.equal(clean[0], acts[0])


def test_target_validation_and_unknown_method():
    model = seeded_model("resnet18")
    x = torch.randn(2, 3, 224, 224)
    with pytest.raises(ValueError, match="one class per image"):
        core.explain(model, x, "gradcam", target=[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        core.explain(model, x, "gradcam", target=[0, 5])
    with pytest.raises(ValueError, match="valid names: gradcam, gradcam\\+\\+, layercam, eigencam, haycam, haycam\\+"):
        core.explain(model, x, "nope")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        core.explain(model, torch.randn(3, 224, 224), "gradcam")
    assert list(METHODS) == ["gradcam", "gradcam++", "layercam", "eigencam", "haycam", "haycam+"]


def test_target_selects_the_class_map():
    model = seeded_model("resnet18", seed=5)
    x = torch.randn(2, 3, 224, 224)
    pred = core.explain(model, x, "gradcam")
    other = core.explain(model, x, "gradcam", target=(1 - pred.labels).tolist())
    assert pred.target.tolist() == pred.labels.tolist()
    assert other.target.tolist() == (1 - pred.labels).tolist()
    assert not torch.allclose(pred.raw_maps, other.raw_maps)
    w = model.head_weights()[0]
    with torch.no_grad():
        acts = model(x)[1]
    hand = torch.relu(((w[other.target] / 49.0)[:, :, None, None] * acts).sum(1))  # GradCAM by hand
    torch.testing.assert_close(other.raw_maps, hand, atol=1e-6, rtol=1e-5)


def test_haycam_hand_case_equals_projected_class_weights():
    """HayCAM = (X V_n)(V_nᵀ w): with all components kept it is X w (centred GradCAM before ReLU)."""
    acts = blob_acts(b=1, c=8).double()
    w = torch.randn(2, 8, dtype=torch.float64, device=acts.device)
    grads = analytic_grads(w, torch.tensor([1], device=acts.device), acts.shape)
    full = METHODS["haycam"].fn(CamInputs(acts, grads, {"haycam_components": 8})).raw
    x = flatten_positions(acts)
    hand = (x @ (w[1] / 49.0)).reshape(1, 7, 7)
    torch.testing.assert_close(full, hand)
