"""The seeded benchmark set: which photos, which camera motions, occlusions, splices and cuts.

Six recipes, each used ``n_clips / 6`` times (in this order, cycling):

* ``pan``: the window (55% of the widest window that fits, or taller when the faces span more height)
  pans across the photo, so faces leave at one edge and enter at the other; 25 fps, 6 s.
* ``zoom``: zoom in on a face from the whole photo to 35% of it, and back out to 80%; 25 fps, 6 s.
* ``occlusion``: a slow drift while a board (16% of the frame wide, full height) sweeps across the frame
  from 1 s to 5 s; 25 fps, 6 s.
* ``change``: one face (the largest two-class face) shows a face of the other class spliced in from
  2.5 s to 5.5 s (the person takes the mask off / puts it on, and back); donor face from the same photo
  when it has one of the other class, else the nearest in size from the same split; 25 fps, 8 s.
* ``cut``: two photos, 4 s each, each panned slowly; a cut gives new identities (different people);
  25 fps, 8 s.
* ``lowfps``: 5 fps, 8 s, a fast back-and-forth pan (the whole pan range every 1.33 s, i.e. 6.7 frames)
  over a photo with 3+ faces: a face moves (photo width - window) / 6.7 per frame, more than its own
  width for most faces, so its boxes in consecutive frames barely or never overlap.

Photos come from one side of ``core.data.splits.voc_split`` (the reported set: ``test``; for choosing
thresholds: ``train``/``val``), never both. A photo qualifies when it has 1-8 faces, at least one
``with_mask``/``without_mask`` face of 12 px or more (shorter side, photo pixels), and is at least 200 px
on each side; ``lowfps`` photos need 3 such faces and the others 2 (the ``change`` recipe's
largest face must also reach 16 px). Every choice comes from ``numpy.random.default_rng(seed)``.

**Faces the annotation leaves out.** Some photos show real faces facemask_voc does not annotate (people in
the background, a face on a screen). A detector that finds one must not be charged a false person, so
:func:`load_unannotated` reads ``tools/trackbench/unannotated.json`` (faces found by eye on the benchmark's
photos, with how they were found) and each shot lists them after the annotated faces with the label
``unannotated``: don't-care regions, like ``mask_weared_incorrect`` faces (see ``tools/trackbench/score.py``).
They change no photo choice, camera path or frame, only the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from core.data.voc import VocImage
from tools.trackbench.scene import CLASSES, ClipSpec, Face, Occluder, Shot, Splice

RECIPES = ("pan", "zoom", "occlusion", "change", "cut", "lowfps")
MIN_FACE_PX = 12.0
UNANNOTATED = "unannotated"  # label of a real face the annotation leaves out (a don't-care region)
UNANNOTATED_FILE = Path(__file__).with_name("unannotated.json")
Boxes = Mapping[str, Sequence[Sequence[float]]]
OTHER = {"with_mask": "without_mask", "without_mask": "with_mask"}


def _side(b) -> float:
    return float(min(b[2] - b[0], b[3] - b[1]))


def qualifies(im: VocImage) -> bool:
    """The photo rule (see the module docstring)."""
    ok = [b for b in im.boxes if b.label in CLASSES and _side(b.xyxy) >= MIN_FACE_PX]
    return 1 <= len(im.boxes) <= 8 and bool(ok) and min(im.width, im.height) >= 200


class _Frame:
    """Window geometry for one photo and output aspect ratio."""

    def __init__(self, im: VocImage, size: tuple[int, int]) -> None:
        self.pw, self.ph = float(im.width), float(im.height)
        self.aspect = size[0] / size[1]
        self.wmax = min(self.pw, self.ph * self.aspect)  # widest window inside the photo

    def clamp(self, cx: float, cy: float, ww: float) -> tuple[float, float, float]:
        ww = min(ww, self.wmax)
        wh = ww / self.aspect
        return (float(np.clip(cx, ww / 2, self.pw - ww / 2)), float(np.clip(cy, wh / 2, self.ph - wh / 2)), ww)

    def key(self, t: float, cx: float, cy: float, ww: float) -> tuple[float, float, float, float]:
        cx, cy, ww = self.clamp(cx, cy, ww)
        return (round(t, 3), round(cx, 2), round(cy, 2), round(ww, 2))


def load_unannotated(path: str | Path = UNANNOTATED_FILE) -> dict[str, list[tuple[float, float, float, float]]]:
    """photo file -> boxes (x1, y1, x2, y2, photo pixels) of the real faces its annotation leaves out.

    Raises:
        ValueError: naming ``path`` when it cannot be read or a box is not four increasing corners.
    """
    try:
        faces = json.loads(Path(path).read_text(encoding="utf-8"))["faces"]
        out = {f: [tuple(float(v) for v in e["box"]) for e in entries] for f, entries in faces.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: cannot read the unannotated faces ({exc})") from None
    for f, boxes in out.items():
        for b in boxes:
            if len(b) != 4 or not (b[0] < b[2] and b[1] < b[3]):
                raise ValueError(f"{path}: {f}: box {list(b)} is not x1 < x2, y1 < y2")
    return out


def _faces(im: VocImage, extra: Boxes) -> tuple[Face, ...]:
    """The photo's annotated faces, then its unannotated ones (don't-care) from ``extra``."""
    return (tuple(Face(tuple(float(v) for v in b.xyxy), b.label) for b in im.boxes)
            + tuple(Face(tuple(float(v) for v in b), UNANNOTATED) for b in extra.get(im.file, ())))


def _centre(b) -> tuple[float, float]:
    return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


def _pan(im, size, rng, duration, ww_frac=0.55, sweeps=1):
    """Keyframes of ``sweeps`` pans from one side to the other; the window is at least as tall as the span of
    the faces' centres plus one face (so a pan shows every face), and sits at the middle of that span."""
    g = _Frame(im, size)
    ys = [_centre(b.xyxy)[1] for b in im.boxes]
    span = max(ys) - min(ys) + max(b.xyxy[3] - b.xyxy[1] for b in im.boxes)
    ww = min(g.wmax, max(ww_frac * g.wmax, span * g.aspect))
    wh = ww / g.aspect
    left, right = ww / 2, g.pw - ww / 2
    fy = (max(ys) + min(ys)) / 2
    cy0, cy1 = (fy + float(rng.uniform(-0.15, 0.15)) * max(0.0, wh - span) for _ in range(2))
    ends = (left, right) if rng.random() < 0.5 else (right, left)
    keys = []
    for k in range(sweeps + 1):
        t = duration * k / sweeps
        keys.append(g.key(t, ends[k % 2], cy0 + (cy1 - cy0) * k / sweeps, ww))
    return tuple(keys)


