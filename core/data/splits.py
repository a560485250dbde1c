"""Group-aware, deterministic splits.

Near-duplicate images must never straddle a split (that leaks test images into training).
:func:`voc_split` is THE split of facemask_voc: training uses its ``train``/``val`` sides,
evaluation reports on ``test`` only.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from core.data.voc import VocImage

DEFAULT_FRACTIONS: Mapping[str, float] = MappingProxyType({"train": 0.7, "val": 0.1, "test": 0.2})
VOC_SPLIT_SEED = 0


def group_split(
    n_items_groups: Sequence[int | str],
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Split items into named parts so that all items of a group land in the same part.

    The distinct groups are ordered canonically, shuffled with ``seed`` and laid end to end;
    a group goes to the part in whose share of the item count its middle item falls. So part
    sizes follow ``fractions`` in items (not groups), up to one group's size.

    Args:
        n_items_groups: the group of each item (length N); equal values = same group.
        fractions: part name -> fraction (> 0, summing to 1), in output order.
        seed: shuffling seed; the result depends only on the groups and the seed.

    Returns:
        part name -> sorted item indices; every index in exactly one part.
    """
    if not fractions:
        raise ValueError("fractions must name at least one part")
    for k, v in fractions.items():
        if not v > 0:
            raise ValueError(f"fractions[{k!r}] must be > 0, but got {v}")
    total = float(sum(fractions.values()))
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, but sum to {total}")
    n = len(n_items_groups)
    members: dict[tuple[str, str], list[int]] = {}
    for i, g in enumerate(n_items_groups):
        members.setdefault((type(g).__name__, str(g)), []).append(i)
    keys = sorted(members)
    order = np.random.default_rng(seed).permutation(len(keys))
    bounds = np.cumsum([fractions[k] for k in fractions]) * n
    names = list(fractions)
    out: dict[str, list[int]] = {k: [] for k in names}
    done = 0
    for gi in order:
        idx = members[keys[gi]]
        mid = done + len(idx) / 2.0
        part = min(int(np.searchsorted(bounds, mid, side="right")), len(names) - 1)
        out[names[part]].extend(idx)
        done += len(idx)
    return {k: sorted(v) for k, v in out.items()}


def voc_split(
    images: Sequence[VocImage],
    groups: Mapping[str, int],
    seed: int = VOC_SPLIT_SEED,
) -> dict[str, list[VocImage]]:
    """THE train/val/test split of facemask_voc (70/10/20 % of images, group-aware).

    Independent of the order of ``images``. A file missing from ``groups`` (looked up by its
    relative path, then by its bare name) is its own group.

    Args:
        images: from :func:`core.data.voc.read_voc`.
        groups: from :func:`core.data.voc.read_duplicate_groups`.
        seed: keep the default: changing it changes the held-out test images.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` sorted by file.
    """
    ims = sorted(images, key=lambda im: im.file)
    keys: list[str] = []
    for im in ims:
        g = groups.get(im.file, groups.get(PurePosixPath(im.file).name))
        keys.append(f"group:{g}" if g is not None else f"file:{im.file}")
    parts = group_split(keys, DEFAULT_FRACTIONS, seed)
    return {k: [ims[i] for i in idx] for k, idx in parts.items()}
