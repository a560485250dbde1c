"""A ByteTrack-style face tracker on numpy and scipy (one instance per video source).

The scheme is ByteTrack's (Zhang et al., 2022): every track's box is predicted by a constant-velocity
Kalman filter; confident detections are matched first (Hungarian assignment), the tracks left over are
then matched to the weak detections, and only confident detections that matched nothing start new
tracks. Two things differ, both for faces:

* **The cost is not IoU alone.** A 10-px face that moves 12 px between two frames (a low frame rate,
  or a detector that runs every k frames) has IoU 0 with its own previous box. The cost mixes
  ``1 - IoU`` with the distance between the predicted and the detected centre divided by the face's
  size (``sqrt(w * h)``, as maskcam normalises its corner distance), and a pair is allowed only when
  that normalised distance is under a gate (wider for a track with no velocity estimate yet, and
  growing with the frames since the track was last seen) and the two sizes differ by less than a
  factor. So overlap helps when there is some, and distance decides when there is none.
* **Frames without a detection run.** ``step(None)`` only predicts: the detector may run every k
  frames and the tracker carries the boxes in between. Missing counts only on frames where the
  detector ran, but a track's age is in frames, so ``max_lost_frames`` means the same at any k.

Tracks start *tentative*; ``min_hits`` matched detections confirm them and only then do they get a
public id (1, 2, 3... in order of confirmation, never reused), so a one-frame false detection never
becomes a person. A confirmed track that is not found is *lost*: it is kept (and predicted) for
``max_lost_frames`` frames and takes its id back when found again; after that it *ends*. Three rules keep
a lost face's id through an occlusion (a board sliding over a face first shows a shrinking part of it, which
gives the filter a false drift and a shrinking size):

* a lost track keeps its size (its size velocity is zeroed, as ByteTrack zeroes a lost track's height
  velocity);
* a lost track may also match at its last observed box, moved with the camera (OC-SORT's
  observation-centric recovery), not only at its drifting prediction;
* tracks found at the last detector run choose first, lost ones take what is left (DeepSORT's matching
  cascade), so a lost track's wide gate never takes a face that a track in view explains.

And a track in view whose prediction matched nothing may, with the lost ones, match what is left at its last
observed box (``anchor_in_view``): one detector box of the wrong size gives the filter a size velocity that,
over a 5-frame detector interval, carries the prediction past the size gate (tune clips: ID switches 14 -> 12).

At a cut to another scene (``step(cut=True)``, from the camera-motion model) every track ends: a lost track's
gate grows while it is lost, and across a cut it would otherwise take a new face at its old place.

A face found on a frame is reported at the detector's box (what faces mode reports without tracking);
between detector runs and for carried faces the box is the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

_INF = 1e6


@dataclass(frozen=True)
class TrackerParams:
    """Tracker settings.

    Attributes:
        high_score: detections at or above this are "confident" (first match, may start tracks).
        low_score: detections in [low_score, high_score) are "weak" (second match only); below: ignored.
        new_track_score: a confident detection matching no track starts one only at or above this.
        gate: a pair is allowed when the centre distance is at most ``gate`` face sizes (sqrt(w*h)).
        gate_new: the same for a track seen once (no velocity yet).
        gate_growth: the gate grows by this fraction per frame since the track was last matched
            (the prediction's uncertainty), up to ``max_gate_growth x gate``.
        max_gate_growth: the most the gate grows while a track is lost (a factor; 3 before, a tie on the tune clips).
        max_size_ratio: a pair is allowed when the sizes differ by at most this factor.
        min_hits: matched detections before a track is confirmed (and gets an id).
        max_lost_frames: a lost track is kept this many frames, then it ends.
        velocity_noise: Kalman process noise of the velocity, per frame, as a fraction of the face size.
        anchor_in_view: a track in view whose prediction matched no confident detection may still match one
            at its last observed box (moved with the camera), after every track in view had its turn: one
            detector box of the wrong size gives the filter a size velocity that shrinks or grows the
            prediction past the size gate within one detector interval.
    """

    high_score: float = 0.5
    low_score: float = 0.4
    new_track_score: float = 0.6
    gate: float = 1.5
    gate_new: float = 2.5
    gate_growth: float = 0.1
    max_gate_growth: float = 1.5
    max_size_ratio: float = 2.0
    min_hits: int = 2
    max_lost_frames: int = 30
    velocity_noise: float = 0.05
    anchor_in_view: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_score <= self.high_score <= 1.0:
            raise ValueError(f"need 0 <= low_score <= high_score <= 1, got {self.low_score}, {self.high_score}")
        if not self.high_score <= self.new_track_score <= 1.0:
            raise ValueError(f"new_track_score must be in [high_score, 1], got {self.new_track_score}")
        if self.gate <= 0 or self.gate_new <= 0 or self.gate_growth < 0 or self.max_gate_growth < 1:
            raise ValueError("gate and gate_new must be > 0, gate_growth >= 0 and max_gate_growth >= 1")
        if self.max_size_ratio < 1:
            raise ValueError(f"max_size_ratio must be >= 1, got {self.max_size_ratio}")
        if self.min_hits < 1 or self.max_lost_frames < 0:
            raise ValueError("min_hits must be >= 1 and max_lost_frames >= 0")
        if self.velocity_noise <= 0:
            raise ValueError(f"velocity_noise must be > 0, got {self.velocity_noise}")


@dataclass(frozen=True)
class TrackStep:
    """The tracker's answer for one frame.

    Attributes:
        ids: (m,) int64 public ids of the confirmed tracks in view (matched now, or carried between
            detector runs), in ascending id order.
        boxes: (m, 4) float32 x1, y1, x2, y2: the matched detection's box, else the prediction.
        scores: (m,) float32 the matched detection's score, else the track's last one.
        det_index: (m,) int64 index into this frame's detections, -1 when the box is predicted.
        confirmed: ids confirmed on this frame (people who appeared).
        ended: ids whose track ended on this frame (lost longer than ``max_lost_frames``), with the
            frame number they were last matched on: ``{id: last_frame}``.
    """

    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    det_index: np.ndarray
    confirmed: tuple[int, ...] = ()
    ended: dict[int, int] = field(default_factory=dict)


# ---------------------------------------------------------------- Kalman filter on (cx, cy, w, h)

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)
_POS = 1.0 / 20.0  # position noise as a fraction of the size (ByteTrack's std_weight_position)


def _to_cxcywh(b: np.ndarray) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, max(b[2] - b[0], 1e-3), max(b[3] - b[1], 1e-3)])


class _Track:
    __slots__ = ("mean", "cov", "score", "hits", "public_id", "last_match", "visible", "vel_noise", "anchor",
                 "held_until")

    def __init__(self, box: np.ndarray, score: float, frame: int, vel_noise: float) -> None:
        z = _to_cxcywh(box)
        w, h = z[2], z[3]
        self.vel_noise = vel_noise
        self.anchor = z.copy()  # the last observed (cx, cy, w, h), moved only with the camera
        self.mean = np.concatenate([z, np.zeros(4)])
        # the velocity of a new face is unknown up to about its size per frame: the 2nd detection sets it
        std = np.array([2 * _POS * w, 2 * _POS * h, 2 * _POS * w, 2 * _POS * h, w, h, 0.1 * w, 0.1 * h])
        self.cov = np.diag(std**2)
        self.score = float(score)
        self.hits = 1
        self.public_id = -1
        self.last_match = frame
        self.visible = True  # matched at the last detector run (confirmed tracks in view are output)
        self.held_until = -1  # a full-cost pass vouched for it: cheap-pass misses do not hide it until then

    def predict(self) -> None:
        if not self.visible:  # lost: keep its size (as ByteTrack keeps a lost track's height)
            self.mean[6:8] = 0.0
        w, h = max(self.mean[2], 1e-3), max(self.mean[3], 1e-3)
        vn = self.vel_noise
        q = np.array([_POS * w, _POS * h, _POS * w, _POS * h, vn * w, vn * h, vn * w, vn * h]) ** 2
        self.mean = _F @ self.mean
        self.mean[2:4] = np.maximum(self.mean[2:4], 1e-3)
        self.cov = _F @ self.cov @ _F.T + np.diag(q)

    def update(self, box: np.ndarray, score: float, frame: int) -> None:
        z = _to_cxcywh(box)
        w, h = z[2], z[3]
        r = np.diag(np.array([_POS * w, _POS * h, _POS * w, _POS * h]) ** 2)
        s = _H @ self.cov @ _H.T + r
        k = np.linalg.solve(s, _H @ self.cov).T  # (8, 4) gain
        self.mean = self.mean + k @ (z - _H @ self.mean)
        self.cov = (np.eye(8) - k @ _H) @ self.cov
        self.score = float(score)
        self.hits += 1
        self.last_match = frame
        self.visible = True
        self.anchor = z.copy()

    def warp(self, m: np.ndarray) -> None:
        """Move the prediction and the last observation with the camera: ``m`` (2, 3) maps the previous
        frame's pixels to this frame's (a similarity). Centres are mapped, sizes scaled by its scale, the
        velocities turned and scaled with it, and the covariance with them (as BoT-SORT's camera-motion
        compensation transforms the Kalman state)."""
        lin, t = m[:, :2], m[:, 2]
        s = float(np.sqrt(abs(np.linalg.det(lin))))
        if np.allclose(lin, np.eye(2)):
            self.mean[0:2] += t
            self.anchor[0:2] += t
            return
        sz = s * np.eye(2)
        tr = np.zeros((8, 8))
        for k, blk in enumerate((lin, sz, lin, sz)):
            tr[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = blk
        self.mean = tr @ self.mean
        self.mean[0:2] += t
        self.mean[2:4] = np.maximum(self.mean[2:4], 1e-3)
        self.cov = tr @ self.cov @ tr.T
        self.anchor[0:2] = lin @ self.anchor[0:2] + t
        self.anchor[2:4] = np.maximum(self.anchor[2:4] * s, 1e-3)

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.mean[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)

    @property
    def anchor_box(self) -> np.ndarray:
        cx, cy, w, h = self.anchor
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


def camera_matrix(shift) -> np.ndarray | None:
    """The camera's motion as a (2, 3) float64 map: ``shift`` is None, (dx, dy) or already (2, 3)."""
    if shift is None:
        return None
    a = np.asarray(shift, np.float64)
    if a.shape == (2,):
        return np.array([[1.0, 0.0, a[0]], [0.0, 1.0, a[1]]])
    if a.shape != (2, 3):
        raise ValueError(f"shift must be (dx, dy) or a (2, 3) matrix, got shape {a.shape}")
    return a if np.isfinite(a).all() else None


# ---------------------------------------------------------------- association


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair. a: (n, 4), b: (m, 4) x1, y1, x2, y2 -> (n, m) in [0, 1]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def association_cost(
    tracks: np.ndarray, dets: np.ndarray, gates: np.ndarray, max_size_ratio: float
) -> np.ndarray:
    """Cost of assigning each detection to each (predicted) track box; pairs outside the gates cost inf.

    ``cost = (1 - IoU) / 2 + min(d / gate, 1) / 2`` where ``d`` is the centre distance divided by the
    mean face size ``(sqrt(w_t h_t) + sqrt(w_d h_d)) / 2``. A pair is allowed when ``d <= gate`` (or the
    boxes overlap with IoU >= 0.3) and the sizes differ by at most ``max_size_ratio``.

    Args:
        tracks: (n, 4) predicted track boxes x1, y1, x2, y2.
        dets: (m, 4) detection boxes.
        gates: (n,) the gate of each track, in face sizes.
        max_size_ratio: largest allowed ratio of the two sizes.

    Returns:
        (n, m) float64, ``inf`` where the pair is not allowed.
    """
    tracks = np.asarray(tracks, np.float64).reshape(-1, 4)
    dets = np.asarray(dets, np.float64).reshape(-1, 4)
    if len(tracks) == 0 or len(dets) == 0:
        return np.zeros((len(tracks), len(dets)))
    iou = iou_matrix(tracks, dets)
    st = np.sqrt(np.maximum((tracks[:, 2] - tracks[:, 0]) * (tracks[:, 3] - tracks[:, 1]), 1e-6))
    sd = np.sqrt(np.maximum((dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]), 1e-6))
    ct = (tracks[:, :2] + tracks[:, 2:]) / 2
    cd = (dets[:, :2] + dets[:, 2:]) / 2
    size = (st[:, None] + sd[None, :]) / 2
    d = np.linalg.norm(ct[:, None, :] - cd[None, :, :], axis=2) / size
    ratio = np.maximum(st[:, None] / sd[None, :], sd[None, :] / st[:, None])
    g = np.asarray(gates, np.float64).reshape(-1, 1)
    ok = ((d <= g) | (iou >= 0.3)) & (ratio <= max_size_ratio)
    cost = 0.5 * (1.0 - iou) + 0.5 * np.minimum(d / g, 1.0)
    return np.where(ok, cost, np.inf)


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost matching that never uses a forbidden (inf) pair."""
    if cost.size == 0:
        return []
    c = np.where(np.isfinite(cost), cost, _INF)
    rows, cols = linear_sum_assignment(c)
    return [(int(r), int(k)) for r, k in zip(rows, cols) if np.isfinite(cost[r, k])]


def _looked_at(tracks: list[_Track], region: tuple[float, float, float, float] | None, frame: int) -> set[int]:
    """ids (``id()``) of the tracks held on ``frame`` whose predicted centre lies in ``region`` (None: anywhere)."""
    out = set()
    for t in tracks:
        if t.held_until < frame:
            continue
        cx, cy = t.mean[0], t.mean[1]
        if region is None or (region[0] <= cx < region[2] and region[1] <= cy < region[3]):
            out.add(id(t))
    return out


# ---------------------------------------------------------------- the tracker


class FaceTracker:
    """Tracks face boxes across the frames of ONE source.

    Call :meth:`step` once per frame, in order: with the frame's detections when the detector ran
    on it, with ``None`` when it did not (the boxes are then predicted).

    Args:
        params: :class:`TrackerParams`.
    """

    def __init__(self, params: TrackerParams | None = None) -> None:
        self.params = params or TrackerParams()
        self.tracks: list[_Track] = []
        self.frame = -1
        self.next_id = 1

    def _gates(self, tracks: list[_Track]) -> np.ndarray:
        p = self.params
        out = []
        for t in tracks:
            base = p.gate_new if t.hits < 2 else p.gate
            out.append(base * min(p.max_gate_growth, 1.0 + p.gate_growth * max(0, self.frame - t.last_match - 1)))
        return np.array(out)

    def _cost(self, tracks: list[_Track], dets: np.ndarray, gate_scale: float, anchored: bool = False) -> np.ndarray:
        """Association cost of ``tracks`` to ``dets`` (n, 4). A lost track (not found at the last detector
        run) may also match at its last observed box moved with the camera (OC-SORT's observation-centric
        recovery): a partly hidden face gives the filter a wrong velocity, so its prediction drifts away
        while the face itself stays where it was last seen."""
        gates = self._gates(tracks) * gate_scale
        cost = association_cost(np.array([t.box for t in tracks]), dets, gates, self.params.max_size_ratio)
        lost = np.array([anchored or not t.visible for t in tracks], bool)
        if lost.any() and len(dets):
            anchored = association_cost(
                np.array([t.anchor_box for t in tracks])[lost], dets, gates[lost], self.params.max_size_ratio
            )
            cost[lost] = np.minimum(cost[lost], anchored)
        return cost

    def step(
        self,
        detections: np.ndarray | None,
        shift: tuple[float, float] | np.ndarray | None = None,
        *,
        seeded: np.ndarray | None = None,
        seed_region: tuple[float, float, float, float] | None = None,
        hold_frames: int = 0,
        cut: bool = False,
    ) -> TrackStep:
        """Advance one frame.

        Args:
            detections: (n, 5) x1, y1, x2, y2, score in frame pixels (n may be 0: the detector ran
                and found nothing), or None when the detector did not run on this frame.
            shift: the camera's motion since the previous frame: a (2, 3) similarity in frame pixels
                (``core.track.motion.CameraMotion``: a pan and a zoom) or a translation (dx, dy): every
                prediction (centre and size) and every lost track's last observation is moved by it.
            seeded: (n,) bool, True for detections a full-cost pass found (``core.track.crowd_schedule``):
                they count as confident; one that matches no track starts a track, confirmed at once when
                it scores ``new_track_score`` or more, else tentative until its next match (the next pass
                finding it again); and a track they match (or start) is held: it stays alive, and in view,
                for ``hold_frames`` frames even when the cheap detector misses it (None: no seeds).
            seed_region: (x1, y1, x2, y2), the part of the frame the full-cost pass looked at (None: all
                of it when ``seeded`` is given): a held track whose predicted centre lies there and that
                no seed matched loses its hold.
            hold_frames: see ``seeded``.
            cut: this frame starts a new scene (``core.track.motion.CameraMotion.last_cut``): a face's place in
                the old view says nothing about the new one, so no track may match across it by position or
                motion, and with no appearance model nothing else could match it: every track ends here (its
                person has left, last seen on its last matched frame) and the new scene's faces start new ones.

        Returns:
            :class:`TrackStep` for this frame.
        """
        p = self.params
        self.frame += 1
        ended: dict[int, int] = {}
        if cut:  # without an appearance model nothing can tell an old face in the new view: all tracks end
            ended = {t.public_id: t.last_match for t in self.tracks if t.public_id >= 0}
            self.tracks = []
        warp = camera_matrix(shift)
        for t in self.tracks:
            t.predict()
            if warp is not None:
                t.warp(warp)
        n_det = 0 if detections is None else len(detections)
        det_of: dict[int, int] = {}  # id(track) -> detection index
        confirmed: list[int] = []
        d = np.zeros((0, 5), np.float32)
        if detections is not None:
            d = np.asarray(detections, np.float32).reshape(-1, 5) if n_det else np.zeros((0, 5), np.float32)
            finite = np.isfinite(d).all(1) & (d[:, 2] >= d[:, 0]) & (d[:, 3] >= d[:, 1])
            seed = np.zeros(len(d), bool) if seeded is None else np.asarray(seeded, bool).reshape(len(d))
            high = np.flatnonzero(finite & ((d[:, 4] >= p.high_score) | seed))
            low = np.flatnonzero(finite & ~seed & (d[:, 4] >= p.low_score) & (d[:, 4] < p.high_score))
            looked = _looked_at(self.tracks, seed_region, self.frame) if seeded is not None else set()
            # first match: confident detections against the tracks found at the last detector run, then
            # what is left of them against the lost tracks (a matching cascade by age, as DeepSORT's: a track
            # lost for a while has a wide gate and must not take a face that a track in view explains)
            pool = list(self.tracks)
            matched_t: set[int] = set()
            matched_d: set[int] = set()
            for level in (True, False):
                rows = [i for i, t in enumerate(pool) if t.visible == level]
                if not level and p.anchor_in_view:  # tracks in view left over: at their last observed box too
                    rows += [i for i, t in enumerate(pool) if t.visible and i not in matched_t]
                cols = np.array([k for k in high if int(k) not in matched_d], np.int64)
                if not rows or not len(cols):
                    continue
                cost = self._cost([pool[i] for i in rows], d[cols, :4], 1.0, anchored=not level)
                for r, k in _assign(cost):
                    det_of[id(pool[rows[r]])] = int(cols[k])
                    matched_t.add(rows[r])
                    matched_d.add(int(cols[k]))
            # second match: leftover confirmed tracks that were in view at the last detector run against weak
            # detections (stricter gate); as in ByteTrack a lost track comes back only on a confident detection:
            # weak boxes are mostly not faces, and a lost track's grown gate would keep it alive on them
            rest = [t for i, t in enumerate(pool) if i not in matched_t and t.public_id >= 0 and t.visible]
            if rest and len(low):
                cost2 = self._cost(rest, d[low, :4], 0.7)
                for r, k in _assign(cost2):
                    det_of[id(rest[r])] = int(low[k])
            for t in self.tracks:
                k = det_of.get(id(t))
                if id(t) in looked:
                    t.held_until = self.frame - 1  # the full-cost pass looked here: only a seed renews the hold
                if k is not None:
                    t.update(d[k, :4], float(d[k, 4]), self.frame)
                    if seed[k]:
                        t.held_until = self.frame + hold_frames
                    if t.public_id < 0 and (t.hits >= p.min_hits or (seed[k] and d[k, 4] >= p.new_track_score)):
                        t.public_id = self.next_id
                        self.next_id += 1
                        confirmed.append(t.public_id)
                else:
                    t.visible = t.public_id >= 0 and self.frame <= t.held_until
            # tentative tracks die at their first miss (unless held); confirmed ones are kept while lost
            self.tracks = [t for t in self.tracks if t.public_id >= 0 or id(t) in det_of or t.held_until >= self.frame]
            for k in high:
                if int(k) not in matched_d and (d[k, 4] >= p.new_track_score or seed[k]):
                    t = _Track(d[k, :4], float(d[k, 4]), self.frame, p.velocity_noise)
                    if seed[k]:
                        t.held_until = self.frame + hold_frames
                    if p.min_hits <= 1 or (seed[k] and d[k, 4] >= p.new_track_score):
                        t.public_id = self.next_id
                        self.next_id += 1
                        confirmed.append(t.public_id)
                    self.tracks.append(t)
                    det_of[id(t)] = int(k)
        keep = []
        for t in self.tracks:
            # a hold delays the count: a track shown (held) on this frame never ends on the next one
            if t.public_id >= 0 and self.frame - max(t.last_match, t.held_until) > p.max_lost_frames:
                ended[t.public_id] = t.last_match
            else:
                keep.append(t)
        self.tracks = keep
        shown = sorted((t for t in self.tracks if t.public_id >= 0 and t.visible), key=lambda t: t.public_id)
        return TrackStep(
            ids=np.array([t.public_id for t in shown], np.int64),
            # a face found on this frame is reported at the detector's box (as without tracking), else predicted
            boxes=np.array([d[det_of[id(t)], :4] if id(t) in det_of else t.box for t in shown], np.float32)
            .reshape(-1, 4),
            scores=np.array([t.score for t in shown], np.float32),
            det_index=np.array([det_of.get(id(t), -1) for t in shown], np.int64),
            confirmed=tuple(confirmed),
            ended=ended,
        )

    def finish(self) -> dict[int, int]:
        """End every confirmed track (the source ended): ``{id: last matched frame}``."""
        out = {t.public_id: t.last_match for t in self.tracks if t.public_id >= 0}
        self.tracks = []
        return out
