"""``maskstream eval`` end to end on a tiny generated VOC folder with a seeded random checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint, save_checkpoint
from core.model import ModelMeta
from stream.cli.main import main
from tests.conftest import seeded_model

SIX = ["gradcam", "gradcam++", "layercam", "eigencam", "haycam", "haycam+"]
ALL = SIX + ["haycam+hr"]
SIZE = 64  # model input: tiny and fast; maps are 2x2 (4x4 for haycam+hr)
FAST = ["--bootstrap", "50", "--cam-step", "0.05", "--threads", "1", "--no-progress", "--figure-rows", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def draw_face(img: np.ndarray, box: tuple[int, int, int, int], masked: bool) -> None:
    x1, y1, x2, y2 = box
    cx, cy, ax, ay = (x1 + x2) // 2, (y1 + y2) // 2, (x2 - x1) // 2, (y2 - y1) // 2
    cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, (120, 160, 220), -1)  # skin
    for ex in (cx - ax // 2, cx + ax // 2):
        cv2.circle(img, (ex, cy - ay // 3), max(1, ax // 6), (40, 30, 30), -1)
    if masked:
        cv2.rectangle(img, (x1 + ax // 4, cy), (x2 - ax // 4, y2 - ay // 6), (230, 200, 140), -1)


def make_voc(root: Path, n: int = 20, seed: int = 0) -> Path:
    """``n`` 160x120 images, one or two drawn faces each, and annotations.json."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    ann = []
    for i in range(n):
        img = rng.integers(60, 120, size=(120, 160, 3), dtype=np.uint8)
        boxes = []
        for k in range(1 + i % 2):
            s = int(rng.integers(24, 34))
            x1 = 10 + 80 * k + int(rng.integers(0, 20))
            y1 = int(rng.integers(10, 120 - s - 10))
            masked = bool((i + k) % 2)
            draw_face(img, (x1, y1, x1 + s, y1 + s), masked)
            boxes.append({"label": "with_mask" if masked else "without_mask", "xyxy": [x1, y1, x1 + s, y1 + s]})
        cv2.imwrite(str(root / "images" / f"img{i}.png"), img)
        ann.append({"file": f"images/img{i}.png", "width": 160, "height": 120, "boxes": boxes})
    (root / "annotations.json").write_text(json.dumps(ann))
    return root


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    m = seeded_model("mobilenet_v2")
    for mod in m.modules():  # random BN stats shrink activations to ~1e-7: use unit-ish ones
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_var.fill_(0.05)
    meta = ModelMeta("mobilenet_v2", ("with_mask", "without_mask"), input_size=SIZE)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "rand.pt", m, meta)


def check_schema(rep: dict, methods: list[str], n_crops: int) -> None:
    c = rep["classification"]
    assert set(c) >= {"accuracy", "balanced_accuracy", "n"}
    assert 0 <= c["accuracy"] <= 1 and 0 <= c["balanced_accuracy"] <= 1 and c["n"] == n_crops
    assert list(rep["localization"]) == methods
    for m, e in rep["localization"].items():
        assert set(e) >= {"iou", "dice", "corloc", "maxboxacc_v2", "iou_ci95", "threshold"}, m
        for k in ("iou", "dice", "corloc", "maxboxacc_v2", "threshold"):
            assert isinstance(e[k], float) and 0.0 <= e[k] <= 1.0, (m, k, e[k])
        lo, hi = e["iou_ci95"]
        assert lo <= e["iou"] <= hi
        assert e["dice"] >= e["iou"]  # Dice >= IoU for every box pair, so for the means
    assert sum(next(iter(v.values()))["n"] for v in rep["per_class"].values()) == n_crops


