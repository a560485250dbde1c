"""The classifier's training/validation/test sets, built from both data folders.

Three domains, each with its own metrics:
- ``crops``: facemask_crops images (group-aware :func:`core.data.face_crops.crops_split`), resized to S x S.
- ``voc_face``: face crops cut from facemask_voc boxes (:func:`core.data.face_crops.voc_face_crops`).
- ``voc_context``: context crops from facemask_voc (:mod:`core.data.context_crops`).

The VOC images come from one side of :func:`core.data.splits.voc_split` (train/val for training
and model selection, test only for the final report). Two classes, ``with_mask`` (0) and
``without_mask`` (1). ``mask_weared_incorrect`` faces are left out of every set: they are rare
(109 boxes), visually between the two classes, and the task and its evaluation have two classes;
mapping them to either class would teach that class a wrong cue. They still block context windows.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from core.data.context_crops import image_rng, make_context_crops
from core.data.face_crops import crops_split, load_crop, read_crops_manifest, voc_face_crops
from core.data.splits import VOC_SPLIT_SEED, voc_split
from core.data.voc import load_image, read_duplicate_groups, read_voc

CLASS_NAMES: tuple[str, ...] = ("with_mask", "without_mask")
DOMAINS: tuple[str, ...] = ("crops", "voc_face", "voc_context")
SPLITS: tuple[str, ...] = ("train", "val", "test")
EVAL_CONTEXT_SEED = 0  # context crops of val/test (one window per face)
_NO_BOX = (float("nan"),) * 4  # images whose face box is not known (face crops)


@dataclass
class LabeledSet:
    """Images with labels and the domain each came from.

    Attributes:
        images: (N, S, S, 3) uint8 BGR.
        labels: (N,) int64 index into ``CLASS_NAMES``.
        domains: (N,) int64 index into ``DOMAINS``.
        files: (N,) source file of each image (relative to its data root).
        boxes: (N, 4) float32 face box (x1, y1, x2, y2) in image pixels where it is known (the
            ``voc_context`` windows), NaN rows elsewhere; None when the set was stored without them.
    """

    images: np.ndarray
    labels: np.ndarray
    domains: np.ndarray
    files: list[str] = field(default_factory=list)
    boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, S, S, 3) uint8, but got {self.images.shape} {self.images.dtype}")
        if len(self.labels) != n or len(self.domains) != n or len(self.files) != n:
            raise ValueError(f"labels/domains/files must have {n} entries, but got "
                             f"{len(self.labels)}/{len(self.domains)}/{len(self.files)}")
        if self.boxes is not None and self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must be ({n}, 4), but got {self.boxes.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: Iterable[int]) -> "LabeledSet":
        idx = np.asarray(list(idx), dtype=np.int64)
        return LabeledSet(self.images[idx], self.labels[idx], self.domains[idx], [self.files[i] for i in idx],
                          None if self.boxes is None else self.boxes[idx])

    def counts(self) -> dict[str, dict[str, int]]:
        """domain -> class -> number of images."""
        return {d: {c: int(((self.domains == di) & (self.labels == ci)).sum()) for ci, c in enumerate(CLASS_NAMES)}
                for di, d in enumerate(DOMAINS)}


@dataclass(frozen=True)
class DataSpec:
    """Everything that decides the content of the sets (it is hashed into the fingerprint).

    Attributes:
        voc_root: facemask_voc folder.
        crops_root: facemask_crops folder.
        size: side S of the stored images.
        voc_seed: seed of :func:`voc_split` (keep the default: it fixes the held-out test images).
        crops_seed: seed of :func:`crops_split`.
        context_seed: base seed of the training context crops.
        context_copies: context windows drawn per training face (different seeds).
        small_face_copies: extra context windows (further seeds) for training faces whose shorter side
            is under ``small_face_px``: the held-out errors are nearly all such faces.
        small_face_px: the face size that counts as small for ``small_face_copies``.
        face_margin: margin of VOC face crops.
        min_face_px: training faces smaller than this are skipped (val/test keep all).
        crops_named_with_mask: keep facemask_crops' named web images (often wide shots) in training.
        limit: keep at most this many source files per source and split (quick tests); None = all.
    """

    voc_root: str
    crops_root: str
    size: int = 224
    voc_seed: int = VOC_SPLIT_SEED
    crops_seed: int = 0
    context_seed: int = 1000
    context_copies: int = 2
    small_face_copies: int = 0
    small_face_px: float = 16.0
    face_margin: float = 0.2
    min_face_px: float = 8.0
    crops_named_with_mask: bool = True
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"size must be >= 32, but got {self.size}")
        if self.context_copies < 0:
            raise ValueError(f"context_copies must be >= 0, but got {self.context_copies}")
        if self.small_face_copies < 0:
            raise ValueError(f"small_face_copies must be >= 0, but got {self.small_face_copies}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, but got {self.limit}")

    def params(self) -> dict:
        """The spec without the data locations (those do not change the content)."""
        d = asdict(self)
        d.pop("voc_root")
        d.pop("crops_root")
        if not self.small_face_copies:  # unused: keep the fingerprints of earlier runs unchanged
            d.pop("small_face_copies")
            d.pop("small_face_px")
        return d


def _sources(spec: DataSpec) -> dict:
    voc_images = read_voc(spec.voc_root)
    vs = voc_split(voc_images, read_duplicate_groups(spec.voc_root), spec.voc_seed)
    cs = crops_split(read_crops_manifest(spec.crops_root), seed=spec.crops_seed)
    if not spec.crops_named_with_mask:
        cs["train"] = [it for it in cs["train"] if not (it.label == "with_mask" and it.sub_source.startswith("upstream named"))]
    if spec.limit is not None:  # a seeded sample, so both classes appear
        def pick(v: list, n: int) -> list:
            keep = sorted(np.random.default_rng(0).permutation(len(v))[:n].tolist())
            return [v[i] for i in keep]
        vs = {k: pick(v, max(1, spec.limit // 4)) for k, v in vs.items()}
        cs = {k: pick(v, spec.limit) for k, v in cs.items()}
    return {"voc": vs, "crops": cs}


def fingerprint(spec: DataSpec) -> str:
    """sha256 of the sorted file lists of every split, the annotation files and the spec's parameters."""
    src = _sources(spec)
    h = hashlib.sha256()
    h.update(json.dumps(spec.params(), sort_keys=True).encode())
    for name in ("annotations.json", "duplicate_groups.json"):
        p = Path(spec.voc_root) / name
        h.update(p.read_bytes() if p.is_file() else b"-")
    h.update((Path(spec.crops_root) / "manifest.json").read_bytes())
    for split in SPLITS:
        h.update(json.dumps({"split": split, "voc": sorted(im.file for im in src["voc"][split]),
                             "crops": sorted(it.file for it in src["crops"][split])}).encode())
    return h.hexdigest()


