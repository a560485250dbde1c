"""Classifier wrapper: one forward gives logits and the last conv activations.

The CAM methods need the activations A of the last convolutional layer and, for
the gradient methods, the head weights. For torchvision's ResNet and
MobileNetV2 (global average pooling followed by a linear layer) both come from a
single forward pass: ``forward_features`` then ``forward_head`` (the timm split).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models as tvm

BACKBONES: tuple[str, ...] = ("resnet18", "mobilenet_v2")
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    """What a checkpoint says about its model.

    Attributes:
        backbone: one of ``BACKBONES``.
        class_names: names of the K output classes, in logit order.
        input_size: square input side in pixels the model was trained at.
        mean: per-channel RGB mean used for normalisation (inputs in [0, 1]).
        std: per-channel RGB std used for normalisation.
    """

    backbone: str
    class_names: tuple[str, ...]
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {list(BACKBONES)}, but got {self.backbone!r}")
        if len(self.class_names) < 2:
            raise ValueError(f"class_names needs at least 2 names, but got {list(self.class_names)}")
        if self.input_size < 32:
            raise ValueError(f"input_size must be >= 32, but got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have 3 values (RGB)")

    def to_dict(self) -> dict:
        """Plain-Python form, safe for ``torch.load(weights_only=True)`` and JSON."""
        return {
            "backbone": self.backbone,
            "class_names": list(self.class_names),
            "input_size": int(self.input_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelMeta":
        """Inverse of :meth:`to_dict`; raises ``KeyError``/``ValueError`` on bad content."""
        return cls(
            backbone=str(d["backbone"]),
            class_names=tuple(str(c) for c in d["class_names"]),
            input_size=int(d.get("input_size", 224)),
            mean=tuple(float(v) for v in d.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            extra=dict(d.get("extra", {})),
        )


def build_torchvision(backbone: str, num_classes: int) -> nn.Module:
    """A randomly initialised torchvision classifier with ``num_classes`` outputs.

    The returned module is exactly ``torchvision.models.<backbone>(num_classes=K)``,
    so state dicts move between it and plain torchvision with ``strict=True``.
    """
    if backbone == "resnet18":
        return tvm.resnet18(num_classes=num_classes)
    if backbone == "mobilenet_v2":
        return tvm.mobilenet_v2(num_classes=num_classes)
    raise ValueError(f"backbone must be one of {list(BACKBONES)}, but got {backbone!r}")


class CamModel(nn.Module):
    """A GAP + linear classifier that returns ``(logits, activations)``.

    Wraps a torchvision ``ResNet`` or ``MobileNetV2`` without copying it: the
    wrapped module is ``self.net`` and its ``state_dict`` is torchvision's own.

    Args:
        net: a ``torchvision.models.ResNet`` or ``torchvision.models.MobileNetV2``.
        meta: optional metadata (class names, input size, normalisation).
    """

    def __init__(self, net: nn.Module, meta: ModelMeta | None = None) -> None:
        super().__init__()
        if isinstance(net, tvm.ResNet):
            self.kind = "resnet"
        elif isinstance(net, tvm.MobileNetV2):
            self.kind = "mobilenet_v2"
        else:
            raise TypeError(
                "CamModel wraps torchvision ResNet or MobileNetV2 models, but got "
                f"{type(net).__name__}; use core.hooks.HookedModel for other models"
            )
        self.net = net
        self.meta = meta

    def forward_features(self, x: Tensor) -> Tensor:
        """Last conv activations A, shape (B, C, h, w) for input (B, 3, H, W)."""
        n = self.net
        if self.kind == "resnet":
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            return n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return n.features(x)

    def forward_head(self, acts: Tensor) -> Tensor:
        """Logits (B, K) from activations (B, C, h, w): global average pool, then the head."""
        pooled = torch.flatten(F.adaptive_avg_pool2d(acts, 1), 1)
        if self.kind == "resnet":
            return self.net.fc(pooled)
        return self.net.classifier(pooled)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (B, K), activations (B, C, h, w))`` from one pass."""
        acts = self.forward_features(x)
        return self.forward_head(acts), acts

    def head_weights(self) -> tuple[Tensor, Tensor]:
        """The linear head as ``(W (K, C), b (K,))``."""
        lin = self.net.fc if self.kind == "resnet" else self.net.classifier[-1]
        return lin.weight, lin.bias


def as_cam_model(model: nn.Module) -> CamModel:
    """Return ``model`` itself if it is a ``CamModel``, else wrap it (no copy)."""
    return model if isinstance(model, CamModel) else CamModel(model)
