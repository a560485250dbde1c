"""Camera motion between two frames, for the tracker (a pan or a zoom moves every face at once).

At a low frame rate a camera pan moves every face by about its own size between frames, so a face's
old place is taken by its neighbour and a tracker that predicts from the faces' own past alone swaps
them; in a zoom every face moves away from (or towards) the zoom's centre and grows (or shrinks), so a
box carried between detector runs drifts off its face. Like BoT-SORT's camera-motion compensation
(its default: sparse optical flow and a RANSAC similarity fit), the global motion between the two frames
is measured first and every track's prediction (position and size) is moved by it before matching.

:class:`CameraMotion` does it on 160-px grayscale copies: phase correlation gives the translation (it
copes with a pan of a face's width per frame, at 5 fps); corners of the previous copy are followed into
the current one by pyramidal Lucas-Kanade, started at that translation, and a similarity (scale,
rotation, translation) is fitted to them with RANSAC (``cv2.estimateAffinePartial2D``), so people moving
in front of a still background are outliers. When the fit is not trusted (too few corners or inliers, a
cut, inliers bunched in one part of the frame: a plain wall leaves corners only on the people) the
phase-correlation translation is used, and nothing when that is not trusted either.

A **cut** (the view changes to another scene) is told from a camera move by checking the motion: the previous
copy, moved by the estimated motion, is compared with the current one (normalised cross-correlation over
their overlap, :func:`motion_agreement`). Any camera move that was measured leaves them alike; after a cut
nothing does. On the 36 trainval benchmark clips (5,304 frame pairs, pans, zooms, 5-fps pans of a face's
width per frame, occluding boards) the 6 cuts score 0.03-0.13 and every other pair 0.50 or more, so a cut is
an agreement under ``cut_ncc`` (0.3) between two textured copies, right after a pair that agreed (at least
``cut_ncc``: a stream that no motion explains, such as noise, is never cut on every frame), and with at least
``cut_changed`` (half) of the pixels changed by more than 20 grey levels (:func:`changed_share`; the tune cuts
0.67-0.88, every other pair 0.47 or less): one object jumping in front of a plain wall is no cut, though the
correlation, which only sees the textured part, would say so. The tracker uses it (``FaceTracker.step(cut=...)``):
a position in the old view says nothing about the new one.
"""

from __future__ import annotations

import cv2
import numpy as np

SMALL_WIDTH = 160
CUT_NCC = 0.3  # agreement under which a textured pair is a cut (tune clips: cuts 0.03-0.13, other pairs >= 0.50)
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def small_gray(image: np.ndarray, width: int = SMALL_WIDTH) -> tuple[np.ndarray, float]:
    """A (h, width) float32 grayscale copy of a BGR frame (for phase correlation) and its scale (frame
    pixels per small pixel)."""
    g, s = _small_u8(image, width)
    return g.astype(np.float32), s


