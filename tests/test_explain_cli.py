"""``maskstream explain``: outputs and user errors (exit 2, message names the culprit, no traceback)."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from core.checkpoint import save_checkpoint
from core.model import ModelMeta
from stream.cli.main import main
from tests.conftest import ROOT, seeded_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    p = tmp_path_factory.mktemp("ck") / "rand.pt"
    save_checkpoint(p, seeded_model("mobilenet_v2", seed=11), ModelMeta("mobilenet_v2", ("with_mask", "without_mask")))
    return p


@pytest.fixture()
def image(tmp_path):
    img = np.full((120, 160, 3), 40, np.uint8)
    cv2.circle(img, (100, 60), 25, (200, 180, 160), -1)
    p = tmp_path / "face.png"
    cv2.imwrite(str(p), img)
    return p


def test_json_overlay_and_maps(ckpt, image, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", str(image), "--checkpoint", str(ckpt), "--out", str(out), "--json", "--save-maps"])
    assert rc == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["label"] in ("with_mask", "without_mask")
    assert abs(sum(rec["probs"].values()) - 1) < 1e-5 and rec["score"] == max(rec["probs"].values())
    assert 1 <= rec["n_components"] <= 49
    overlay = cv2.imread(rec["overlay"])
    assert overlay.shape == (120, 160, 3)
    raw, full = (np.load(p) for p in rec["maps"])
    assert raw.shape == (7, 7) and full.shape == (120, 160)
    assert full.min() >= 0 and full.max() <= 1
    for b in rec["boxes"]:  # boxes are in image pixels
        x1, y1, x2, y2 = b["xyxy"]
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120


@pytest.mark.parametrize("args, message", [
    (["--method", "bogus"], "valid names: gradcam, gradcam++, layercam, eigencam, haycam, haycam+"),
    (["--threshold", "median:3"], "--threshold 'median:3'"),
    (["--target", "hat"], "--target 'hat': not a class of this model"),
])
def test_bad_options(ckpt, image, capsys, args, message):
    assert main(["explain", str(image), "--checkpoint", str(ckpt), *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_files(ckpt, image, tmp_path, capsys):
    assert main(["explain", "missing.png", "--checkpoint", str(ckpt)]) == 2
    assert "image missing.png: no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    assert main(["explain", str(junk), "--checkpoint", str(ckpt)]) == 2
    assert f"image {junk}: cannot be decoded" in capsys.readouterr().err
    assert main(["explain", str(image), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: no such file" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_console_error_has_no_traceback(image):
    r = subprocess.run([sys.executable, "-m", "stream.cli.main", "explain", str(image), "--method", "bogus"],
                       cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert r.returncode == 2
    assert r.stderr.startswith("maskstream: error: unknown map method 'bogus'") and "Traceback" not in r.stderr


def test_calibrated_threshold_from_the_checkpoint_is_used(image, tmp_path, capsys):
    # `eval --calibrate` stores entries with bookkeeping keys beside mode/value/min_area
    p = tmp_path / "calibrated.pt"
    entry = {"mode": "fraction", "value": 0.35, "min_area": 0.0, "val_iou": 0.5, "n_val": 312, "calibrated": True,
             "select": "score", "target": "pred", "crop_seed": 0}
    save_checkpoint(p, seeded_model("mobilenet_v2", seed=11), ModelMeta("mobilenet_v2", ("with_mask", "without_mask")),
                    thresholds={"haycam+": entry})
    assert main(["explain", str(image), "--checkpoint", str(p), "--out", str(tmp_path / "o"), "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["threshold"] == {"mode": "fraction", "value": 0.35, "min_area": 0.0}
    # --threshold overrides it; a method without an entry gets the default
    assert main(["explain", str(image), "--checkpoint", str(p), "--out", str(tmp_path / "o"), "--json",
                 "--threshold", "fraction:0.7"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["threshold"]["value"] == 0.7
    assert main(["explain", str(image), "--checkpoint", str(p), "--out", str(tmp_path / "o"), "--json",
                 "--method", "gradcam"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["threshold"]["value"] == 0.5
    # a malformed entry is a user error naming the checkpoint and the key
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, seeded_model("mobilenet_v2", seed=11), ModelMeta("mobilenet_v2", ("with_mask", "without_mask")),
                    thresholds={"haycam+": {"mode": "fraction"}})
    assert main(["explain", str(image), "--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.pt" in err and "thresholds['haycam+']" in err
