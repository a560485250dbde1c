"""haycam+hr as a first-class method: core.explain, the worker, the checkpoint's calibrated variant and
threshold, and what each backend can run (shift-and-stitch needs only a forward; the other variants
need the torch model, and the onnxruntime backend refuses them naming itself)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from core import explain  # noqa: E402
from core.backends import create_backend  # noqa: E402
from core.boxes import Threshold, boxes_from_maps  # noqa: E402
from core.cams import METHODS, MODEL_METHODS, build_model_method, method_names  # noqa: E402
from core.cams.haycam_hr import HiResConfig, HiResHayCAM  # noqa: E402
from core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from core.explain import explain_model_method  # noqa: E402
from core.grid_boxes import boxes_from_grid  # noqa: E402
from core.preprocess import images_to_input  # noqa: E402
from stream.config import ThresholdConfig, WorkerConfig  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.processor import Processor, resolve_method  # noqa: E402
from tests._stream_fakes import make_frame, save_seeded_checkpoint, torch_backend  # noqa: E402

SHIFT = {"variant": "shift", "variance_fraction": 0.5, "shifts": 2}


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    return save_seeded_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", input_size=64)


def test_registry_lists_model_methods_after_the_six():
    assert method_names() == (*METHODS, "haycam+hr") and "haycam+hr" in MODEL_METHODS


def test_explain_equals_the_hires_module(ckpt_path):
    """core.explain's haycam+hr is HiResHayCAM's map, normalised, upsampled and boxed like every method."""
    model = load_checkpoint(ckpt_path).model
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    res = explain(model, x, "haycam+hr", options=SHIFT)
    ref = HiResHayCAM(model, HiResConfig.from_dict(SHIFT))(x)
    assert res.raw_maps.shape == (3, 4, 4)  # 2x the 2x2 grid of a 64-px input
    torch.testing.assert_close(res.raw_maps, torch.where(ref.degenerate.view(-1, 1, 1), 0.0, ref.raw))
    assert res.maps.shape == (3, 64, 64) and float(res.maps.max()) == pytest.approx(1.0)
    assert torch.equal(res.labels, model(x)[0].argmax(1))


def test_model_method_boxes_come_from_the_grid_of_its_native_map(ckpt_path):
    """haycam+hr goes through the same ending as the six: boxes on the 8x grid of its native map (4x4 here,
    so a 32x32 grid, never finer than the 64-px input), ``full`` = boxes of the input-size maps, and
    ``full_maps=False`` makes no input-size map."""
    model = load_checkpoint(ckpt_path).model
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    spec = Threshold("fraction", 0.4)
    grid = explain(model, x, "haycam+hr", options=SHIFT, threshold=spec)
    full = explain(model, x, "haycam+hr", options=SHIFT, threshold=spec, box_resolution="full")
    assert grid.low_res_maps.shape == (3, 4, 4) and float(grid.low_res_maps.amax((1, 2)).min()) == pytest.approx(1.0)
    assert grid.boxes == boxes_from_grid(grid.low_res_maps, (64, 64), spec, 8, grid.degenerate)
    assert full.boxes == boxes_from_maps(full.maps, spec)
    torch.testing.assert_close(full.maps, grid.maps)
    runner = build_model_method("haycam+hr", model, SHIFT)
    low = explain_model_method(runner, x, model(x)[0], "haycam+hr", threshold=spec, full_maps=False)
    assert low.maps is None and low.boxes == grid.boxes
    torch.testing.assert_close(low.low_res_maps, grid.low_res_maps)
    # the grid factor stops at the input's pixels: a 4x4 map of a 64-px input gets at most 16x, so 32 == 16
    assert explain(model, x, "haycam+hr", options=SHIFT, threshold=spec, box_resolution=32).boxes == \
        explain(model, x, "haycam+hr", options=SHIFT, threshold=spec, box_resolution=16).boxes


def test_shift_runs_on_onnxruntime_and_other_variants_are_refused(ckpt_path, tmp_path):
    pytest.importorskip("onnxruntime")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ort = create_backend("onnxruntime", checkpoint=str(ckpt_path), device="cpu", cache_dir=str(tmp_path))
    ours = explain(ort, x, "haycam+hr", options=SHIFT)
    ref = explain(load_checkpoint(ckpt_path).model, x, "haycam+hr", options=SHIFT)
    torch.testing.assert_close(ours.maps, ref.maps, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"variant 'fuse' needs the torch model.*onnxruntime\[CPUExecutionProvider"):
        build_model_method("haycam+hr", ort, {"variant": "fuse"})


def _with_hr_threshold(src: Path, dst: Path, options: dict) -> Path:
    ck = load_checkpoint(src)
    entry = {"mode": "fraction", "value": 0.3, "min_area": 0.0, "calibrated": True, "options": options}
    return save_checkpoint(dst, ck.model, ck.meta, thresholds={"haycam+hr": entry})


def test_worker_takes_variant_and_threshold_from_the_checkpoint(ckpt_path, tmp_path):
    path = _with_hr_threshold(ckpt_path, tmp_path / "cal.pt", SHIFT)
    cfg = WorkerConfig(method="haycam+hr", checkpoint=str(path), threshold=ThresholdConfig(min_area=0.0))
    threshold, options = resolve_method(cfg)
    assert (threshold.mode, threshold.value) == ("fraction", 0.3) and options == SHIFT
    backend = torch_backend(path)
    frames = [make_frame("a", i, h=64, w=64) for i in range(2)]
    results = Processor(backend, cfg).process(frames)
    x = images_to_input([f.image for f in frames], backend.meta)
    ref = explain(backend.model, x, "haycam+hr", options=SHIFT, threshold=threshold)
    for r, m, boxes in zip(results, ref.low_res_maps, ref.boxes):
        # only the native 4x4 map crosses to the host, as for the single-layer methods
        assert r.heatmap.shape == (4, 4)
        np.testing.assert_array_equal(r.heatmap, (m * 255).round().clamp(0, 255).to(torch.uint8).numpy())
        assert len(r.detections) == len(boxes)
        assert r.detections.map_score.tolist() == pytest.approx([b.score for b in boxes], abs=1e-6)


def test_worker_refuses_a_variant_the_backend_cannot_run(ckpt_path, tmp_path):
    pytest.importorskip("onnxruntime")
    path = _with_hr_threshold(ckpt_path, tmp_path / "fuse.pt", {"variant": "fuse"})
    cfg = WorkerConfig(method="haycam+hr", checkpoint=str(path), backend="onnxruntime", device="cpu")
    ort = create_backend("onnxruntime", checkpoint=str(path), device="cpu", cache_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"^worker.method 'haycam\+hr': haycam\+hr variant 'fuse' needs the torch"):
        Processor(ort, cfg)


def test_shipped_checkpoint_stores_the_hires_variant():
    threshold, options = resolve_method(WorkerConfig(method="haycam+hr"))
    assert options["variant"] == "shift" and threshold.mode == "fraction" and threshold.value == 0.5


def test_explain_and_run_commands_take_haycam_hr(tmp_path, capsys):
    """The shipped model end to end: explain reports the calibrated variant and threshold; run writes its boxes."""
    import json

    from stream.cli.main import main
    from tests.conftest import ROOT

    img = ROOT / "core" / "assets" / "samples" / "astronaut_masked.png"
    assert main(["explain", str(img), "--method", "haycam+hr", "--json", "--out", str(tmp_path / "x")]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["method"] == "haycam+hr" and rec["options"]["variant"] == "shift"
    assert rec["threshold"] == {"mode": "fraction", "value": 0.5, "min_area": 0.0} and rec["boxes"]
    events = tmp_path / "ev.jsonl"
    rc = main(["run", "--no-display", "--no-progress", "--method", "haycam+hr", "--max-frames", "2",
               "--batch-size", "2", "--events", str(events), "--output", str(tmp_path / "a.mp4")])
    assert rc == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert sum(e["type"] == "frame" for e in lines) == 2 and any(e["type"] == "detection" for e in lines)