def test_eval_end_to_end_all_split(voc, ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", "--data", str(voc), "--checkpoint", str(ckpt), "--out", str(out), "--split", "all", *FAST])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    n = rep["setup"]["n_crops"]
    assert n >= 20 and rep["setup"]["n_images"] == 20
    check_schema(rep, ALL, n)
    assert all(not e["calibrated"] for e in rep["localization"].values())  # random checkpoint: defaults
    assert rep["localization"]["haycam+"]["threshold"] == 0.5
    md = (out / "report.md").read_text()
    assert "not calibrated" in md and "Tables 1–2" in md and "haycam+hr" in md and "with_mask" in md
    assert "Does the box follow the face's size?" in md and "(extent.png)" in md
    assert cv2.imread(str(out / "extent.png")).shape == (460, 760, 3)
    for m, e in rep["localization"].items():  # the face-share buckets partition the crops
        b = e["by_face_share"]
        assert sum(v["n"] for v in b.values()) == n
        assert sum(v["n"] * v["iou"] for v in b.values() if v["n"]) / n == pytest.approx(e["iou"]), m
    fig = cv2.imread(str(out / "figure.png"))
    assert fig is not None and fig.shape[1] == SIZE * (1 + len(ALL))
    assert rep["comparison"]["best_baseline"] in SIX[:5]
    import csv

    rows = list(csv.DictReader((out / "per_crop.csv").open()))
    assert len(rows) == n
    assert np.mean([float(r["haycam+:iou"]) for r in rows]) == pytest.approx(rep["localization"]["haycam+"]["iou"],
                                                                            abs=1e-4)
    # accuracy by face size: the buckets partition the crops and re-weight to the overall accuracy
    c = rep["classification"]
    sizes = c["by_face_size"]
    assert list(sizes) == ["0-16px", "16-32px", ">=32px"]
    assert sum(b["n"] for b in sizes.values()) == c["n"] == n
    assert sum(b["n"] * b["accuracy"] for b in sizes.values() if b["n"]) / n == pytest.approx(c["accuracy"])
    # errors.png: one 160-px tile per misclassified crop (8 per row), or no file when there is none
    wrong = sum(r["label"] != r["predicted"] for r in rows)
    assert wrong == round(n * (1 - c["accuracy"]))
    grid = cv2.imread(str(out / "errors.png"))
    if wrong:
        assert grid.shape == (160 * -(-min(wrong, 64) // 8), 160 * 8, 3)
        assert "errors.png" in md
    else:
        assert grid is None and "errors.png" not in md


def test_eval_known_maps_give_known_iou(voc, ckpt, tmp_path, monkeypatch):
    # Replace the maps by ones we control: each crop's map is 1 on its GT box (IoU 1 for
    # every method) except haycam+, whose map is the GT box shifted right by half its width
    # (IoU = (w/2 * h) / (3/2 * w * h) = 1/3 at any threshold, Dice = 1/2).
    import core.evaluation.eval as te

    real = te.compute_maps

    def fake(ckpt_, crops, methods, hr=None, *a, **k):
        ms = real(ckpt_, crops, methods, hr, *a, **k)
        maps = {}
        for key in ms.maps:
            mm = torch.zeros(len(crops), SIZE, SIZE)
            for i, (x1, y1, x2, y2) in enumerate(crops.boxes):
                x1, y1, x2, y2 = (int(round(v)) for v in (x1, y1, x2, y2))
                if key == "haycam+":
                    shift = (x2 - x1) // 2
                    x1, x2 = x1 + shift, x2 + shift
                mm[i, y1:y2, x1:x2] = 1.0
            maps[key] = mm
        return te.MapSet(ms.logits, maps)

    monkeypatch.setattr(te, "compute_maps", fake)
    # crop boxes are not integers in general: snap them so the painted map is exact
    real_make = te.make_crops
    seen: list = []

    def snapped(*a, **k):
        c = real_make(*a, **k)
        keep = [i for i, b in enumerate(c.boxes) if b[2] + (b[2] - b[0]) / 2 < SIZE - 1]  # shifted box fits
        c.boxes = np.round(c.boxes[keep])
        c.images, c.labels, c.files = [c.images[i] for i in keep], [c.labels[i] for i in keep], [c.files[i] for i in keep]
        seen.append(c.boxes)
        return c

    monkeypatch.setattr(te, "make_crops", snapped)
    out = tmp_path / "known"
    assert main(["eval", "--data", str(voc), "--checkpoint", str(ckpt), "--out", str(out), "--split", "all",
                 "--methods", "gradcam,haycam+,eigencam", *FAST]) == 0
    rep = json.loads((out / "report.json").read_text())
    loc = rep["localization"]
    for m in ("gradcam", "eigencam"):
        assert loc[m]["iou"] == pytest.approx(1.0) and loc[m]["dice"] == pytest.approx(1.0)
        assert loc[m]["corloc"] == 1.0 and loc[m]["maxboxacc_v2"] == pytest.approx(1.0)
    w = seen[0][:, 2] - seen[0][:, 0]
    s = np.floor(w / 2)  # integer shift, so odd widths give slightly more than 1/3
    assert len(w) >= 5
    assert loc["haycam+"]["iou"] == pytest.approx(float(np.mean((w - s) / (w + s))))
    assert loc["haycam+"]["dice"] == pytest.approx(float(np.mean((w - s) / w)))
    assert loc["haycam+"]["corloc"] == 0.0
    assert loc["haycam+"]["maxboxacc_v2"] == pytest.approx(1 / 3)  # correct only at delta = 0.3
    # extent by face share: right-sized boxes score area ratio 1 in every bucket, the shifted ones too
    # (same size, wrong place), so the ratio separates extent from position
    share = (w * (seen[0][:, 3] - seen[0][:, 1])) / SIZE**2
    n_ref = np.bincount(np.digitize(share, [0.15, 0.25]), minlength=3)
    for m in ("gradcam", "haycam+"):
        b = loc[m]["by_face_share"]
        assert [e["n"] for e in b.values()] == n_ref.tolist()
        for e in b.values():
            if e["n"]:
                assert e["area_ratio"] == pytest.approx(1.0)
                assert e["iou"] == pytest.approx(1.0) if m == "gradcam" else e["iou"] < 0.5
    cmp_ = rep["comparison"]
    assert cmp_["best_maskstream"] == "haycam+" and cmp_["iou_diff"] < 0 and cmp_["excludes_zero"]


def test_calibrate_writes_checkpoint_copy(voc, ckpt, tmp_path):
    import core.evaluation.eval as te

    out = tmp_path / "cal"
    assert main(["eval", "--data", str(voc), "--checkpoint", str(ckpt), "--out", str(out), "--calibrate", *FAST]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["setup"]["split"] == "test"
    cal_path = Path(rep["setup"]["calibrated_checkpoint"])
    assert cal_path == out / "rand.calibrated.pt" and cal_path.is_file()
    cal = load_checkpoint(cal_path)
    assert set(cal.thresholds) == set(ALL)
    for m, e in cal.thresholds.items():
        assert e["calibrated"] is True and e["mode"] in ("fraction", "otsu") and 0 <= e["val_iou"] <= 1
        assert rep["localization"][m]["calibrated"] is True
        assert rep["localization"][m]["threshold"] == pytest.approx(e["value"])
    assert "options" in cal.thresholds["haycam+hr"] and len(cal.thresholds["haycam+hr"]["candidates"]) == len(te.HR_CANDIDATES)
    src = load_checkpoint(ckpt)
    for k, v in src.model.state_dict().items():
        torch.testing.assert_close(cal.model.state_dict()[k], v)  # same model, only thresholds change
    check_schema(rep, ALL, rep["setup"]["n_crops"])
    assert rep["comparison"]["chosen_on"] == "val"
    prior = rep["reference"]["fixed_box_prior"]
    assert 0 <= prior["iou"] <= 1 and len(prior["box"]) == 4


@pytest.mark.parametrize("case", ["no-dir", "no-annotations", "bad-ckpt", "missing-ckpt", "bad-method", "calib-all",
                                  "bad-box-resolution"])
def test_user_errors_exit_2_naming_the_path(case, voc, ckpt, tmp_path, capsys):
    args = {"--data": str(voc), "--checkpoint": str(ckpt), "--out": str(tmp_path / "o")}
    extra: list[str] = []
    expect = ""
    if case == "no-dir":
        args["--data"] = expect = str(tmp_path / "nope")
    elif case == "no-annotations":
        (tmp_path / "empty").mkdir()
        args["--data"] = str(tmp_path / "empty")
        expect = str(tmp_path / "empty" / "annotations.json")
    elif case == "bad-ckpt":
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a torch file")
        args["--checkpoint"] = expect = str(bad)
    elif case == "missing-ckpt":
        args["--checkpoint"] = expect = str(tmp_path / "missing.pt")
    elif case == "bad-method":
        extra, expect = ["--methods", "gradcam,cam"], "'cam'"
    elif case == "bad-box-resolution":
        extra, expect = ["--box-resolution", "0"], "--box-resolution: box_resolution must be a positive integer or 'full'"
    else:
        extra, expect = ["--calibrate", "--split", "all"], "--calibrate needs --split test"
    rc = main(["eval", *[x for kv in args.items() for x in kv], *extra, *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("maskstream: error:") and expect in err and "Traceback" not in err


def test_help_documents_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--data", "--methods", "--checkpoint", "--out", "--seed", "--split", "--calibrate", "--box-resolution"):
        assert opt in text


def test_eval_ablation_runs_on_val_and_refuses_bad_input(voc, ckpt, tmp_path, capsys):
    from tools.eval_ablation import FRACTIONS, cli

    out = tmp_path / "abl.json"
    assert cli(["--data", str(voc), "--checkpoint", str(ckpt), "--limit", "4", "--out", str(out), "--threads", "1"]) == 0
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert {f"haycam+ f={f}" for f in FRACTIONS} | {"eigencam", "gradcam", "haycam+ flipped"} <= set(rows)
    for r in rows.values():
        assert 0.0 <= r["val_iou"] <= 1.0 and 0.0 <= r["peak_in_box"] <= 1.0
    capsys.readouterr()
    assert cli(["--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