def _small_u8(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    s = w / float(width)
    hh = max(8, int(round(h / s)))
    small = cv2.resize(image, (width, hh), interpolation=cv2.INTER_AREA)
    g = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    return np.ascontiguousarray(g, np.uint8), s


def _phase_shift(prev: np.ndarray, cur: np.ndarray, min_response: float) -> tuple[float, float] | None:
    """(dx, dy) in the small images' pixels, or None when the correlation peak is under ``min_response``."""
    win = cv2.createHanningWindow((cur.shape[1], cur.shape[0]), cv2.CV_32F)
    # cv2.phaseCorrelate multiplies its inputs by the window in place: copies keep the caller's
    # images (the tracker stores `cur` as the next call's `prev`) unwindowed.
    (dx, dy), response = cv2.phaseCorrelate(prev.astype(np.float32), cur.astype(np.float32), win)
    if not np.isfinite(response) or response < min_response:
        return None
    return float(dx), float(dy)


def estimate_shift(prev: np.ndarray, cur: np.ndarray, scale: float, min_response: float = 0.2) -> tuple[float, float]:
    """The translation (dx, dy) in frame pixels that moves ``prev``'s content to where it is in ``cur``.

    Args:
        prev, cur: (h, w) float32 from :func:`small_gray` of the same size.
        scale: frame pixels per small pixel.
        min_response: below this phase-correlation peak the estimate is not trusted and (0, 0) is returned
            (a cut, a mostly static scene with moving people, too little texture).

    Returns:
        (dx, dy) in frame pixels.
    """
    if prev.shape != cur.shape:
        return 0.0, 0.0
    d = _phase_shift(prev.copy(), cur.copy(), min_response)
    if d is None:
        return 0.0, 0.0
    return d[0] * scale, d[1] * scale


def small_to_frame(m: np.ndarray, scale: float) -> np.ndarray:
    """A (2, 3) map between small images -> the same map between the frames they were made from.

    A small image's pixel centre ``q`` sits at frame pixel ``p = scale * (q + 0.5) - 0.5`` (``cv2.resize``'s
    convention). With ``q' = L q + t`` that gives ``p' = L p + scale * t + (scale - 1) * (h - L h)``,
    ``h = (0.5, 0.5)``: the linear part is kept, the translation is scaled (and nudged by the half pixel).
    """
    m = np.asarray(m, np.float64).reshape(2, 3)
    lin, t = m[:, :2], m[:, 2]
    half = np.array([0.5, 0.5])
    tf = scale * t + (scale - 1.0) * (half - lin @ half)
    return np.hstack([lin, tf[:, None]])


def _moved_overlap(prev: np.ndarray, cur: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``prev`` moved by the (2, 3) map ``m`` onto ``cur``'s (h, w) grid, as float32, and the (h, w) bool mask of
    the pixels it covers."""
    h, w = cur.shape[:2]
    mm = np.asarray(m, np.float64).reshape(2, 3)
    p = np.asarray(prev, np.float32)
    moved = cv2.warpAffine(p, mm, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
    inside = cv2.warpAffine(np.ones(p.shape[:2], np.float32), mm, (w, h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) > 0.5
    return moved, inside


def motion_agreement(prev: np.ndarray, cur: np.ndarray, m: np.ndarray, min_std: float = 2.0,
                     min_overlap: float = 0.25) -> float | None:
    """How well a motion explains two frames: normalised cross-correlation of ``prev`` moved by ``m`` with ``cur``.

    Args:
        prev, cur: (h, w) grayscale copies of the same size (uint8 or float).
        m: (2, 3) map of ``prev``'s pixels to ``cur``'s (in these copies' pixels).
        min_std: either copy with less grey-level spread than this over the overlap has too little texture
            to judge: None.
        min_overlap: the moved ``prev`` must cover at least this share of ``cur``, else None.

    Returns:
        The correlation in [-1, 1] over the pixels both cover (1: the motion explains the change exactly; about
        0: the two are unrelated, a cut), or None when it cannot be judged.
    """
    moved, inside = _moved_overlap(prev, cur, m)
    c = np.asarray(cur, np.float32)
    if inside.mean() < min_overlap:
        return None
    a = moved[inside] - moved[inside].mean()
    b = c[inside] - c[inside].mean()
    sa, sb = float(np.sqrt((a * a).mean())), float(np.sqrt((b * b).mean()))
    if sa < min_std or sb < min_std:
        return None
    return float((a * b).mean() / (sa * sb))


def changed_share(prev: np.ndarray, cur: np.ndarray, m: np.ndarray, diff: float = 20.0) -> float | None:
    """The share of ``cur``'s pixels that ``prev`` moved by ``m`` does not explain: grey levels differing by more
    than ``diff`` over the pixels both cover (None when they share none). A cut changes most of the frame; one
    object moving or appearing in front of a plain wall changes a part of it.

    Args:
        prev, cur: (h, w) grayscale copies of the same size.
        m: (2, 3) map of ``prev``'s pixels to ``cur``'s.
        diff: grey levels.

    Returns:
        A share in [0, 1], or None.
    """
    moved, inside = _moved_overlap(prev, cur, m)
    if not inside.any():
        return None
    return float((np.abs(moved[inside] - np.asarray(cur, np.float32)[inside]) > diff).mean())


def similarity_scale(m: np.ndarray) -> float:
    """The scale of a (2, 3) similarity ``[[a, -b, tx], [b, a, ty]]``: ``sqrt(|det L|)``."""
    m = np.asarray(m, np.float64).reshape(2, 3)
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def warp_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(n, 2) points moved by a (2, 3) map -> (n, 2) float64."""
    m = np.asarray(m, np.float64).reshape(2, 3)
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    return p @ m[:, :2].T + m[:, 2]


def warp_boxes(m: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """(n, 4) boxes moved by a (2, 3) similarity: centre mapped, width and height times its scale -> (n, 4)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    c = warp_points(m, (b[:, :2] + b[:, 2:]) / 2)
    half = (b[:, 2:] - b[:, :2]) / 2 * similarity_scale(m)
    return np.hstack([c - half, c + half])


class CameraMotion:
    """The camera's motion from each frame to the next, as a (2, 3) similarity in frame pixels.

    Call :meth:`update` once per frame of ONE source, in order. State is numpy arrays only (picklable:
    the ray engine snapshots the source's state).

    Args:
        width: width of the grayscale copies (frame pixels are ``frame_width / width`` small pixels).
        zoom: fit a similarity (scale, rotation, translation); False: phase-correlation translation only.
        max_corners: corners followed per frame.
        min_inliers: the similarity is trusted with at least this many RANSAC inliers, and at least
            ``min_inlier_share`` of the corners followed.
        min_inlier_share: see ``min_inliers``.
        max_zoom: a fitted scale outside ``[1 / max_zoom, max_zoom]`` per frame is not trusted.
        min_span: the inliers must spread over at least this fraction of the frame's width and of its height
            (else they may all lie on one moving person in front of a plain background).
        min_response: phase-correlation peak under which its translation is not trusted.
        cut_ncc: a pair of textured frames whose :func:`motion_agreement` under the estimated motion is below
            this is a cut (:attr:`last_cut`) when at least ``cut_changed`` of the frame changed
            (:func:`changed_share`); None: never a cut.
        cut_changed: see ``cut_ncc``.
    """

    def __init__(self, width: int = SMALL_WIDTH, zoom: bool = True, max_corners: int = 60, min_inliers: int = 12,
                 min_inlier_share: float = 0.5, max_zoom: float = 1.25, min_span: float = 0.35,
                 min_response: float = 0.2, cut_ncc: float | None = CUT_NCC, cut_changed: float = 0.5) -> None:
        self.width = int(width)
        self.zoom = bool(zoom)
        self.max_corners = int(max_corners)
        self.min_inliers = int(min_inliers)
        self.min_inlier_share = float(min_inlier_share)
        self.max_zoom = float(max_zoom)
        self.min_span = float(min_span)
        self.min_response = float(min_response)
        self.cut_ncc = None if cut_ncc is None else float(cut_ncc)
        self.cut_changed = float(cut_changed)
        self._prev: np.ndarray | None = None  # (h, width) uint8
        self._corners: np.ndarray | None = None  # (n, 1, 2) float32, corners of the previous copy
        self.last_method = "none"  # "similarity" | "shift" | "none" (what the last update used)
        self.last_cut = False  # the last update saw a cut (the view changed to another scene)
        self.last_agreement: float | None = None  # motion_agreement of the last update (None: not judged)
        self._agreement: float | None = None  # the previous update's (None after a reset or a change of size)

    def reset(self) -> None:
        """Forget the previous frame (the next update returns None)."""
        self._prev = self._corners = None
        self._agreement = None

    def update(self, image: np.ndarray) -> np.ndarray | None:
        """The motion from the previous frame to ``image``.

        Args:
            image: (H, W, 3) BGR (or (H, W) gray) uint8 frame.

        Returns:
            (2, 3) float64 ``M``: a point ``p`` of the previous frame is at ``M[:, :2] @ p + M[:, 2]`` in this
            one (frame pixels), or None on the first frame or after a change of frame size. :attr:`last_cut`
            says whether this frame starts a new scene (then ``M`` is the identity: no motion was found).
        """
        cur, scale = _small_u8(image, self.width)
        prev, corners = self._prev, self._corners
        self._prev = cur
        self._corners = None
        self.last_cut, self.last_agreement = False, None
        if prev is None or prev.shape != cur.shape:
            self.last_method, self._agreement = "none", None
            self._corners = self._find_corners(cur)
            return None
        m_small, method = self._estimate(prev, cur, corners)
        self.last_method = method
        if self.cut_ncc is not None:
            before, self.last_agreement = self._agreement, motion_agreement(prev, cur, m_small)
            self._agreement = self.last_agreement
            # a cut is a sudden break: the pair before agreed. A stream no motion ever explains (noise, a dark
            # camera's grain over a plain scene) would otherwise be a cut on every frame
            self.last_cut = (self.last_agreement is not None and self.last_agreement < self.cut_ncc
                             and before is not None and before >= self.cut_ncc)
            if self.last_cut:  # ...and most of the frame changed (not one object jumping in front of a plain wall)
                share = changed_share(prev, cur, m_small)
                self.last_cut = share is not None and share >= self.cut_changed
            if self.last_cut:  # what was fitted across a cut is no camera motion
                m_small = IDENTITY.copy()
        self._corners = self._find_corners(cur)
        return small_to_frame(m_small, scale)

    def _find_corners(self, gray: np.ndarray) -> np.ndarray | None:
        if not self.zoom:
            return None
        pts = cv2.goodFeaturesToTrack(gray, self.max_corners, 0.01, max(2.0, self.width / 40.0), blockSize=3)
        return None if pts is None else pts.astype(np.float32)

    def _estimate(self, prev: np.ndarray, cur: np.ndarray, corners: np.ndarray | None) -> tuple[np.ndarray, str]:
        shift = _phase_shift(prev, cur, self.min_response)
        if self.zoom and corners is not None and len(corners) >= self.min_inliers:
            m = self._fit(prev, cur, corners, shift or (0.0, 0.0))
            if m is not None:
                return m, "similarity"
        if shift is None:
            return IDENTITY.copy(), "none"
        return np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]]), "shift"

    def _fit(self, prev, cur, p0: np.ndarray, shift: tuple[float, float]) -> np.ndarray | None:
        init = (p0 + np.array(shift, np.float32)).astype(np.float32)
        p1, status, _ = cv2.calcOpticalFlowPyrLK(
            prev, cur, p0, init, winSize=(13, 13), maxLevel=2, flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
            criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03),
        )
        if p1 is None:
            return None
        ok = status.reshape(-1) == 1
        if ok.sum() < self.min_inliers:
            return None
        m, inl = cv2.estimateAffinePartial2D(p0[ok], p1[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0,
                                             maxIters=500, confidence=0.99, refineIters=10)
        if m is None or inl is None:
            return None
        n_in = int(inl.sum())
        if n_in < self.min_inliers or n_in < self.min_inlier_share * ok.sum():
            return None
        # the inliers must span the frame: on a plain wall every corner may lie on one moving person, whose
        # motion is not the camera's
        pts = p0[ok][inl.reshape(-1) == 1].reshape(-1, 2)
        span = (pts.max(0) - pts.min(0)) / np.array([prev.shape[1], prev.shape[0]], np.float32)
        if span.min() < self.min_span:
            return None
        s = similarity_scale(m)
        if not (1.0 / self.max_zoom <= s <= self.max_zoom) or not np.isfinite(m).all():
            return None
        return m.astype(np.float64)
