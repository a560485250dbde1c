"""Frames that carry their own index, readable back after lossy video coding.

Frame i shows the 10 bits of i as a row of black/white 16x16 blocks (least significant bit first)
on a mid-grey image, so a decoded frame says which input frame it was."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BITS = 10
BLOCK = 16


def index_image(i: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """(H, W, 3) uint8 BGR frame showing index ``i`` (0 <= i < 1024) in blocks along the top row."""
    w, h = size
    if w < BITS * BLOCK or h < BLOCK:
        raise ValueError(f"size must be at least {BITS * BLOCK}x{BLOCK}, got {size}")
    im = np.full((h, w, 3), 128, np.uint8)
    for b in range(BITS):
        im[:BLOCK, b * BLOCK : (b + 1) * BLOCK] = 255 if (i >> b) & 1 else 0
    return im


def read_index(image: np.ndarray) -> int:
    """The index shown by an ``index_image`` frame (after decoding)."""
    row = image[2 : BLOCK - 2]
    return sum(1 << b for b in range(BITS) if row[:, b * BLOCK + 2 : (b + 1) * BLOCK - 2].mean() > 128)


def decode_indices(frames: list[np.ndarray]) -> list[int]:
    """``read_index`` of every frame."""
    return [read_index(f) for f in frames]


def write_index_video(path: Path, n: int, size: tuple[int, int] = (320, 240), fps: float = 25.0) -> Path:
    """An MJPG .avi whose frame i shows index i."""
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert wr.isOpened()
    for i in range(n):
        wr.write(index_image(i, size))
    wr.release()
    return path
