"""torch vs onnxruntime on the shipped, trained MobileNetV2 and the bundled sample images (fp32, CPU)."""
from __future__ import annotations

import cv2
import pytest
import torch

import core
from core.backends import create_backend
from core.checkpoint import DEFAULT_CHECKPOINT
from core.preprocess import images_to_input
from tests.conftest import ROOT


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="the shipped checkpoint is not in this checkout")
def test_all_six_maps_agree_within_1e4_on_the_shipped_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKSTREAM_CACHE", str(tmp_path))
    tb = create_backend("torch", checkpoint=str(DEFAULT_CHECKPOINT), device="cpu")
    ob = create_backend("onnxruntime", checkpoint=str(DEFAULT_CHECKPOINT), device="cpu")
    paths = sorted((ROOT / "core/assets/samples").glob("*.png")) + sorted((ROOT / "tests/data").glob("*.png"))
    x = images_to_input([cv2.imread(str(p)) for p in paths], tb.meta)
    for method in core.METHODS:
        a, b = core.explain(tb, x, method), core.explain(ob, x, method)
        torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(b.maps, a.maps, atol=1e-4, rtol=0, msg=f"{method} maps differ")
        if a.n_components is not None:
            assert a.n_components.tolist() == b.n_components.tolist()
    assert a.labels.tolist() == b.labels.tolist()
