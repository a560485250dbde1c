"""Face crops: cut from facemask_voc boxes, or read from the facemask_crops folder.

VOC face crops are square, centred on the face box, with side ``max(w, h) * (1 + 2 * margin)``
(like the output of a face detector with some margin); parts outside the image are filled by
edge replication. They may show parts of neighbouring faces: that is what a detector crop
shows too.

facemask_crops layout: ``<root>/manifest.json`` is a JSON list of
``{"file": "with_mask/wm_00001.jpg", "label": "with_mask" | "without_mask", "dup_group": int,
"sub_source": str, "wh": [w, h], ...}``; files with the same ``dup_group`` are near-duplicates
and stay on one side of every split (:func:`crops_split`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from core.data._geometry import box_to_window, cut_window
from core.data.errors import DataError, read_json_list
from core.data.splits import DEFAULT_FRACTIONS, group_split
from core.data.voc import VocImage, load_image

CROP_LABELS: tuple[str, ...] = ("with_mask", "without_mask")
CROPS_SPLIT_SEED = 0


@dataclass(frozen=True)
class FaceCrop:
    """A square crop around one face.

    Attributes:
        image: (S, S, 3) uint8 BGR.
        box: the face box in crop pixels (x1, y1, x2, y2).
        label: the face's label.
        source_file: ``VocImage.file`` it was cut from.
    """

    image: np.ndarray
    box: tuple[float, float, float, float]
    label: str
    source_file: str

    def __post_init__(self) -> None:
        im = self.image
        if im.ndim != 3 or im.shape[2] != 3 or im.shape[0] != im.shape[1] or im.dtype != np.uint8:
            raise ValueError(f"image must be (S, S, 3) uint8, but got {im.shape} {im.dtype}")


def voc_face_crops(
    image: np.ndarray,
    vimg: VocImage,
    size: int = 224,
    margin: float = 0.2,
    labels: Sequence[str] = CROP_LABELS,
    min_face_px: float = 0.0,
) -> list[FaceCrop]:
    """Square crops around each face of ``vimg`` with a usable label, in box order.

    Args:
        image: (H, W, 3) uint8 BGR, the decoded ``vimg``.
        size: output side.
        margin: extra context on each side, as a fraction of the face box's longer side.
        min_face_px: skip faces whose shorter side is below this.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, but got {margin}")
    out = []
    for b in vimg.boxes:
        if b.label not in labels:
            continue
        x1, y1, x2, y2 = b.xyxy
        if min(x2 - x1, y2 - y1) < min_face_px:
            continue
        side = max(1, int(round(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin))))
        x0 = int(math.floor((x1 + x2) / 2.0 - side / 2.0))
        y0 = int(math.floor((y1 + y2) / 2.0 - side / 2.0))
        out.append(FaceCrop(cut_window(image, x0, y0, side, size), box_to_window(b.xyxy, x0, y0, side, size),
                            b.label, vimg.file))
    return out


def build_voc_face_crops(root: str | Path, images: Sequence[VocImage], size: int = 224, **kwargs) -> list[FaceCrop]:
    """:func:`voc_face_crops` over many images (deterministic; no randomness)."""
    labels = kwargs.get("labels", CROP_LABELS)
    out: list[FaceCrop] = []
    for vimg in images:
        if any(b.label in labels for b in vimg.boxes):
            out.extend(voc_face_crops(load_image(root, vimg), vimg, size, **kwargs))
    return out


@dataclass(frozen=True)
class CropItem:
    """One image of the facemask_crops folder.

    Attributes:
        file: path relative to the data root.
        label: ``with_mask`` or ``without_mask``.
        dup_group: near-duplicate group id.
        sub_source: upstream origin (``"upstream numeric filename"`` = mostly tight face crops;
            ``"upstream named file ..."`` = web images, often wider shots).
    """

    file: str
    label: str
    dup_group: int
    sub_source: str = ""

    def __post_init__(self) -> None:
        if self.label not in CROP_LABELS:
            raise ValueError(f"label must be one of {list(CROP_LABELS)}, but got {self.label!r}")
        if not self.file:
            raise ValueError("file must be a non-empty relative path")


def read_crops_manifest(root: str | Path) -> list[CropItem]:
    """Read ``<root>/manifest.json`` of facemask_crops.

    Raises:
        DataError: naming the file and entry when it is missing or malformed.
    """
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file (is {root} a facemask_crops data root?)")
    raw = read_json_list(path)
    items = []
    for i, e in enumerate(raw):
        try:
            items.append(CropItem(str(e["file"]), str(e["label"]), int(e["dup_group"]), str(e.get("sub_source", ""))))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path}: entry {i}: {type(exc).__name__}: {exc}") from None
    return items


def crops_split(
    items: Sequence[CropItem],
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = CROPS_SPLIT_SEED,
) -> dict[str, list[CropItem]]:
    """Group-aware split of facemask_crops by ``dup_group`` (order of ``items`` does not matter)."""
    its = sorted(items, key=lambda it: it.file)
    parts = group_split([it.dup_group for it in its], fractions, seed)
    return {k: [its[i] for i in idx] for k, idx in parts.items()}


def load_crop(root: str | Path, item: CropItem) -> np.ndarray:
    """Decode one facemask_crops image as (H, W, 3) uint8 BGR (error names the file)."""
    path = Path(root) / item.file
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: missing or not a decodable image")
    return img
