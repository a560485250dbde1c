"""The tracking benchmark's clip generator: exact ground truth on hand-computed camera moves, occluders and
splices; the seeded recipes on a generated photo set; the MOT files round trip; the real set (skips without
../shared)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from core.data.voc import VocBox, VocImage
from tools.trackbench.mot import GroundTruth, read_gt
from tools.trackbench.recipes import RECIPES, build_specs
from tools.trackbench.scene import ClipSpec, Face, Occluder, Shot, Splice, render_clip

RED, BLUE = (0, 0, 255), (255, 0, 0)


def photo_with_face() -> np.ndarray:
    img = np.full((200, 200, 3), 128, np.uint8)
    img[50:90, 50:90] = RED
    img[120:160, 120:160] = BLUE
    return img


FACES = (Face((50.0, 50.0, 90.0, 90.0), "with_mask"), Face((120.0, 120.0, 160.0, 160.0), "without_mask"))


def render(spec: ClipSpec, photos: dict) -> list:
    return list(render_clip(spec, photos.__getitem__))


def test_static_camera_maps_boxes_exactly():
    # window 200 px wide over a 160x90 output: scale 0.8, window height 112.5 centred at y 100 -> origin y 43.75
    shot = Shot("p.png", FACES, 0.2, ((0.0, 100.0, 100.0, 200.0),))
    (frame, rows), *_ = render(ClipSpec("c", 10.0, (160, 90), (shot,)), {"p.png": photo_with_face()})
    r1 = next(r for r in rows if r.id == 1)
    assert r1.box == pytest.approx((40.0, 5.0, 72.0, 37.0)) and r1.visibility == 1.0 and r1.conf == 1
    assert tuple(frame[21, 56]) == RED
    r2 = next(r for r in rows if r.id == 2)  # y 120-160 -> 61-93: clipped at 90
    assert r2.box == pytest.approx((96.0, 61.0, 128.0, 90.0))
    assert r2.visibility == pytest.approx(29 / 32, abs=1e-4) and r2.label == "without_mask"


def test_pan_moves_faces_out_of_the_frame():
    # window 100 px wide (scale 1.6) moves from x-centre 60 to 150 over 1 s at 10 fps
    shot = Shot("p.png", FACES, 1.0, ((0.0, 60.0, 100.0, 100.0), (1.0, 150.0, 100.0, 100.0)))
    frames = render(ClipSpec("c", 10.0, (160, 90), (shot,)), {"p.png": photo_with_face()})
    assert len(frames) == 10 and [r.frame for r in frames[3][1]] == [4] * len(frames[3][1])
    first_ids = {r.id for r in frames[0][1]}
    last_ids = {r.id for r in frames[-1][1]}
    assert 1 in first_ids and 1 not in last_ids  # face 1 (x 50-90) left on the left
    # frame 6 (t = 0.5): centre 105, origin (55, 100 - 28.125): face 1 spans x (50 - 55) * 1.6 .. (90 - 55) * 1.6
    # = -8 .. 56 and y (50 - 71.875) * 1.6 .. (90 - 71.875) * 1.6 = -35 .. 29, clipped at 0
    r = next(r for r in frames[5][1] if r.id == 1)
    assert r.box == pytest.approx((0.0, 0.0, 56.0, 29.0))
    assert r.visibility == pytest.approx((56 / 64) * (29 / 64), abs=1e-4)


def test_occluder_hides_a_face_and_lowers_visibility():
    occ = Occluder(0.35, 0.35, 0.25, 0.0, 1.0, 0.0, 1.0)  # a board over x 36-76 of the 160 px frame
    shot = Shot("p.png", FACES, 0.1, ((0.0, 100.0, 100.0, 200.0),), (occ,))
    (frame, rows), = render(ClipSpec("c", 10.0, (160, 90), (shot,)), {"p.png": photo_with_face()})
    r1 = next(r for r in rows if r.id == 1)  # face x 40-72 lies under the board
    assert r1.visibility == 0.0
    assert tuple(frame[21, 56]) != RED


def test_splice_changes_the_label_for_its_interval_only():
    donor = np.full((100, 100, 3), 0, np.uint8)
    donor[30:70, 30:70] = (0, 255, 0)
    sp = Splice(0, "d.png", (30.0, 30.0, 70.0, 70.0), "without_mask", 0.2, 0.5)
    shot = Shot("p.png", FACES, 0.7, ((0.0, 100.0, 100.0, 200.0),), (), (sp,))
    frames = render(ClipSpec("c", 10.0, (160, 90), (shot,)), {"p.png": photo_with_face(), "d.png": donor})
    labels = [next(r.label for r in rows if r.id == 1) for _, rows in frames]
    assert labels == ["with_mask"] * 2 + ["without_mask"] * 3 + ["with_mask"] * 2
    assert tuple(frames[3][0][21, 56]) == (0, 255, 0) and tuple(frames[0][0][21, 56]) == RED


def test_cut_gives_new_identities():
    a = Shot("p.png", FACES, 0.2, ((0.0, 100.0, 100.0, 200.0),))
    frames = render(ClipSpec("c", 10.0, (160, 90), (a, a)), {"p.png": photo_with_face()})
    assert [sorted(r.id for r in rows) for _, rows in frames] == [[1, 2], [1, 2], [3, 4], [3, 4]]


def synthetic_photos(n: int = 9, seed: int = 3) -> tuple[list[VocImage], dict]:
    rng = np.random.default_rng(seed)
    images, pixels = [], {}
    for i in range(n):
        img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        boxes = []
        for k, label in enumerate(("with_mask", "without_mask", "with_mask")):
            s = int(rng.integers(18, 30))
            x, y = 30 + 90 * k, int(rng.integers(60, 150))
            img[y : y + s, x : x + s] = (40 * k, 200, 90) if label == "with_mask" else (30, 60, 220)
            boxes.append(VocBox(label, (float(x), float(y), float(x + s), float(y + s))))
        f = f"images/p{i}.png"
        images.append(VocImage(f, 320, 240, tuple(boxes)))
        pixels[f] = img
    return images, pixels


def test_recipes_are_seeded_and_use_each_photo_once():
    images, _ = synthetic_photos()
    a = build_specs(images, 6, seed=1, size=(192, 108))
    assert build_specs(images, 6, seed=1, size=(192, 108)) == a
    assert build_specs(images, 6, seed=2, size=(192, 108)) != a
    assert [s.recipe for s in a] == list(RECIPES)
    photos = [sh.photo for s in a for sh in s.shots]
    assert len(photos) == len(set(photos)) == 7  # the cut uses two
    assert {s.fps for s in a} == {25.0, 5.0}
    change = a[RECIPES.index("change")].shots[0].splices[0]
    assert change.donor_label != a[RECIPES.index("change")].shots[0].faces[change.face].label
    with pytest.raises(ValueError, match="too few qualifying photos"):
        build_specs(images[:3], 6)


def test_written_clip_round_trips_and_scores_perfect_against_itself(tmp_path):
    pytest.importorskip("trackeval", reason="trackeval (the 'bench' extra) is not installed")
    from tools.make_trackbench import write_clip
    from tools.trackbench.events import Predictions
    from tools.trackbench.score import score_clip, summary

    images, pixels = synthetic_photos()
    for f, img in pixels.items():
        (tmp_path / "data" / f).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / f), img)
    spec = build_specs(images, 6, seed=0, size=(192, 108))[RECIPES.index("change")]
    entry = write_clip(spec, tmp_path / "data", tmp_path / "bench")
    folder = tmp_path / "bench" / spec.name
    cap = cv2.VideoCapture(str(folder / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == spec.n_frames == 200 == entry["frames"]
    cap.release()
    gt = read_gt(folder)
    rows = [r for _, rs in render_clip(spec, lambda f: cv2.imread(str(tmp_path / "data" / f))) for r in rs]
    ref = GroundTruth.from_rows(spec.name, spec.fps, spec.n_frames, rows)
    assert gt.fps == 25.0 and gt.n_frames == 200
    np.testing.assert_array_equal(gt.frame, ref.frame)
    np.testing.assert_array_equal(gt.id, ref.id)
    np.testing.assert_allclose(gt.xyxy, ref.xyxy, atol=0.011)
    assert list(gt.label) == list(ref.label) and len(set(gt.label[gt.id == spec.shots[0].splices[0].face + 1])) == 2
    perfect = Predictions.from_lists(gt.frame, gt.xyxy, gt.label, gt.id, gt.label)
    s = summary(score_clip(gt, perfect))
    assert s["IDF1"] == pytest.approx(1.0) and s["flips_per_track"] == 0
    assert s["person_accuracy"] == 1.0 and s["segments"] >= 3  # the spliced face has 3 segments


def test_real_benchmark_uses_only_the_test_side(shared_data):
    from core.data.splits import voc_split
    from core.data.voc import read_duplicate_groups, read_voc

    root = shared_data / "facemask_voc"
    parts = voc_split(read_voc(root), read_duplicate_groups(root))
    specs = build_specs(parts["test"], 12, seed=0)
    test_files = {im.file for im in parts["test"]}
    used = {sh.photo for s in specs for sh in s.shots} | {sp.donor_file for s in specs for sh in s.shots
                                                          for sp in sh.splices}
    assert len(specs) == 12 and used <= test_files
    assert sum(s.n_frames for s in specs) == 2 * (3 * 150 + 200 + 200 + 40)  # 6 recipes twice


def test_scorer_command_end_to_end_on_events_made_from_the_truth(tmp_path, capsys):
    pytest.importorskip("trackeval", reason="trackeval (the 'bench' extra) is not installed")
    import json

    from tools.make_trackbench import write_clip
    from tools.score_trackbench import main as score_main

    images, pixels = synthetic_photos()
    for f, img in pixels.items():
        (tmp_path / "data" / f).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / f), img)
    spec = build_specs(images, 6, seed=0, size=(192, 108))[RECIPES.index("pan")]
    write_clip(spec, tmp_path / "data", tmp_path / "bench")
    gt = read_gt(tmp_path / "bench" / spec.name)
    (tmp_path / "bench" / "events").mkdir()
    with open(tmp_path / "bench" / "events" / f"{spec.name}.jsonl", "w") as fh:
        for f, box, lab, conf in zip(gt.frame, gt.xyxy, gt.label, gt.conf):
            if not conf:
                continue
            fh.write(json.dumps({"type": "detection", "source": "clip", "frame_index": int(f) - 1, "label": lab,
                                 "score": 0.9, "box": [float(v) for v in box], "person_id": None,
                                 "person_label": None}) + "\n")  # faces mode reports the face box itself
    out = tmp_path / "score.json"
    assert score_main(["--bench", str(tmp_path / "bench"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "baseline: per-frame detections linked by IoU" in text and "tracked" not in json.loads(out.read_text())["rows"]
    s = json.loads(out.read_text())["rows"]["baseline"]["pooled"]
    assert s["IDF1"] == pytest.approx(1.0) and s["frame_accuracy"] == 1.0 and s["count_error"] == 0
    # the same boxes read as crops (--pred-margin 0.15, the old events) shrink to 1/1.3 of a face: IoU 0.59,
    # still a match at 0.5 here; at 0.3 per side (IoU 0.39) nothing matches
    assert score_main(["--bench", str(tmp_path / "bench"), "--pred-margin", "0.3", "--json", str(out)]) == 0
    s = json.loads(out.read_text())["rows"]["baseline"]["pooled"]
    assert s["recall"] == 0
    assert score_main(["--bench", str(tmp_path / "nothing")]) == 2


def test_unannotated_faces_become_dont_care_and_change_nothing_else(tmp_path):
    pytest.importorskip("trackeval", reason="trackeval (the 'bench' extra) is not installed")
    from tools.trackbench.events import Predictions
    from tools.trackbench.score import score_clip, summary

    images, pixels = synthetic_photos()
    plain = build_specs(images, 6, seed=0, size=(192, 108))
    pan = plain[RECIPES.index("pan")]
    photo = pan.shots[0].photo
    y = pan.shots[0].faces[1].box[1]  # at the annotated faces' height (the pan shows it), right of them all
    extra_box = (272.0, y, 300.0, y + 28.0)
    pixels[photo][int(y):int(y) + 28, 272:300] = (200, 200, 40)
    marked = build_specs(images, 6, seed=0, size=(192, 108), unannotated={photo: [extra_box]})
    # same photos, camera paths, splices; only the pan's photo gains a face, listed after the annotated ones
    strip = [dataclasses.replace(sp, shots=tuple(dataclasses.replace(sh, faces=sh.faces[:len(p.faces)])
                                                 for sh, p in zip(sp.shots, a.shots))) for sp, a in zip(marked, plain)]
    assert strip == plain
    faces = marked[RECIPES.index("pan")].shots[0].faces
    assert faces[:-1] == pan.shots[0].faces and faces[-1] == Face(extra_box, "unannotated")

    def truth(spec):
        rows = [r for _, rs in render(spec, pixels) for r in rs]
        return GroundTruth.from_rows(spec.name, spec.fps, spec.n_frames, rows)

    old, new = truth(pan), truth(marked[RECIPES.index("pan")])
    extra_id = len(faces)
    assert extra_id in set(new.id) and set(new.conf[new.id == extra_id]) == {0}
    assert set(new.label[new.id == extra_id]) == {"unannotated"}
    # a tracker that follows every real face, the unannotated one too (as person 99)
    on_extra = new.id == extra_id
    pred = Predictions.from_lists(new.frame, new.xyxy, np.where(on_extra, "with_mask", new.label),
                                  np.where(on_extra, 99, new.id), np.where(on_extra, "with_mask", new.label))
    before = summary(score_clip(old, pred))  # every unannotated face a false one
    after = summary(score_clip(new, pred))
    people = len(set(old.id[old.conf == 1]))
    assert before["pred_people"] == people + 1 and before["count_error"] == pytest.approx(1 / people)
    assert before["IDF1"] < 1.0
    assert after["pred_people"] == after["gt_people"] == people and after["count_error"] == 0
    assert after["IDF1"] == pytest.approx(1.0)


def test_unannotated_file_errors_name_the_file(tmp_path):
    from tools.trackbench.recipes import load_unannotated

    with pytest.raises(ValueError, match="nope.json: cannot read"):
        load_unannotated(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"faces": {"images/a.jpg": [{"box": [10, 10, 5, 20]}]}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json: images/a.jpg: box \[10.0, 10.0, 5.0, 20.0\]"):
        load_unannotated(bad)
    good = tmp_path / "good.json"
    good.write_text('{"about": "x", "faces": {"images/a.jpg": [{"box": [1, 2, 3, 4], "candidate": 7}]}}')
    assert load_unannotated(good) == {"images/a.jpg": [(1.0, 2.0, 3.0, 4.0)]}


def test_shipped_unannotated_faces_lie_on_bench_photos_away_from_annotated_faces(shared_data):
    from core.data.voc import read_voc
    from tools.audit_unannotated import bench_photos
    from tools.trackbench.linker import iou_matrix
    from tools.trackbench.recipes import load_unannotated

    root = shared_data / "facemask_voc"
    extra = load_unannotated()
    by_file = {im.file: im for im in read_voc(root)}
    used = bench_photos(root)
    assert sum(len(v) for v in extra.values()) == 30 and set(extra) <= set(used)
    for f, boxes in extra.items():
        im = by_file[f]
        b = np.array(boxes)
        assert (b[:, :2] >= -1).all() and (b[:, 2] <= im.width + 1).all() and (b[:, 3] <= im.height + 1).all()
        ann = np.array([x.xyxy for x in im.boxes])
        assert iou_matrix(b, ann).max() < 0.3, f
