"""Run configuration: defaults, bundled configs, and one clear message per bad key (exit 2)."""

from __future__ import annotations

import pytest

from stream.cli.main import main
from stream.config import CONFIG_DIR, Config, from_dict, load_config, merge, read_yaml, to_dict
from stream.errors import UserError


def test_default_yaml_matches_dataclass_defaults():
    assert to_dict(from_dict(read_yaml(CONFIG_DIR / "default.yaml"))) == to_dict(Config())


@pytest.mark.parametrize(
    "name,check",
    [
        ("webcam", lambda c: c.sources.specs == ("0",) and c.sinks.display and c.worker.batch_size == 1),
        ("rtsp", lambda c: not c.sinks.display and c.sources.reconnect_max == 30.0 and c.sinks.events),
        ("offline", lambda c: not c.sinks.display and c.sinks.output == "out/annotated.mp4" and c.sinks.events),
        ("crowd", lambda c: c.worker.mode == "faces" and c.worker.max_faces == 128 and c.worker.face_margin == 0.3
         and c.worker.detector_options == {}
         and c.worker.crowd_detector_options == {"input_size": 1600, "score_threshold": 0.3}),
    ],
)
def test_bundled_configs_load_by_name(name, check):
    cfg = load_config(name)
    assert check(cfg)
    # everything not in the overlay keeps the default
    assert cfg.worker.method == "haycam+" and cfg.overlay.alpha == Config().overlay.alpha


def test_layers_overlay_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("worker:\n  batch_size: 8\n  threshold: {value: 0.3}\n")
    cfg = load_config(f, {"worker": {"batch_size": 2}})
    assert cfg.worker.batch_size == 2  # command line wins
    assert cfg.worker.threshold.value == 0.3 and cfg.worker.threshold.mode == "calibrated"  # deep merge
    assert cfg.worker.threshold.to_core().value == 0.3


def test_merge_is_deep_and_does_not_mutate():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    out = merge(base, {"a": {"b": 5}, "d": [2, 3]})
    assert out == {"a": {"b": 5, "c": 2}, "d": [2, 3]} and base == {"a": {"b": 1, "c": 2}, "d": [1]}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("worker:\n  batch_size: 0\n", "worker.batch_size must be an int >= 1"),
        ("worker:\n  batch_size: two\n", "worker.batch_size must be an int, got str 'two'"),
        ("worker:\n  batch_size: 2.5\n", "worker.batch_size must be an int, got float 2.5"),
        ("worker:\n  batchsize: 2\n", "worker.batchsize is not a known key (did you mean worker.batch_size?)"),
        ("wroker: {}\n", "wroker is not a known key (did you mean worker?)"),
        (
            "worker:\n  method: cam\n",
            "worker.method must be one of gradcam, gradcam++, layercam, eigencam, haycam, haycam+",
        ),
        ("worker:\n  device: tpu\n", "worker.device must be one of auto, cpu, cuda, cuda:N, got 'tpu'"),
        ("worker:\n  threshold:\n    mode: fraction\n    value: 1.5\n", "worker.threshold.value must be in [0, 1]"),
        ("worker:\n  face_margin: 1.5\n", "worker.face_margin must be in [0, 1], got 1.5"),
        ("worker:\n  fp16: maybe\n", "worker.fp16 must be a boolean (true/false), got str 'maybe'"),
        ("overlay:\n  alpha: -0.1\n", "overlay.alpha must be in [0, 1], got -0.1"),
        ("overlay:\n  colors: {without_mask: [0, 0, 300]}\n", "overlay.colors.without_mask must be 3 ints in [0, 255]"),
        ("overlay:\n  colors: {without_mask: [0, 0]}\n", "overlay.colors.without_mask must be a list of 3 values"),
        ("sources:\n  reconnect_jitter: 1.0\n", "sources.reconnect_jitter must be in [0, 1)"),
        (
            "sources:\n  reconnect_initial: 5\n  reconnect_max: 1\n",
            "sources.reconnect_max must be >= reconnect_initial",
        ),
        ("sinks:\n  output: out.mkv\n", "sinks.output must end in .mp4 or .avi (a video), or have no suffix (a folder"),
        ("sinks:\n  output: out/photos\n  codec: mp4v\n", "sinks.codec is for a video output; 'out/photos' is a folder"),
        ("sinks:\n  output: out/photos\n  video_fps: 5\n", "sinks.video_fps is for a video output"),
        ("run:\n  max_frames: 0\n", "run.max_frames must be an int >= 1 or null, got 0"),
        ("worker: 3\n", "worker must be a mapping, got int 3"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, text, expected):
    f = tmp_path / "x.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as ei:
        load_config(f)
    msg = str(ei.value)
    assert msg.startswith(f"config {f}: ") and expected in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "text,expected",
    [
        ("worker:\n  batch_size: [1\n", "not valid YAML at line"),
        ("- a\n- b\n", "must hold a mapping of sections, got list"),
        ("\tworker: {}\n", "not valid YAML"),
    ],
)
def test_corrupt_yaml_names_the_file(tmp_path, text, expected):
    f = tmp_path / "broken.yaml"
    f.write_text(text)
    with pytest.raises(UserError, match=expected) as ei:
        load_config(f)
    assert str(f) in str(ei.value)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(UserError, match="nope.yaml: no such file"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == load_config()


def test_command_line_errors_are_named(tmp_path):
    with pytest.raises(UserError, match=r"^command line: worker.batch_size must be an int >= 1"):
        load_config(None, {"worker": {"batch_size": 0}})


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args,expected",
    [
        (["--config", "{bad}"], "worker.batch_size must be an int >= 1, got 0"),
        (["--config", "{corrupt}"], "not valid YAML"),
        (["--batch-size", "0"], "command line: worker.batch_size must be an int >= 1"),
        (["--config", "{unknown}"], "sinks.outptu is not a known key"),
    ],
)
def test_cli_exits_2_with_one_line(tmp_path, capsys, args, expected):
    files = {"bad": "worker:\n  batch_size: 0\n", "corrupt": "worker: [\n", "unknown": "sinks:\n  outptu: a.mp4\n"}
    paths = {}
    for k, text in files.items():
        paths[k] = tmp_path / f"{k}.yaml"
        paths[k].write_text(text)
    argv = ["run", "--no-display"] + [a.format(**paths) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskstream: error: ") and expected in err and "Traceback" not in err, err
    assert len(err.splitlines()) == 1
