"""The ``people`` section of the run configuration: tracking, detect-less-track-more and the per-person vote.

Typed frozen dataclasses validated on load like the rest of ``stream.config``; every bad value is
refused with its dotted key (``people.vote.decide_margin must be ...``). The defaults are documented,
with how they were chosen, in ``configs/default.yaml`` and the README ("People, not frames").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.track import ScheduleParams, TrackerParams, VoteParams
from stream.crowd_config import CrowdConfig
from stream.errors import check as _check

# The defaults live in core's parameter classes; the config sections below take theirs (one source).
_T, _V = TrackerParams(), VoteParams()


def _unit(v: float) -> bool:
    return 0.0 <= v <= 1.0


@dataclass(frozen=True)
class TrackerConfig:
    """``people.tracker``: see :class:`core.track.TrackerParams` for the meaning of each key."""

    high_score: float = _T.high_score
    low_score: float = _T.low_score
    new_track_score: float = _T.new_track_score
    gate: float = _T.gate
    gate_new: float = _T.gate_new
    max_gate_growth: float = _T.max_gate_growth
    max_size_ratio: float = _T.max_size_ratio
    min_hits: int = _T.min_hits
    max_lost_frames: int = _T.max_lost_frames
    anchor_in_view: bool = _T.anchor_in_view

    def __post_init__(self) -> None:
        _check(_unit(self.high_score), "high_score", f"must be in [0, 1], got {self.high_score}")
        _check(
            _unit(self.low_score) and self.low_score <= self.high_score,
            "low_score",
            f"must be in [0, high_score ({self.high_score})], got {self.low_score}",
        )
        _check(
            self.high_score <= self.new_track_score <= 1.0,
            "new_track_score",
            f"must be in [high_score ({self.high_score}), 1], got {self.new_track_score}",
        )
        _check(0 < self.gate <= 20, "gate", f"must be in (0, 20] face sizes, got {self.gate}")
        _check(0 < self.gate_new <= 20, "gate_new", f"must be in (0, 20] face sizes, got {self.gate_new}")
        _check(
            1.0 <= self.max_gate_growth <= 10,
            "max_gate_growth",
            f"must be in [1, 10] (the gate's growth factor while lost), got {self.max_gate_growth}",
        )
        _check(1.0 <= self.max_size_ratio <= 10, "max_size_ratio", f"must be in [1, 10], got {self.max_size_ratio}")
        _check(1 <= self.min_hits <= 100, "min_hits", f"must be an int in [1, 100], got {self.min_hits}")
        _check(
            0 <= self.max_lost_frames <= 100_000,
            "max_lost_frames",
            f"must be an int in [0, 100000], got {self.max_lost_frames}",
        )

    def to_core(self) -> TrackerParams:
        return TrackerParams(**asdict(self))


@dataclass(frozen=True)
class VoteConfig:
    """``people.vote``: see :class:`core.track.VoteParams` for the meaning of each key."""

    min_confidence: float = _V.min_confidence
    full_confidence: float = _V.full_confidence
    small_face_px: float = _V.small_face_px
    small_face_weight: float = _V.small_face_weight
    decide_margin: float = _V.decide_margin
    min_votes: int = _V.min_votes
    change_margin: float = _V.change_margin
    change_delay_s: float = _V.change_delay_s
    cap: float = _V.cap

    def __post_init__(self) -> None:
        _check(_unit(self.min_confidence), "min_confidence", f"must be in [0, 1], got {self.min_confidence}")
        _check(
            self.min_confidence < self.full_confidence <= 1.0,
            "full_confidence",
            f"must be in (min_confidence ({self.min_confidence}), 1], got {self.full_confidence}",
        )
        _check(0 <= self.small_face_px <= 1000, "small_face_px", f"must be in [0, 1000], got {self.small_face_px}")
        _check(_unit(self.small_face_weight), "small_face_weight", f"must be in [0, 1], got {self.small_face_weight}")
        _check(0 < self.cap <= 1000, "cap", f"must be in (0, 1000], got {self.cap}")
        _check(
            0 < self.decide_margin <= self.cap,
            "decide_margin",
            f"must be in (0, cap ({self.cap})], got {self.decide_margin}",
        )
        _check(self.change_margin > 0, "change_margin", f"must be > 0, got {self.change_margin}")
        _check(
            self.decide_margin + self.change_margin > 2.0,
            "change_margin",
            f"plus decide_margin must exceed 2 (one vote moves a lead by up to 2), got {self.change_margin}",
        )
        _check(1 <= self.min_votes <= 10_000, "min_votes", f"must be an int in [1, 10000], got {self.min_votes}")
        _check(
            0 <= self.change_delay_s <= 3600, "change_delay_s", f"must be in [0, 3600] seconds, got {self.change_delay_s}"
        )

    def to_core(self) -> VoteParams:
        return VoteParams(**asdict(self))


@dataclass(frozen=True)
class PeopleConfig:
    """People, not frames.

    Attributes:
        enabled: track faces (faces mode) or map boxes (frame mode), vote per person, write person events.
        detect_every: faces mode: run the face detector every this many frames of a source (the
            tracker carries the boxes in between; it also runs while a new face awaits confirmation
            and while nobody is in view).
        detect_every_s: ...but never leave more than this much media time between two detector runs
            (low frame rates: at 5 fps the detector runs on every frame); scaled up while backing off.
        detect_every_max: back off up to this many frames while the worker is slower than the
            source's frame rate (equal to ``detect_every``: no back-off). Live sources only: files and
            folders are read at the worker's pace and never back off, so their people never depend on load.
        undecided_every: faces mode: classify undecided (or contested) people every this many frames.
        decided_every: faces mode: classify decided people every this many frames.
        max_classify_per_frame: classify at most this many faces per frame (0: no limit).
        camera_motion: measure the camera's pan between frames (phase correlation of small grayscale
            copies, about 1 ms at 720p) and move every prediction by it before matching.
        camera_zoom: with ``camera_motion``, also measure zoom (and roll): corners followed by optical flow
            and a RANSAC similarity fit (``core.track.motion.CameraMotion``), so boxes carried between
            detector runs follow their faces' position and size through a zoom.
        camera_cuts: with ``camera_motion``, tell a cut to another scene from a camera move (the previous frame,
            moved by the measured motion, no longer resembles this one) and end every track there: across a cut a
            lost face's grown gate would otherwise give its id to a new face at its old place. Tune clips (README,
            tracking benchmark): alone IDF1 0.780 -> 0.793 and 0.721 -> 0.759 but ID switches 14 -> 17 (new tracks
            after the cut split); with ``tracker.anchor_in_view`` 0.792 and 0.765 with 12 switches.
        tracker: the face tracker.
        vote: the per-person vote.
        crowd: faces mode: the schedule of the full-cost detector (``worker.crowd_detector_options``).
    """

    enabled: bool = True
    detect_every: int = 5
    detect_every_s: float = 0.2
    detect_every_max: int = 15
    undecided_every: int = 2
    decided_every: int = 10
    max_classify_per_frame: int = 0
    camera_motion: bool = True
    camera_zoom: bool = True
    camera_cuts: bool = True
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    vote: VoteConfig = field(default_factory=VoteConfig)
    crowd: CrowdConfig = field(default_factory=CrowdConfig)

    def __post_init__(self) -> None:
        _check(1 <= self.detect_every <= 1000, "detect_every", f"must be an int in [1, 1000], got {self.detect_every}")
        _check(0 < self.detect_every_s <= 3600, "detect_every_s", f"must be in (0, 3600] seconds, got {self.detect_every_s}")
        _check(
            self.detect_every <= self.detect_every_max <= 1000,
            "detect_every_max",
            f"must be an int in [detect_every ({self.detect_every}), 1000], got {self.detect_every_max}",
        )
        _check(
            1 <= self.undecided_every <= 1000,
            "undecided_every",
            f"must be an int in [1, 1000], got {self.undecided_every}",
        )
        _check(
            self.undecided_every <= self.decided_every <= 100_000,
            "decided_every",
            f"must be an int in [undecided_every ({self.undecided_every}), 100000], got {self.decided_every}",
        )
        _check(
            0 <= self.max_classify_per_frame <= 10_000,
            "max_classify_per_frame",
            f"must be an int >= 0 (0: no limit), got {self.max_classify_per_frame}",
        )

    def schedule(self) -> ScheduleParams:
        return ScheduleParams(self.undecided_every, self.decided_every, self.max_classify_per_frame)
