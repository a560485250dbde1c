"""Clip specs and the renderer: a virtual camera over annotated photos -> frames + exact ground truth.

A clip is a list of shots (a cut between shots changes the photo, and with it every identity). In a
shot the camera is a window over the photo (centre and width in photo pixels, keyframed and linearly
interpolated, the height fixed by the output's aspect ratio), so every annotated face box maps to
frame pixels exactly: ``frame = (photo - window_origin) * output_width / window_width``.
Occluders are boards drawn in frame pixels; splices paste another face (of the other class) over one
face for a time interval, which changes that identity's label while it keeps its place.

Ground truth per frame and face (MOT convention, frames 1-based):

* ``box``: the face box clipped to the frame (x1, y1, x2, y2, frame pixels);
* ``visibility``: visible area (inside the frame, not under an occluder) / the unclipped box area;
* ``conf``: 1 for ``with_mask`` / ``without_mask`` faces, 0 for ``mask_weared_incorrect`` faces and
  for ``unannotated`` ones (real faces the annotation leaves out, ``tools/trackbench/recipes.py``): don't-care
  regions, neither a miss nor a false positive;
* ``label``: the face's class in that frame (a splice's donor class while the splice is on).

A face whose clipped box is empty is absent from that frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import cv2
import numpy as np

CLASSES = ("with_mask", "without_mask")
SPLICE_PAD = 0.15  # fraction of the face box added per side around a spliced face (blended away)


@dataclass(frozen=True)
class Face:
    """One face of a photo: box (x1, y1, x2, y2) in photo pixels and its VOC label (or ``unannotated``)."""

    box: tuple[float, float, float, float]
    label: str


@dataclass(frozen=True)
class Splice:
    """Face ``face`` of the shot shows the donor face (of ``donor_label``) for ``start_s <= t < end_s``.

    Times are seconds from the start of the shot; ``donor_box`` is in the donor photo's pixels.
    """

    face: int
    donor_file: str
    donor_box: tuple[float, float, float, float]
    donor_label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Occluder:
    """A board moving across the frame (fractions of the frame size; times in seconds of the shot).

    Its centre moves linearly from ``x_from`` to ``x_to`` during [start_s, end_s]; it is drawn only then,
    ``width`` wide, from ``y0`` to ``y1``.
    """

    x_from: float
    x_to: float
    width: float
    y0: float
    y1: float
    start_s: float
    end_s: float
    color: tuple[int, int, int] = (70, 90, 110)

    def rect(self, t: float, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
        """(x1, y1, x2, y2) in frame pixels at time ``t``, or None when not shown. ``size`` is (W, H)."""
        if not (self.start_s <= t <= self.end_s):
            return None
        u = (t - self.start_s) / max(self.end_s - self.start_s, 1e-9)
        w, h = size
        cx = (self.x_from + u * (self.x_to - self.x_from)) * w
        return (cx - self.width * w / 2, self.y0 * h, cx + self.width * w / 2, self.y1 * h)


@dataclass(frozen=True)
class Shot:
    """One photo filmed for ``duration_s`` seconds.

    Attributes:
        photo: file relative to the data root.
        faces: the photo's annotated faces, then unannotated ones (identity = position in this tuple).
        duration_s: length in seconds.
        camera: keyframes (t_s, cx, cy, window_width) in photo pixels, t increasing; linear in between.
        occluders: boards drawn over the frame.
        splices: face swaps that change labels.
    """

    photo: str
    faces: tuple[Face, ...]
    duration_s: float
    camera: tuple[tuple[float, float, float, float], ...]
    occluders: tuple[Occluder, ...] = ()
    splices: tuple[Splice, ...] = ()

    def window(self, t: float) -> tuple[float, float, float]:
        """(cx, cy, width) of the camera window at ``t`` seconds (photo pixels)."""
        k = np.asarray(self.camera, dtype=np.float64)
        return tuple(float(np.interp(t, k[:, 0], k[:, j])) for j in (1, 2, 3))  # type: ignore[return-value]


@dataclass(frozen=True)
class ClipSpec:
    """A clip: shots played one after the other at ``fps`` frames per second, ``size`` = (W, H)."""

    name: str
    fps: float
    size: tuple[int, int]
    shots: tuple[Shot, ...]
    recipe: str = ""
    notes: dict = field(default_factory=dict)

    def shot_frames(self) -> list[int]:
        """Frames per shot (``round(duration * fps)``, at least 1)."""
        return [max(1, int(round(s.duration_s * self.fps))) for s in self.shots]

    @property
    def n_frames(self) -> int:
        return sum(self.shot_frames())

    def identities(self) -> list[dict]:
        """One entry per ground-truth id (1-based, in order): shot, photo, face index, photo box, label."""
        out = []
        for k, shot in enumerate(self.shots):
            for j, f in enumerate(shot.faces):
                out.append({"id": len(out) + 1, "shot": k, "photo": shot.photo, "face": j,
                            "photo_box": list(f.box), "label": f.label})
        return out


@dataclass(frozen=True)
class GtRow:
    """One face in one frame: ``frame`` 1-based, ``box`` clipped (x1, y1, x2, y2) frame pixels."""

    frame: int
    id: int
    box: tuple[float, float, float, float]
    conf: int
    visibility: float
    label: str


def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersect(a, b) -> tuple[float, float, float, float]:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def splice_patch(target: np.ndarray, tbox, donor: np.ndarray, dbox) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste the donor face over ``tbox`` of ``target`` with a feathered elliptical blend.

    Args:
        target: (H, W, 3) uint8 photo; not modified.
        tbox: target face box (x1, y1, x2, y2), photo pixels.
        donor: (H', W', 3) uint8 donor photo.
        dbox: donor face box in donor pixels.

    Returns:
        (the blended patch (h, w, 3) uint8, its rectangle (x1, y1, x2, y2) in ``target``, integers).
    """
    def padded(b, shape):
        w, h = b[2] - b[0], b[3] - b[1]
        x1, y1 = int(np.floor(b[0] - SPLICE_PAD * w)), int(np.floor(b[1] - SPLICE_PAD * h))
        x2, y2 = int(np.ceil(b[2] + SPLICE_PAD * w)), int(np.ceil(b[3] + SPLICE_PAD * h))
        return max(0, x1), max(0, y1), min(shape[1], x2), min(shape[0], y2)

    tx1, ty1, tx2, ty2 = padded(tbox, target.shape)
    dx1, dy1, dx2, dy2 = padded(dbox, donor.shape)
    tw, th = tx2 - tx1, ty2 - ty1
    src = cv2.resize(donor[dy1:dy2, dx1:dx2], (tw, th), interpolation=cv2.INTER_AREA
                     if (dx2 - dx1) > tw else cv2.INTER_LINEAR)
    alpha = np.zeros((th, tw), np.float32)
    cv2.ellipse(alpha, (tw // 2, th // 2), (max(1, int(tw * 0.46)), max(1, int(th * 0.46))), 0, 0, 360, 1.0, -1)
    k = max(3, (min(tw, th) // 6) | 1)
    alpha = cv2.GaussianBlur(alpha, (k, k), 0)[..., None]
    base = target[ty1:ty2, tx1:tx2].astype(np.float32)
    patch = np.clip(alpha * src.astype(np.float32) + (1 - alpha) * base + 0.5, 0, 255).astype(np.uint8)
    return patch, (tx1, ty1, tx2, ty2)


def draw_occluder(frame: np.ndarray, rect, color) -> None:
    """Draw a striped board into ``frame`` (in place) over ``rect`` (frame pixels)."""
    h, w = frame.shape[:2]
    x1, y1 = max(0, int(round(rect[0]))), max(0, int(round(rect[1])))
    x2, y2 = min(w, int(round(rect[2]))), min(h, int(round(rect[3])))
    if x2 <= x1 or y2 <= y1:
        return
    frame[y1:y2, x1:x2] = color
    for y in range(y1, y2, 24):  # stripes so it is not a flat colour
        frame[y : min(y2, y + 6), x1:x2] = tuple(int(c * 0.7) for c in color)


def render_clip(spec: ClipSpec, load_photo: Callable[[str], np.ndarray]) -> Iterator[tuple[np.ndarray, list[GtRow]]]:
    """Frames of ``spec`` with their ground truth, in order.

    Args:
        spec: the clip.
        load_photo: file (relative to the data root) -> (H, W, 3) uint8 BGR photo.

    Yields:
        (frame (H, W, 3) uint8 BGR, the GtRow of every face at least partly inside the frame).
    """
    w_out, h_out = spec.size
    frame_rect = (0.0, 0.0, float(w_out), float(h_out))
    frame_no = 0
    id_base = 0
    for shot, n in zip(spec.shots, spec.shot_frames()):
        photo = load_photo(shot.photo)
        fill = tuple(float(v) for v in photo.reshape(-1, 3).mean(0))
        patches = []
        for sp in shot.splices:
            patch, rect = splice_patch(photo, shot.faces[sp.face].box, load_photo(sp.donor_file), sp.donor_box)
            patches.append((sp, patch, rect))
        cache: dict[tuple, np.ndarray] = {}
        for i in range(n):
            t = i / spec.fps
            frame_no += 1
            active = tuple(k for k, (sp, _, _) in enumerate(patches) if sp.start_s <= t < sp.end_s)
            if active not in cache:
                canvas = photo.copy()
                for k in active:
                    _, patch, (x1, y1, x2, y2) = patches[k]
                    canvas[y1:y2, x1:x2] = patch
                cache[active] = canvas
            canvas = cache[active]
            cx, cy, ww = shot.window(t)
            s = w_out / ww
            x0, y0 = cx - ww / 2, cy - (ww * h_out / w_out) / 2
            m = np.array([[s, 0, -s * x0], [0, s, -s * y0]], np.float64)
            frame = cv2.warpAffine(canvas, m, (w_out, h_out), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
            occ = [r for r in (o.rect(t, spec.size) for o in shot.occluders) if r is not None]
            for o, r in zip([o for o in shot.occluders if o.rect(t, spec.size) is not None], occ):
                draw_occluder(frame, r, o.color)
            labels = {shot.splices[k].face: shot.splices[k].donor_label for k in active}
            rows = []
            for j, face in enumerate(shot.faces):
                b = face.box
                full = ((b[0] - x0) * s, (b[1] - y0) * s, (b[2] - x0) * s, (b[3] - y0) * s)
                clipped = _intersect(full, frame_rect)
                if _area(clipped) <= 0:
                    continue
                hidden = sum(_area(_intersect(clipped, r)) for r in occ)  # boards never overlap each other
                vis = max(0.0, _area(clipped) - hidden) / max(_area(full), 1e-9)
                label = labels.get(j, face.label)
                rows.append(GtRow(frame_no, id_base + j + 1, tuple(round(v, 2) for v in clipped),
                                  int(label in CLASSES), round(min(1.0, vis), 4), label))
            yield frame, rows
        id_base += len(shot.faces)
