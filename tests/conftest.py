"""Shared fixtures: tiny seeded models and generated data. No downloads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# MASKSTREAM_TEST_DEVICE=cuda runs the device-aware tests (maps, parity) on the GPU.
TEST_DEVICE = os.environ.get("MASKSTREAM_TEST_DEVICE", "cpu")
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny convs run faster without oversubscribing the shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip the test cleanly when it is absent."""
    d = SHARED / "data"
    if not d.is_dir():
        pytest.skip("../shared/data is not present")
    return d


def seeded_model(backbone: str, num_classes: int = 2, seed: int = 0):
    """A randomly initialised torchvision model wrapped as a CamModel, in eval mode."""
    from core.model import CamModel, build_torchvision

    torch.manual_seed(seed)
    net = build_torchvision(backbone, num_classes).eval()
    return CamModel(net).eval()


@pytest.fixture(scope="session")
def resnet_model():
    return seeded_model("resnet18")


@pytest.fixture(scope="session")
def mobilenet_model():
    return seeded_model("mobilenet_v2")
