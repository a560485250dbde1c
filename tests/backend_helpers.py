"""Helpers for the export/backend tests: device from MASKSTREAM_TEST_DEVICE, calibrated seeded models."""
from __future__ import annotations

import os

import torch

from core.model import CamModel, ModelMeta, build_torchvision

TEST_DEVICE_ENV = "MASKSTREAM_TEST_DEVICE"


def device_under_test() -> torch.device:
    """``$MASKSTREAM_TEST_DEVICE`` (default cpu). Set it to ``cuda`` on a GPU machine."""
    return torch.device(os.environ.get(TEST_DEVICE_ENV, "cpu"))


def strict_fp32() -> None:
    """No TF32 in torch on CUDA, so float32 parity can be checked to 1e-4."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def calibrated_model(backbone: str, seed: int = 0, meta: ModelMeta | None = None) -> CamModel:
    """A seeded random model whose BatchNorm statistics were estimated on random images.

    Plain random init leaves MobileNetV2's last activations at ~1e-8 (BatchNorm running
    stats are the identity), which would make absolute-tolerance checks vacuous; two
    forwards in train mode with cumulative averaging give O(1) activations, like a trained net.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = build_torchvision(backbone, 2)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(8, 3, 64, 64, generator=g))
    return CamModel(net.eval(), meta).eval()


def images(b: int, size: int = 224, seed: int = 1) -> torch.Tensor:
    """(b, 3, size, size) smooth random images (blobs), roughly normalised."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randn(b, 3, size // 16, size // 16, generator=g)
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
