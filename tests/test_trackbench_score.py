"""The tracking benchmark's scorer on hand-made ground truth and predictions, every number hand-computed.

IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN) over the best one-to-one id mapping; MOTA = 1 - (FN + FP + IDSW) / GT;
HOTA (IoU 1 everywhere) = sqrt(DetA * AssA).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("trackeval", reason="trackeval (the 'bench' extra) is not installed")

from tools.trackbench.events import Predictions, read_events, shrink  # noqa: E402
from tools.trackbench.linker import iou_matrix, link_by_iou  # noqa: E402
from tools.trackbench.mot import GroundTruth  # noqa: E402
from tools.trackbench.scene import GtRow  # noqa: E402
from tools.trackbench.score import ScoreOptions, pool, score_clip, summary  # noqa: E402

A = (10.0, 10.0, 50.0, 50.0)
B = (200.0, 10.0, 240.0, 50.0)
W, U = "with_mask", "without_mask"


def gt_of(tracks: dict[int, tuple], n: int, fps: float = 25.0, labels=None, conf=None, vis=None) -> GroundTruth:
    """tracks: id -> box (static), present in every frame 1..n; labels: id -> list of n labels."""
    rows = []
    for f in range(1, n + 1):
        for i, box in tracks.items():
            lab = labels[i][f - 1] if labels else W
            rows.append(GtRow(f, i, box, (conf or {}).get(i, 1), (vis or {}).get(i, 1.0), lab))
    return GroundTruth.from_rows("t", fps, n, rows)


def pred_of(items: list[tuple]) -> Predictions:
    """items: (frame, box, label, person_id, person_label)."""
    f, b, lab, pid, pl = zip(*items) if items else ((), (), (), (), ())
    return Predictions.from_lists(list(f), list(b), list(lab), list(pid), list(pl))


def test_perfect_tracking_scores_one():
    gt = gt_of({1: A, 2: B}, 10)
    pred = pred_of([(f, box, W, pid, W) for f in range(1, 11) for box, pid in ((A, 7), (B, 8))])
    s = summary(score_clip(gt, pred))
    assert s["IDF1"] == pytest.approx(1.0) and s["MOTA"] == pytest.approx(1.0) and s["HOTA"] == pytest.approx(1.0)
    assert s["IDSW"] == 0 and s["gt_people"] == 2 and s["pred_people"] == 2 and s["count_error"] == 0
    assert s["flips_per_track"] == 0 and s["frame_accuracy"] == 1.0


def test_one_id_switch():
    # one person, 10 frames; the tracker calls it 1 for frames 1-5 and 2 for 6-10
    gt = gt_of({1: A}, 10)
    pred = pred_of([(f, A, W, 1 if f <= 5 else 2, W) for f in range(1, 11)])
    s = summary(score_clip(gt, pred))
    assert s["IDF1"] == pytest.approx(2 * 5 / (2 * 5 + 5 + 5))  # 0.5: best mapping keeps 5 of 10
    assert s["MOTA"] == pytest.approx(1 - 1 / 10)  # one switch
    assert s["IDSW"] == 1
    assert s["HOTA"] == pytest.approx(math.sqrt(1.0 * 0.5))  # DetA 1, AssA 5 / (5 + 5)
    assert s["pred_people"] == 2 and s["count_error"] == pytest.approx(1.0)


def test_missed_person():
    gt = gt_of({1: A, 2: B}, 10)
    pred = pred_of([(f, A, W, 1, W) for f in range(1, 11)])
    s = summary(score_clip(gt, pred))
    assert s["IDF1"] == pytest.approx(2 * 10 / (2 * 10 + 0 + 10))  # 2/3
    assert s["MOTA"] == pytest.approx(1 - 10 / 20)
    assert s["recall"] == pytest.approx(0.5)
    assert s["gt_people"] == 2 and s["pred_people"] == 1 and s["count_error"] == pytest.approx(0.5)
    # the missed person is eligible (40 px), its one 10-frame segment is shorter than 1 s at 25 fps
    assert s["short_segments"] == 2 and s["segments"] == 0


def test_flipped_label_and_time_to_decision():
    # 50 frames (2 s): undecided 1-5, with_mask 6-30, a wrong flip to without_mask 31-35, back 36-50;
    # the per-frame classifier is wrong on 10 frames
    gt = gt_of({1: A}, 50)
    plabel = ["undecided"] * 5 + [W] * 25 + [U] * 5 + [W] * 15
    flabel = [U] * 10 + [W] * 40
    pred = pred_of([(f, A, flabel[f - 1], 3, plabel[f - 1]) for f in range(1, 51)])
    s = summary(score_clip(gt, pred))
    assert s["changes_per_track"] == 2 and s["flips_per_track"] == 1  # back to the truth is not a flip
    assert s["segments"] == 1 and s["person_accuracy"] == 1.0  # decided with_mask at the end
    assert s["frame_accuracy"] == pytest.approx(40 / 50)
    assert s["decision_s_median"] == pytest.approx(5 / 25)


def test_label_change_followed_is_correct_not_a_flip():
    # with_mask for 2 s then without_mask for 2 s; the decision follows 10 frames late
    n = 100
    gt = gt_of({1: A}, n, labels={1: [W] * 50 + [U] * 50})
    pred = pred_of([(f, A, W if f <= 50 else U, 1, W if f <= 60 else U) for f in range(1, n + 1)])
    s = summary(score_clip(gt, pred))
    assert s["segments"] == 2 and s["correct"] == 2 and s["person_accuracy"] == 1.0
    assert s["changes_per_track"] == 1 and s["flips_per_track"] == 0


def test_undecided_counts_as_wrong_and_missed_is_left_out():
    n = 100
    C = (300.0, 10.0, 340.0, 50.0)
    gt = gt_of({1: A, 2: B, 3: C}, n, labels={1: [W] * n, 2: [U] * n, 3: [U] * n})
    pred = pred_of([(f, A, W, 1, W) for f in range(1, n + 1)]  # 1 decided right
                   + [(f, B, U, 2, "undecided") for f in range(1, n + 1)])  # 2 never decided; 3 never found
    s = summary(score_clip(gt, pred))
    assert s["segments"] == 3 and s["undecided"] == 1 and s["missed"] == 1
    assert s["person_accuracy"] == pytest.approx(1 / 2)  # correct / (segments - missed)
    assert s["never_decided"] == 1 and s["decision_s_median"] == 0.0


def test_a_clip_without_people_has_undefined_tracking_metrics():
    gt = GroundTruth.from_rows("empty", 25.0, 5, [])
    s = summary(score_clip(gt, pred_of([(1, A, W, 1, W)])))
    assert math.isnan(s["IDF1"]) and math.isnan(s["person_accuracy"]) and s["pred_people"] == 1


def test_dont_care_regions_are_neither_hits_nor_false_positives():
    # person 2 wears the mask incorrectly (conf 0), person 3 is 8 px (below 10), person 4 is 30% visible
    tiny, half = (300.0, 10.0, 308.0, 18.0), (400.0, 10.0, 440.0, 50.0)
    gt = gt_of({1: A, 2: B, 3: tiny, 4: half}, 10, conf={2: 0}, vis={4: 0.3})
    pred = pred_of([(f, box, W, pid, W) for f in range(1, 11) for box, pid in ((A, 1), (B, 2), (tiny, 3))])
    s = summary(score_clip(gt, pred))
    assert s["IDF1"] == pytest.approx(1.0) and s["MOTA"] == pytest.approx(1.0)
    assert s["gt_people"] == 1 and s["pred_people"] == 1 and s["tracks"] == 1


def test_decision_px_makes_small_people_ineligible():
    small = (10.0, 10.0, 22.0, 22.0)  # 12 px: tracked and scored, but not a person-level decision
    gt = gt_of({1: small}, 50)
    pred = pred_of([(f, small, U, 1, U) for f in range(1, 51)])
    s = summary(score_clip(gt, pred))
    assert s["IDF1"] == pytest.approx(1.0) and s["segments"] == 0 and s["frames"] == 0
    s16 = summary(score_clip(gt, pred, ScoreOptions(decision_px=12.0)))
    assert s16["segments"] == 1 and s16["person_accuracy"] == 0.0


def test_pool_sums_counts_and_combines_tracking():
    gt = gt_of({1: A}, 10)
    perfect = score_clip(gt, pred_of([(f, A, W, 1, W) for f in range(1, 11)]))
    switched = score_clip(gt, pred_of([(f, A, W, 1 if f <= 5 else 2, W) for f in range(1, 11)]))
    s = summary(pool([perfect, switched]))
    assert s["IDF1"] == pytest.approx(2 * 15 / (2 * 15 + 5 + 5))  # IDTP 10 + 5, IDFP 0 + 5, IDFN 0 + 5
    assert s["MOTA"] == pytest.approx(1 - 1 / 20)
    assert s["gt_people"] == 2 and s["pred_people"] == 3 and s["count_error"] == pytest.approx(0.5)


def test_linker_links_overlapping_boxes_and_splits_on_a_gap():
    moving = [(f, (10.0 + 4 * f, 10.0, 50.0 + 4 * f, 50.0), W if f != 3 else U) for f in range(1, 7)]
    later = [(12, (34.0, 10.0, 74.0, 50.0), W)]  # 6 frames after the last: a new track
    other = [(f, B, U) for f in range(1, 4)]
    items = moving + later + other
    pred = Predictions.from_lists([i[0] for i in items], [i[1] for i in items], [i[2] for i in items])
    assert not pred.tracked
    linked = link_by_iou(pred, min_iou=0.3, max_gap=2)
    ids = linked.person_id
    assert len(set(ids[:6])) == 1 and ids[6] not in ids[:6] and len(set(ids[7:])) == 1
    assert len(set(ids)) == 3
    assert list(linked.person_label[:6]) == [W, W, W, W, W, W]  # running majority: the one U never wins
    assert list(linked.person_label[7:]) == [U, U, U]


def test_iou_and_margin_shrink():
    assert iou_matrix([A], [A])[0, 0] == pytest.approx(1.0)
    assert iou_matrix([A], [(30.0, 10.0, 70.0, 50.0)])[0, 0] == pytest.approx(20 * 40 / (2 * 1600 - 800))
    wide = (10.0 - 6, 10.0 - 6, 50.0 + 6, 50.0 + 6)  # A enlarged by 0.15 of 40 px per side
    np.testing.assert_allclose(shrink(np.array([wide]), 0.15)[0], A)


def test_read_events_schema(tmp_path):
    p = tmp_path / "e.jsonl"
    evs = [
        {"type": "frame", "source": "s", "frame_index": 0},
        {"type": "person", "event": "appeared", "source": "s", "person_id": 1, "frame_index": 0, "label": "undecided"},
        {"type": "detection", "source": "s", "frame_index": 0, "time": 0, "label": W, "score": 0.9,
         "box": [4, 4, 56, 56], "map_score": 1.0, "person_id": 1, "person_label": "undecided"},
        {"type": "detection", "source": "other", "frame_index": 0, "label": W, "box": [0, 0, 1, 1]},
        {"type": "detection", "source": "s", "frame_index": 1, "time": 0, "label": U, "score": 0.9,
         "box": [4, 4, 56, 56], "map_score": 1.0, "person_id": None, "person_label": None},
    ]
    p.write_text("\n".join(json.dumps(e) for e in evs) + "\n")
    pred = read_events(p, margin=0.15)
    assert list(pred.frame) == [1, 2] and list(pred.person_id) == [1, -1] and pred.tracked
    np.testing.assert_allclose(pred.xyxy[0], A)  # 52 px = 40 px * 1.3
    assert pred.person_events == {"appeared": 1} and list(pred.label) == [W, U]
    evs[2]["person_id"] = "cam-7"  # ids need not be integers
    p.write_text("\n".join(json.dumps(e) for e in evs) + "\n")
    assert read_events(p).person_id[0] >= 0
    np.testing.assert_allclose(read_events(p).xyxy[0], [4, 4, 56, 56])  # default: event boxes are face boxes
    p.write_text('{"type": "detection", "source": "s"}\n')
    with pytest.raises(ValueError, match="e.jsonl line 1"):
        read_events(p)


# ---------------------------------------------------------------- the loss breakdown


def test_breakdown_names_each_loss():
    """Hand-made clip, 30 frames at 25 fps: person 1 is split into ids 1 and 2 (frames 1-15 / 16-30); person 2 is
    found with a poor box on frames 1-10 (IoU 1/3 < 0.5) and well after; person 3 is never found; id 9 is a box
    on no face on frames 1-3; id 5 matches person 2 and is wrongly decided."""
    from tools.trackbench.breakdown import breakdown_clip

    C = (300.0, 10.0, 340.0, 50.0)
    poor = (B[0] + 20, B[1], B[2] + 20, B[3])  # half the width overlaps: IoU 20*40 / (2*1600 - 800) = 1/3
    gt = gt_of({1: A, 2: B, 3: C}, 30, labels={1: [W] * 30, 2: [U] * 30, 3: [W] * 30})
    items = [(f, A, W, 1 if f <= 15 else 2, W) for f in range(1, 31)]
    items += [(f, poor if f <= 10 else B, U, 5, W) for f in range(1, 31)]
    items += [(f, (600.0, 300.0, 640.0, 340.0), W, 9, "undecided") for f in range(1, 4)]
    b = breakdown_clip(gt, pred_of(items))
    c = b.counts
    assert c["gt_boxes"] == 90 and c["matched"] == 30 + 20
    assert c["missed_loc"] == 10 and c["missed_nobox"] == 30  # person 2's poor boxes; person 3
    assert c["false_loc"] == 10 and c["false_bg"] == 3
    assert c["gt_people"] == 3 and c["pred_people"] == 4  # ids 1, 2, 5, 9
    assert c["split_extra"] == 1 and c["false_ids"] == 1 and c["unseen_people"] == 1 and c["merged"] == 0
    assert c["short_ids"] == 1  # id 9: 3 frames
    # count: pred - true = false_ids + split_extra - unseen_people - merged
    assert c["pred_people"] - c["gt_people"] == c["false_ids"] + c["split_extra"] - c["unseen_people"] - c["merged"]
    outcome = {s["gt_id"]: s["outcome"] for s in b.segments}
    assert outcome == {1: "correct", 2: "wrong", 3: "missed"}
    assert next(s for s in b.segments if s["gt_id"] == 1)["pred_ids"] == [1, 2]