def _n2(im: VocImage) -> int:
    """Two-class faces of 12 px or more in the photo."""
    return sum(b.label in CLASSES and _side(b.xyxy) >= MIN_FACE_PX for b in im.boxes)


def _faces_y(im: VocImage) -> float:
    """Median face centre height: windows are placed at this height so that the faces are in them."""
    return float(np.median([_centre(b.xyxy)[1] for b in im.boxes]))


def _largest(im: VocImage) -> int:
    sides = [(_side(b.xyxy) if b.label in CLASSES else -1.0) for b in im.boxes]
    return int(np.argmax(sides))


def _donor(im: VocImage, face: int, pool: Sequence[VocImage]) -> tuple[str, tuple, str]:
    """(file, box, label) of a face of the other class: same photo first, else the nearest in size."""
    target = im.boxes[face]
    want, side = OTHER[target.label], _side(target.xyxy)
    same = [b for j, b in enumerate(im.boxes) if j != face and b.label == want and _side(b.xyxy) >= 0.5 * side]
    if same:
        b = max(same, key=lambda b: _side(b.xyxy))
        return im.file, tuple(float(v) for v in b.xyxy), want
    cands = [(abs(np.log(max(_side(b.xyxy), 1) / side)), p.file, b) for p in pool if p.file != im.file
             for b in p.boxes if b.label == want]
    if not cands:
        raise ValueError(f"no {want} face in the photo pool to splice into {im.file}")
    _, f, b = min(cands, key=lambda c: (c[0], c[1]))
    return f, tuple(float(v) for v in b.xyxy), want


