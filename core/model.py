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
OUTPUT_STRIDES: tuple[int, ...] = (32, 16)  # last conv layer: 7×7 or 14×14 at 224 px
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
        output_stride: input pixels per cell of the last conv layer: 32 (torchvision's
            network) or 16 (last stage at stride 1 with dilation 2, see
            :func:`dilate_last_stage`). Files written before this field load as 32.
    """

    backbone: str
    class_names: tuple[str, ...]
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output_stride: int = 32
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
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {list(OUTPUT_STRIDES)}, but got {self.output_stride!r}")

    def to_dict(self) -> dict:
        """Plain-Python form, safe for ``torch.load(weights_only=True)`` and JSON."""
        return {
            "backbone": self.backbone,
            "class_names": list(self.class_names),
            "input_size": int(self.input_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "output_stride": int(self.output_stride),
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
            output_stride=int(d.get("output_stride", 32)),
            extra=dict(d.get("extra", {})),
        )


def build_torchvision(backbone: str, num_classes: int, output_stride: int = 32) -> nn.Module:
    """A randomly initialised torchvision classifier with ``num_classes`` outputs.

    The returned module is ``torchvision.models.<backbone>(num_classes=K)`` (with its last
    stage dilated when ``output_stride`` is 16), so state dicts move between it and plain
    torchvision with ``strict=True``: dilation changes no parameter.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {list(OUTPUT_STRIDES)}, but got {output_stride!r}")
    if backbone == "resnet18":
        net = tvm.resnet18(num_classes=num_classes)
    elif backbone == "mobilenet_v2":
        net = tvm.mobilenet_v2(num_classes=num_classes)
    else:
        raise ValueError(f"backbone must be one of {list(BACKBONES)}, but got {backbone!r}")
    return dilate_last_stage(net) if output_stride == 16 else net


def _last_stride2_conv(net: nn.Module) -> nn.Conv2d:
    """The stride-2 3×3 conv that starts the last stage (stride 1 once dilated)."""
    if isinstance(net, tvm.ResNet):
        return net.layer4[0].conv1
    if isinstance(net, tvm.MobileNetV2):
        return net.features[14].conv[1][0]  # the depthwise conv of the first 160-channel block
    raise TypeError(f"expected a torchvision ResNet or MobileNetV2, but got {type(net).__name__}")


def output_stride(net: nn.Module) -> int:
    """32 for torchvision's ResNet / MobileNetV2, 16 after :func:`dilate_last_stage`."""
    return 16 if _last_stride2_conv(net).stride == (1, 1) else 32


def dilate_last_stage(net: nn.Module) -> nn.Module:
    """Turn output stride 32 into 16, in place (the DeepLab trick); returns ``net``.

    The last stage's first 3×3 conv (MobileNetV2: the depthwise conv of ``features[14]``;
    ResNet: ``layer4[0].conv1`` and its 1×1 downsample) gets stride 1, and every later 3×3
    conv of that stage gets dilation 2 and padding 2, so each unit keeps its receptive
    field while the last layer becomes 14×14 at 224 px. No parameter changes shape.

    Raises:
        ValueError: if the last stage is already dilated.
    """
    if output_stride(net) == 16:
        raise ValueError("the network's last stage is already dilated (output stride 16)")
    if isinstance(net, tvm.MobileNetV2):
        for i, blk in enumerate(net.features[14:], start=14):
            for conv in blk.modules():
                if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                    if i == 14:
                        conv.stride = (1, 1)
                    else:
                        conv.dilation, conv.padding = (2, 2), (2, 2)
            if i == 14:
                blk.stride = 1
        return net
    for bi, blk in enumerate(net.layer4):
        for name, conv in blk.named_modules():
            if not isinstance(conv, nn.Conv2d):
                continue
            if bi == 0 and conv.stride == (2, 2):
                conv.stride = (1, 1)
            elif conv.kernel_size == (3, 3) and not (bi == 0 and name == "conv1"):
                conv.dilation, conv.padding = (2, 2), (2, 2)
    return net


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
        if meta is not None and output_stride(net) != meta.output_stride:
            raise ValueError(f"the network has output stride {output_stride(net)} but its metadata says "
                             f"{meta.output_stride}")
        self.net = net
        self.meta = meta

    @property
    def output_stride(self) -> int:
        """Input pixels per cell of the last conv layer (32, or 16 when dilated)."""
        return output_stride(self.net)

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
