"""The result type: torch-free, validated where built, and a faithful row view."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from stream.results import Detection, Detections


def test_result_module_imports_no_torch() -> None:
    code = "import sys, stream.results; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_rows_round_trip_with_tracks_and_data() -> None:
    d = Detections(np.array([[1, 2, 3, 4], [5, 6, 9, 9]]), [1, 0], [0.75, 0.5], ("with_mask", "without_mask"),
                   map_score=[0.25, np.nan])
    assert d.labels == ["without_mask", "with_mask"]
    t = d.with_tracks([7, -1], person=np.array(["undecided", "with_mask"]))
    rows = list(t)
    assert rows[0] == Detection((1.0, 2.0, 3.0, 4.0), "without_mask", 1, 0.75, 0.25, 7, {"person": "undecided"})
    assert rows[1].track_id is None and rows[1].map_score is None
    back = Detections.from_list(rows[:1], d.class_names)
    assert back.tracker_id.tolist() == [7] and back.data["person"].tolist() == ["undecided"]
    assert len(Detections.empty(d.class_names)) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"xyxy": [[3, 2, 1, 4]], "class_id": [0], "confidence": [1.0]}, "x2 >= x1"),
        ({"xyxy": [[0, 0, 1, 1]], "class_id": [0, 1], "confidence": [1.0]}, "class_id has 2 rows for 1 boxes"),
        ({"xyxy": [[0, 0, 1, 1]], "class_id": [2], "confidence": [1.0], "class_names": ("a", "b")}, "out of range"),
        ({"xyxy": [[0, 0, 1, 1]], "class_id": [0], "confidence": [1.0], "data": {"k": [1, 2]}}, "data['k']"),
    ],
)
def test_bad_detections_are_refused_with_the_field_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Detections(**kwargs)
