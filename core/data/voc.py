"""Reader for the facemask_voc detection set.

Format of ``<root>/annotations.json`` (a JSON list, one entry per image)::

    [{"file": "images/<name>.jpg",            # path relative to <root>
      "width": W, "height": H,                 # image size in pixels (ints > 0)
      "boxes": [{"label": "with_mask" | "without_mask" | "mask_weared_incorrect",
                 "xyxy": [x1, y1, x2, y2]}]}]  # pixel corners, 0 <= x1 < x2 <= W, 0 <= y1 < y2 <= H

``<root>/duplicate_groups.json`` (optional) is a JSON list of groups, each a list of file names
(bare names like ``"maksssksksss61.jpg"`` or root-relative paths like ``"images/maksssksksss61.jpg"``)
that are near-duplicates and must stay on one side of every split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.data.errors import DataError, read_json_list

VOC_LABELS: tuple[str, ...] = ("with_mask", "without_mask", "mask_weared_incorrect")


@dataclass(frozen=True)
class VocBox:
    """One annotated face.

    Attributes:
        label: one of ``VOC_LABELS``.
        xyxy: (x1, y1, x2, y2) in image pixels, x1 < x2 and y1 < y2.
    """

    label: str
    xyxy: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        if self.label not in VOC_LABELS:
            raise ValueError(f"label must be one of {list(VOC_LABELS)}, but got {self.label!r}")
        if len(self.xyxy) != 4:
            raise ValueError(f"xyxy must have 4 values, but got {len(self.xyxy)}")
        x1, y1, x2, y2 = self.xyxy
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"xyxy must satisfy x1 < x2 and y1 < y2, but got {tuple(self.xyxy)}")

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        x1, y1, x2, y2 = self.xyxy
        return (x2 - x1) * (y2 - y1)


@dataclass(frozen=True)
class VocImage:
    """One image of the set and its boxes.

    Attributes:
        file: path relative to the data root, e.g. ``"images/maksssksksss0.jpg"``.
        width: image width in pixels.
        height: image height in pixels.
        boxes: the annotated faces (may be empty).
    """

    file: str
    width: int
    height: int
    boxes: tuple[VocBox, ...]

    def __post_init__(self) -> None:
        if not self.file:
            raise ValueError("file must be a non-empty relative path")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be > 0, but got {self.width}x{self.height}")
        for b in self.boxes:
            x1, y1, x2, y2 = b.xyxy
            if x1 < 0 or y1 < 0 or x2 > self.width or y2 > self.height:
                raise ValueError(f"box {tuple(b.xyxy)} lies outside the {self.width}x{self.height} image")


def _parse_entry(i: int, e: object, path: Path) -> VocImage:
    where = f"{path}: entry {i}"
    if not isinstance(e, dict):
        raise DataError(f"{where}: expected an object, but got {type(e).__name__}")
    try:
        where = f"{path}: entry {i} ({e['file']!r})"
        boxes = []
        for j, b in enumerate(e["boxes"]):
            try:
                boxes.append(VocBox(str(b["label"]), tuple(float(v) for v in b["xyxy"])))  # type: ignore[arg-type]
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{where}: box {j}: {type(exc).__name__}: {exc}") from None
        return VocImage(str(e["file"]), int(e["width"]), int(e["height"]), tuple(boxes))
    except KeyError as exc:
        raise DataError(f"{where}: missing key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {exc}") from None


def read_voc(root: str | Path) -> list[VocImage]:
    """Read ``<root>/annotations.json`` (format in the module docstring).

    Returns:
        One :class:`VocImage` per entry, in file order.

    Raises:
        DataError: naming the file (and the entry) when it is missing or malformed.
    """
    path = Path(root) / "annotations.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file (is {root} a facemask_voc data root?)")
    raw = read_json_list(path, "images")
    images = [_parse_entry(i, e, path) for i, e in enumerate(raw)]
    seen: set[str] = set()
    for im in images:
        if im.file in seen:
            raise DataError(f"{path}: file {im.file!r} appears twice")
        seen.add(im.file)
    return images


def read_duplicate_groups(root: str | Path) -> dict[str, int]:
    """Map every annotated file (as in ``VocImage.file``) to a duplicate-group id.

    Files listed together in ``<root>/duplicate_groups.json`` share an id (groups that share a
    file are merged); every other file gets an id of its own. Without that file all files are
    singletons. Ids are ints, deterministic for given files.

    Raises:
        DataError: a group names a file that is not in ``annotations.json``, or bad JSON.
    """
    root = Path(root)
    files = sorted(im.file for im in read_voc(root))
    by_name: dict[str, str] = {}
    for f in files:
        by_name.setdefault(Path(f).name, f)
    parent = {f: f for f in files}

    def find(f: str) -> str:
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    path = root / "duplicate_groups.json"
    if path.is_file():
        raw = read_json_list(path, "groups")
        for gi, group in enumerate(raw):
            if not isinstance(group, list):
                raise DataError(f"{path}: group {gi}: expected a list of file names")
            members = []
            for name in group:
                f = name if name in parent else by_name.get(str(name))
                if f is None:
                    raise DataError(f"{path}: group {gi}: {name!r} is not in annotations.json")
                members.append(f)
            for f in members[1:]:
                parent[find(f)] = find(members[0])
    ids: dict[str, int] = {}
    out: dict[str, int] = {}
    for f in files:  # sorted, so ids are deterministic
        out[f] = ids.setdefault(find(f), len(ids))
    return out


def load_image(root: str | Path, vimg: VocImage) -> np.ndarray:
    """Decode ``root / vimg.file`` as (H, W, 3) uint8 BGR.

    Raises:
        DataError: naming the file when it is missing, not decodable, or not ``width`` x ``height``.
    """
    path = Path(root) / vimg.file
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: missing or not a decodable image")
    if img.shape[:2] != (vimg.height, vimg.width):
        raise DataError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, but annotations.json says "
                        f"{vimg.width}x{vimg.height}")
    return img
