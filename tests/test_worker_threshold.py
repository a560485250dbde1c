"""stream.processor.resolve_threshold: `threshold.mode: calibrated` reads the checkpoint's fitted threshold
(the one `explain` and `eval` use), and falls back to a fraction where there is none."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from core.boxes import Threshold  # noqa: E402
from core.checkpoint import DEFAULT_CHECKPOINT, read_thresholds  # noqa: E402
from stream.config import ThresholdConfig, WorkerConfig  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.processor import resolve_threshold  # noqa: E402
from tests._stream_fakes import save_seeded_checkpoint  # noqa: E402


def _with_thresholds(tmp_path: Path, thresholds: dict) -> Path:
    path = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    blob = torch.load(path, weights_only=True)
    blob["thresholds"] = thresholds
    torch.save(blob, path)
    return path


def test_calibrated_is_the_default_and_reads_the_shipped_model():
    cfg = WorkerConfig()
    assert cfg.threshold.mode == "calibrated"
    stored = read_thresholds(DEFAULT_CHECKPOINT)["haycam+"]  # written by `make train` (eval --calibrate)
    assert resolve_threshold(cfg) == Threshold(stored["mode"], stored["value"], 0.01)  # min_area: the config's


def test_calibrated_takes_mode_and_value_from_the_checkpoint(tmp_path):
    ck = _with_thresholds(tmp_path, {"gradcam": {"mode": "otsu", "value": 0.0, "min_area": 0.0},
                                     "haycam+": {"mode": "fraction", "value": 0.35, "min_area": 0.0}})
    cfg = WorkerConfig(checkpoint=str(ck), method="gradcam", threshold=ThresholdConfig("calibrated", 0.5, 0.02))
    assert resolve_threshold(cfg) == Threshold("otsu", 0.0, 0.02)
    cfg = WorkerConfig(checkpoint=str(ck), method="haycam+", threshold=ThresholdConfig("calibrated", 0.5, 0.0))
    assert resolve_threshold(cfg) == Threshold("fraction", 0.35, 0.0)


def test_falls_back_to_the_configured_fraction_and_says_so(tmp_path, caplog):
    ck = _with_thresholds(tmp_path, {})
    cfg = WorkerConfig(checkpoint=str(ck), method="layercam", threshold=ThresholdConfig("calibrated", 0.3, 0.0))
    with caplog.at_level(logging.INFO, logger="stream.processor"):
        assert resolve_threshold(cfg) == Threshold("fraction", 0.3, 0.0)
    assert "no calibrated threshold for layercam" in caplog.text
    # an ONNX file alone carries no thresholds: the shipped model's must not be borrowed for it
    onnx = WorkerConfig(onnx_path=str(tmp_path / "x.onnx"), backend="onnxruntime",
                        threshold=ThresholdConfig("calibrated", 0.4, 0.0))
    assert resolve_threshold(onnx) == Threshold("fraction", 0.4, 0.0)


def test_explicit_modes_are_kept():
    cfg = WorkerConfig(threshold=ThresholdConfig("percentile", 90.0, 0.0))
    assert resolve_threshold(cfg) == Threshold("percentile", 90.0, 0.0)


def test_malformed_entry_names_the_checkpoint(tmp_path):
    ck = _with_thresholds(tmp_path, {"haycam+": {"value": 0.4}})
    with pytest.raises(UserError, match=r"m\.pt.*thresholds\['haycam\+'\]"):
        resolve_threshold(WorkerConfig(checkpoint=str(ck)))
