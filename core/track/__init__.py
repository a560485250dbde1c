"""People, not frames: a face tracker and a per-person vote (pure numpy/scipy, no threads, no I/O).

* :class:`~core.track.tracker.FaceTracker`: ByteTrack's scheme (motion prediction, a first match on
  confident boxes, a second on weak ones, new tracks only from confident boxes) with a cost that does
  not rely on IoU alone: the centre distance normalised by the face size, so that small faces at a
  low frame rate, which do not overlap from one frame to the next, keep their identity.
* :class:`~core.track.vote.PersonVote`: a capped, weighted vote over a track's classifications with an
  explicit ``undecided`` state, hysteresis and a delayed change of label.
* :func:`~core.track.schedule.due_for_classification`: which tracked faces to classify again.
* :class:`~core.track.motion.CameraMotion`: the camera's pan and zoom between frames (a similarity), which
  moves every track's prediction before matching.
"""

from core.track.schedule import ScheduleParams, adapt_detect_every, detector_interval, due_for_classification
from core.track.tracker import FaceTracker, TrackerParams, TrackStep
from core.track.vote import UNDECIDED, PersonVote, VoteParams, VoteTransition

__all__ = [
    "UNDECIDED",
    "FaceTracker",
    "PersonVote",
    "ScheduleParams",
    "TrackStep",
    "TrackerParams",
    "VoteParams",
    "VoteTransition",
    "adapt_detect_every",
    "detector_interval",
    "due_for_classification",
]
