"""tools/crowd_paired.py: label errors of two runs on the same annotated faces, on a generated folder."""

from __future__ import annotations

import json

from tools.crowd_paired import main


def _events(path, dets):
    lines = [{"type": "frame", "name": "a.png"}]
    lines += [{"type": "detection", "name": "a.png", "box": b, "score": s, "label": lab} for b, s, lab in dets]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_paired_errors_on_faces_both_found_and_only_one_found(tmp_path, capsys):
    data = tmp_path / "voc"
    data.mkdir()
    (data / "annotations.json").write_text(json.dumps([{"file": "images/a.png", "width": 200, "height": 100, "boxes": [
        {"label": "with_mask", "xyxy": [10, 10, 40, 40]},      # 30 px: found by both
        {"label": "without_mask", "xyxy": [100, 40, 110, 50]},  # 10 px: found by the other only
        {"label": "with_mask", "xyxy": [150, 10, 170, 30]},     # 20 px: found by nobody
    ]}]))
    base = _events(tmp_path / "events-default.jsonl", [([11, 11, 41, 41], 0.9, "with_mask")])
    other = _events(tmp_path / "events-crowd.jsonl", [([10, 10, 40, 40], 0.9, "without_mask"),
                                                      ([100, 40, 110, 50], 0.5, "without_mask"),
                                                      ([0, 80, 10, 90], 0.4, "with_mask")])  # a false detection
    also = _events(tmp_path / "events-old.jsonl", [([10, 10, 40, 40], 0.9, "with_mask")])  # missed the 10 px face
    assert main(["--data", str(data), "--split", "all", "--base", str(base), "--other", str(other),
                 "--also", str(also)]) == 0
    out = capsys.readouterr().out
    assert "by both events-default.jsonl and events-crowd.jsonl: 1; by events-crowd.jsonl only: 1" in out
    assert "| events-default | 0/1 (0/0/0) | - |" in out
    assert "| events-crowd | 1/1 (0/1/0) | 0/1 (0/0/0) |" in out  # 30 px is 16-32 px (sqrt of the area < 32)
    assert "| events-old | 0/1 (0/0/0) | - |" in out


def test_a_missing_events_file_is_a_user_error(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path), "--base", str(tmp_path / "nope.jsonl"), "--other", str(tmp_path / "x.jsonl")])
    assert e.value.code == 2 and "nope.jsonl: no such events file" in capsys.readouterr().err
