"""tools.screen_detectors: faces found per score and boxes on no face, on a hand-made clip, with the benchmark's
matching (don't-care faces neither counted nor charged; unsampled frames not counted); the CLI end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tools.screen_detectors as screen  # noqa: E402
from tests._detect_fakes import BlobDetector  # noqa: E402
from tools.trackbench.detscreen import ScreenCount  # noqa: E402
from tools.trackbench.mot import GroundTruth  # noqa: E402
from tools.trackbench.scene import GtRow  # noqa: E402

A = (10.0, 10.0, 50.0, 50.0)  # an evaluated face
B = (100.0, 10.0, 140.0, 50.0)  # a don't-care face (conf 0)


def _gt() -> GroundTruth:
    rows = [GtRow(1, 1, A, 1, 1.0, "with_mask"), GtRow(1, 2, B, 0, 1.0, "mask_weared_incorrect"),
            GtRow(2, 1, A, 1, 1.0, "with_mask"), GtRow(3, 1, A, 1, 1.0, "with_mask")]
    return GroundTruth.from_rows("hand", 25.0, 3, rows)


def test_screen_counts_faces_per_score_and_boxes_on_no_face():
    dets = {
        1: np.array([[*A, 0.7], [*B, 0.9], [60, 60, 80, 80, 0.5], [150, 60, 170, 80, 0.3]], np.float32),
        2: np.array([[12, 12, 52, 52, 0.5]], np.float32),  # IoU 1444/1756 = 0.82 with A
        # frame 3 is not screened: its face is not counted; frame 9 is past the clip's end
        9: np.array([[*A, 0.9]], np.float32),
    }
    c = ScreenCount((0.6, 0.4), false_score=0.4)
    c.add_clip(_gt(), dets, iou=0.3)
    # faces: A on frames 1 and 2 (B is don't-care); at 0.6 only frame 1's box finds A, at 0.4 both do;
    # false: the 0.5 box on nothing (the 0.9 one on B is excused, the 0.3 one is below 0.4)
    assert (c.frames, c.faces, c.found, c.false) == (2, 2, [1, 2], 1)
    assert c.row() == {"frames": 2, "faces": 2, "recall@0.6": 0.5, "recall@0.4": 1.0, "false_per_frame": 0.5}
    # two boxes on one face: one match, the other is a box on no face
    c2 = ScreenCount((0.4,), 0.4)
    c2.add_clip(_gt(), {2: np.array([[*A, 0.9], [11, 11, 51, 51, 0.8]], np.float32)}, iou=0.3)
    assert (c2.faces, c2.found, c2.false) == (1, [1], 1)


def test_split_specs_keeps_a_specs_options_together():
    assert screen._split_specs("retinaface,retinaface:input_size=800,nms_iou=0.3,retinaface:input_size=960,yuface") == [
        "retinaface", "retinaface:input_size=800,nms_iou=0.3", "retinaface:input_size=960", "yuface"]
    assert screen._split_specs("retinaface;retinaface:input_size=800,nms_iou=0.3") == [
        "retinaface", "retinaface:input_size=800,nms_iou=0.3"]
    assert screen._split_specs("retinaface:weights=C:/m.onnx,input_size=800") == [
        "retinaface:weights=C:/m.onnx,input_size=800"]


class _LossyBlobs(BlobDetector):
    """The blob fake on a video frame: pixels over 127 count as white (the codec moves 255 a little)."""

    def _raw(self, images):
        return super()._raw([np.where(im > 127, 255, 0).astype(np.uint8) for im in images])


def _clip(folder: Path) -> None:
    """Three 160x96 frames, one white 40 px face at A, annotated; MOT files as make_trackbench writes them."""
    (folder / "gt").mkdir(parents=True)
    (folder / "seqinfo.ini").write_text(
        "[Sequence]\nname = c\nimDir = clip.mp4\nframeRate = 25\nseqLength = 3\nimWidth = 160\nimHeight = 96\n"
        "imExt = .mp4\n", encoding="utf-8")
    (folder / "gt" / "gt.txt").write_text("".join(f"{f},1,10,10,40,40,1,1,1.0\n" for f in (1, 2, 3)), encoding="utf-8")
    (folder / "gt" / "labels.csv").write_text("frame,id,label\n" + "".join(f"{f},1,with_mask\n" for f in (1, 2, 3)),
                                              encoding="utf-8")
    wr = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 96))
    for _ in range(3):
        im = np.zeros((96, 160, 3), np.uint8)
        im[10:50, 10:50] = 255
        wr.write(im)
    wr.release()


@pytest.mark.timeout(60)
def test_cli_screens_a_clip_set_and_refuses_bad_input(tmp_path, monkeypatch, capsys):
    _clip(tmp_path / "set" / "00_c")
    made = []

    def fake(name, **opts):
        if name != "blobs":
            raise ValueError(f"unknown face detector {name!r}")
        made.append(opts)
        return _LossyBlobs(**opts)

    monkeypatch.setattr(screen, "create_detector", fake)
    out = tmp_path / "rows.json"
    rc = screen.main(["--bench", str(tmp_path / "set"), "--detectors", "blobs", "--every", "2", "--json", str(out)])
    assert rc == 0
    assert made == [{"score_threshold": 0.4}]  # the lowest of --scores and --false-score
    import json

    (row,) = json.loads(out.read_text())
    # frames 1 and 3 screened; the fake finds the face on both
    assert (row["frames"], row["faces"], row["recall@0.6"], row["false_per_frame"]) == (2, 2, 1.0, 0.0)
    assert "| set | blobs | 2 | 2 | 1.000 | 1.000 | 0.000 |" in capsys.readouterr().out
    assert screen.main(["--bench", str(tmp_path / "nothing"), "--detectors", "blobs"]) == 2
    assert "--bench" in capsys.readouterr().err
    assert screen.main(["--bench", str(tmp_path / "set"), "--detectors", "nosuch"]) == 2
    assert "--detectors: unknown face detector 'nosuch'" in capsys.readouterr().err
    assert screen.main(["--bench", str(tmp_path / "set"), "--every", "0"]) == 2
    assert screen.main(["--bench", str(tmp_path / "set"), "--scores", "0.6,high"]) == 2
    assert "--scores" in capsys.readouterr().err
    (tmp_path / "set" / "00_c" / "gt" / "labels.csv").unlink()
    assert screen.main(["--bench", str(tmp_path / "set"), "--detectors", "blobs"]) == 2
    assert "labels.csv" in capsys.readouterr().err
