"""Small synthetic crowd clips with known people: real face images pasted on a background, moving.

Each face gets its own cell of a grid and moves inside it along a smooth seeded path (no occlusion),
optionally visible only for a stretch of frames (entering / leaving). Used by ``tools/bench_stream.py``
(720p, 1 / 5 / 20 faces) and by the run test. Ground truth per frame: ``(person index, box)``.

    python -m tools.face_clip --faces 5 --out out/clip5.mp4   # faces from ../shared/data/facemask_crops
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


@dataclass(frozen=True)
class ClipTruth:
    """Ground truth of a generated clip.

    Attributes:
        boxes: per frame, a list of (person index, (x1, y1, x2, y2)) for the faces in view.
        labels: per person, its class name (or "" when unknown).
        fps: frame rate written.
    """

    boxes: list[list[tuple[int, tuple[int, int, int, int]]]]
    labels: list[str]
    fps: float

    @property
    def people(self) -> int:
        return len({i for frame in self.boxes for i, _ in frame})


def background(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth coloured gradient with mild noise, (h, w, 3) uint8 BGR."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([60 + 80 * xx / w, 90 + 60 * yy / h, 120 + 40 * (xx + yy) / (w + h)], 2)
    return np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def write_face_clip(
    path: str | Path,
    faces: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    size: tuple[int, int] = (1280, 720),
    n_frames: int = 100,
    fps: float = 25.0,
    seed: int = 0,
    visible: Sequence[tuple[int, int]] | None = None,
    face_frac: float = 0.55,
) -> ClipTruth:
    """Write a clip of ``len(faces)`` moving faces and return its ground truth.

    Args:
        path: video file (.mp4: mp4v, .avi: MJPG).
        faces: BGR face images (any size; each is resized to its cell).
        labels: class name per face.
        size: (width, height).
        n_frames: frames to write.
        fps: frame rate.
        seed: motion seed.
        visible: per face, the [first, last) frames it is in view (None: always).
        face_frac: face side as a fraction of the cell's shorter side.
    """
    w, h = size
    n = len(faces)
    cols = max(1, math.ceil(math.sqrt(n * w / h)))
    rows = max(1, math.ceil(n / cols))
    cw, ch = w // cols, h // rows
    side = int(min(cw, ch) * face_frac)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (n, 2))
    speed = rng.uniform(0.03, 0.08, (n, 2))
    imgs = []
    for f in faces:  # the longer side becomes ``side``, keeping the face's aspect ratio
        s = side / max(f.shape[:2])
        imgs.append(cv2.resize(f, (max(1, round(f.shape[1] * s)), max(1, round(f.shape[0] * s))), interpolation=cv2.INTER_AREA))
    bg = background(w, h, seed)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if str(path).lower().endswith(".avi") else "mp4v"))
    wr = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not wr.isOpened():
        raise OSError(f"cannot write {path}")
    truth: list[list[tuple[int, tuple[int, int, int, int]]]] = []
    try:
        for t in range(n_frames):
            frame = bg.copy()
            boxes = []
            for i, im in enumerate(imgs):
                if visible is not None and not visible[i][0] <= t < visible[i][1]:
                    continue
                r, c = divmod(i, cols)
                ax, ay = (cw - side) / 2, (ch - side) / 2
                x = int(c * cw + ax + ax * 0.9 * math.sin(phase[i, 0] + speed[i, 0] * t))
                y = int(r * ch + ay + ay * 0.9 * math.sin(phase[i, 1] + speed[i, 1] * t))
                ih, iw = im.shape[:2]
                x, y = x + (side - iw) // 2, y + (side - ih) // 2
                frame[y : y + ih, x : x + iw] = im
                boxes.append((i, (x, y, x + iw, y + ih)))
            wr.write(frame)
            truth.append(boxes)
    finally:
        wr.release()
    return ClipTruth(truth, list(labels) if labels else [""] * n, fps)


def crops_from(root: str | Path, n: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """``n`` face images from a facemask_crops-style folder (``with_mask/``, ``without_mask/``), alternating
    classes, seeded; returns (images, labels)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    pools = {c: sorted((root / c).glob("*.jpg")) + sorted((root / c).glob("*.png")) for c in ("with_mask", "without_mask")}
    if not all(pools.values()):
        raise FileNotFoundError(f"{root} needs with_mask/ and without_mask/ images")
    out, labels = [], []
    for i in range(n):
        c = ("with_mask", "without_mask")[i % 2]
        p = pools[c][int(rng.integers(len(pools[c])))]
        out.append(cv2.imread(str(p)))
        labels.append(c)
    return out, labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=5)
    ap.add_argument("--crops", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/facemask_crops"))
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    faces, labels = crops_from(a.crops, a.faces, a.seed)
    truth = write_face_clip(a.out, faces, labels, (w, h), a.frames, seed=a.seed)
    print(f"wrote {a.out}: {truth.people} people, labels {labels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