def _resize_square(img: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if max(img.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def build_set(spec: DataSpec, split: str, map_fn: Callable = map) -> LabeledSet:
    """Decode and crop one split into a :class:`LabeledSet` (deterministic).

    Args:
        spec: what to build.
        split: ``"train"``, ``"val"`` or ``"test"``.
        map_fn: a ``map``-like function used for per-file work (e.g. a thread pool's ``map``);
            results are consumed in input order, so the output does not depend on it.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, but got {split!r}")
    src = _sources(spec)
    train = split == "train"
    min_px = spec.min_face_px if train else 0.0
    ctx_seeds = [spec.context_seed + k for k in range(spec.context_copies)] if train else [EVAL_CONTEXT_SEED]
    small_seeds = [spec.context_seed + spec.context_copies + k for k in range(spec.small_face_copies)] if train else []
    S = spec.size

    def one_crop(it):
        return _resize_square(load_crop(spec.crops_root, it), S), CLASS_NAMES.index(it.label), 0, it.file, _NO_BOX

    def one_voc(vimg):
        if not any(b.label in CLASS_NAMES for b in vimg.boxes):
            return []
        img = load_image(spec.voc_root, vimg)
        out = [(c.image, CLASS_NAMES.index(c.label), 1, vimg.file, _NO_BOX)
               for c in voc_face_crops(img, vimg, S, spec.face_margin, CLASS_NAMES, min_px)]
        # regular windows for every face, then the extra seeds for small faces only
        for sd, below_px in [(sd, None) for sd in ctx_seeds] + [(sd, spec.small_face_px) for sd in small_seeds]:
            out += [(c.image, CLASS_NAMES.index(c.label), 2, vimg.file, c.box)
                    for c in make_context_crops(img, vimg, image_rng(sd, vimg.file), S, labels=CLASS_NAMES,
                                                min_face_px=min_px)
                    if below_px is None or c.face_px < below_px]
        return out

    rows = list(map_fn(one_crop, src["crops"][split]))
    for r in map_fn(one_voc, src["voc"][split]):
        rows.extend(r)
    if spec.limit is not None:  # cap each domain
        kept, seen = [], {0: 0, 1: 0, 2: 0}
        for r in rows:
            if seen[r[2]] < spec.limit:
                kept.append(r)
                seen[r[2]] += 1
        rows = kept
    if not rows:
        return LabeledSet(np.zeros((0, S, S, 3), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64), [],
                          np.zeros((0, 4), np.float32))
    return LabeledSet(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows], np.int64),
                      np.array([r[2] for r in rows], np.int64), [r[3] for r in rows],
                      np.array([r[4] for r in rows], np.float32).reshape(-1, 4))