def build_specs(
    images: Sequence[VocImage], n_clips: int = 12, seed: int = 0, size: tuple[int, int] = (960, 540),
    unannotated: Boxes | None = None,
) -> list[ClipSpec]:
    """The benchmark's clip specs (deterministic for the same photos, n_clips, seed and size).

    Args:
        images: the photos of ONE split side (their boxes in photo pixels).
        n_clips: clips to make; recipes cycle through :data:`RECIPES`.
        seed: seed of every random choice.
        size: (W, H) of the output frames.
        unannotated: photo file -> boxes of faces its annotation leaves out (:func:`load_unannotated`),
            added to its shots as don't-care faces; None: none.

    Raises:
        ValueError: too few qualifying photos for ``n_clips`` (each photo is used once).
    """
    extra = unannotated or {}
    pool = sorted(images, key=lambda im: im.file)
    cands = [im for im in pool if qualifies(im)]
    rng = np.random.default_rng(seed)
    order = [cands[i] for i in rng.permutation(len(cands))]
    used: set[str] = set()

    def take(pred=lambda im: _n2(im) >= 2) -> VocImage:
        for im in order:
            if im.file not in used and pred(im):
                used.add(im.file)
                return im
        raise ValueError(f"too few qualifying photos ({len(cands)} of {len(pool)}) for {n_clips} clips")

    specs = []
    for i in range(n_clips):
        recipe = RECIPES[i % len(RECIPES)]
        name = f"{i:02d}_{recipe}"
        if recipe == "pan":
            im = take()
            shots = (Shot(im.file, _faces(im, extra), 6.0, _pan(im, size, rng, 6.0)),)
            specs.append(ClipSpec(name, 25.0, size, shots, recipe))
        elif recipe == "zoom":
            im = take()
            g = _Frame(im, size)
            cx, cy = _centre(im.boxes[int(rng.integers(len(im.boxes)))].xyxy)
            fy = _faces_y(im)
            keys = (g.key(0, g.pw / 2, fy, g.wmax), g.key(3.0, cx, cy, 0.35 * g.wmax),
                    g.key(6.0, (cx + g.pw / 2) / 2, (cy + fy) / 2, 0.8 * g.wmax))
            specs.append(ClipSpec(name, 25.0, size, (Shot(im.file, _faces(im, extra), 6.0, keys),), recipe))
        elif recipe == "occlusion":
            im = take()
            g = _Frame(im, size)
            ww = 0.7 * g.wmax
            fy = _faces_y(im)
            keys = (g.key(0, g.pw * 0.45, fy, ww), g.key(6.0, g.pw * 0.55, fy, ww))
            lr = rng.random() < 0.5
            occ = Occluder(-0.1 if lr else 1.1, 1.1 if lr else -0.1, 0.16, 0.0, 1.0, 1.0, 5.0)
            specs.append(ClipSpec(name, 25.0, size, (Shot(im.file, _faces(im, extra), 6.0, keys, (occ,)),), recipe))
        elif recipe == "change":
            im = take(lambda im: _n2(im) >= 2 and _side(im.boxes[_largest(im)].xyxy) >= 16)
            j = _largest(im)
            dfile, dbox, dlabel = _donor(im, j, pool)
            g = _Frame(im, size)
            cx, cy = _centre(im.boxes[j].xyxy)
            ww = 0.6 * g.wmax
            keys = (g.key(0, cx - 0.1 * ww, cy, ww), g.key(8.0, cx + 0.1 * ww, cy, ww))
            sp = Splice(j, dfile, dbox, dlabel, 2.5, 5.5)
            specs.append(ClipSpec(name, 25.0, size, (Shot(im.file, _faces(im, extra), 8.0, keys, (), (sp,)),), recipe,
                                  {"splice": f"face {j} shows a {dlabel} face from {dfile} during [2.5, 5.5) s"}))
        elif recipe == "cut":
            a, b = take(), take()
            shots = tuple(Shot(p.file, _faces(p, extra), 4.0, _pan(p, size, rng, 4.0, ww_frac=0.75)) for p in (a, b))
            specs.append(ClipSpec(name, 25.0, size, shots, recipe,
                                  {"cut": "at 4 s; the second photo's faces are new identities"}))
        else:  # lowfps
            im = take(lambda im: _n2(im) >= 3)
            shots = (Shot(im.file, _faces(im, extra), 8.0, _pan(im, size, rng, 8.0, ww_frac=0.6, sweeps=6)),)
            specs.append(ClipSpec(name, 5.0, size, shots, recipe))
    return specs
