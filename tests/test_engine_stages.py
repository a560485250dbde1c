"""The ray engine's split of the worker (camera side | inference side) against the local Processor,
the resume wrapper a restarted camera uses, and the local engine never importing ray. No Ray needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream.config import ThresholdConfig, WorkerConfig
from stream.engines.resume import ResumeAfter
from stream.engines.stages import CameraStage, InferenceCore, model_inputs
from stream.frames import Frame, SourceEvent, SourceState
from stream.processor import Processor
from stream.results import FrameResult, SkippedFrame
from tests._stream_fakes import FakeDetector, FakeSource, make_frame, save_seeded_checkpoint, torch_backend, write_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return torch_backend(save_seeded_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", input_size=64))


def _frames(h: int, w: int, n: int = 5) -> list[Frame]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        im = np.full((h, w, 3), 30, np.uint8)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        im[y : y + h // 3, x : x + w // 3] = 220  # a bright blob: maps with boxes
        out.append(make_frame("cam", i, image=im))
    return out


def _split_run(stage: CameraStage, core: InferenceCore, frames: list[Frame], cut: int | None = None) -> list:
    """The camera side prepares, the inference side runs (one or two requests in one forward), the camera packs."""
    if cut is None:
        prep = stage.prepare(frames)
        return stage.results(prep, core.run([prep.inputs])[0], 0.0)
    p1, p2 = stage.prepare(frames[:cut]), stage.prepare(frames[cut:])
    o1, o2 = core.run([p1.inputs, p2.inputs])
    return stage.results(p1, o1, 0.0) + stage.results(p2, o2, 0.0)


def _same(local, remote, exact: bool) -> None:
    assert len(local) == len(remote)
    for a, b in zip(local, remote):
        assert type(b) in (FrameResult, SkippedFrame)
        assert a.frame.index == b.frame.index and a.frame.source_id == b.frame.source_id
        if isinstance(b, SkippedFrame):
            assert a.reason == b.reason
            continue
        assert a.label == b.label
        assert [d.label for d in a.detections] == [d.label for d in b.detections]
        tol = 0 if exact else 1e-4
        np.testing.assert_allclose([d.box for d in a.detections], [d.box for d in b.detections], atol=1e-3 + tol)
        np.testing.assert_allclose([d.score for d in a.detections], [d.score for d in b.detections], atol=1e-6 + tol)
        np.testing.assert_allclose([d.map_score or 0 for d in a.detections], [d.map_score or 0 for d in b.detections],
                                   atol=1e-6 + tol)
        if a.probs is not None:
            np.testing.assert_allclose(a.probs, b.probs, atol=1e-6 + tol)
        if a.heatmap is None:
            assert b.heatmap is None
        else:
            assert np.abs(a.heatmap.astype(int) - b.heatmap.astype(int)).max() <= (0 if exact else 1)
        assert (a.degenerate, a.n_components) == (b.degenerate, b.n_components)


@pytest.mark.parametrize("size", [(48, 64), (300, 400)], ids=["small-float-input", "large-uint8-input"])
def test_frame_mode_split_equals_local_processor(backend, size) -> None:
    cfg = WorkerConfig(device="cpu", threshold=ThresholdConfig(mode="fraction", value=0.5))
    frames = _frames(*size)
    frames.insert(2, Frame("cam", 99, np.zeros((0, 5, 3), np.uint8), 0.0))  # unusable: skipped on both sides
    local = Processor(backend, cfg).process(frames)
    core = InferenceCore(backend, cfg)
    stage = CameraStage(core.info, cfg)
    x = stage.prepare(frames).inputs
    s = core.info.input_size
    # large frames leave the camera as S x S uint8 (a quarter of the float input), small ones as the float input
    assert x.shape == ((5, s, s, 3) if size[0] * size[1] > 4 * s * s else (5, 3, s, s))
    assert x.dtype == (np.uint8 if size[0] > 100 else np.float32)
    remote = _split_run(stage, core, frames)
    assert sum(len(r.detections) for r in remote if isinstance(r, FrameResult)) > 0
    _same(local, remote, exact=True)
    _same(local, _split_run(stage, core, frames, cut=3), exact=False)  # two cameras' requests in one forward


def test_model_method_split_equals_local_processor(backend, tmp_path) -> None:
    """haycam+hr needs the model input itself: the replica runs it on what the camera sent, as Processor does."""
    ck = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    cfg = WorkerConfig(device="cpu", method="haycam+hr", checkpoint=str(ck),
                       threshold=ThresholdConfig(mode="fraction", value=0.5, min_area=0.0))
    frames = _frames(300, 400, 3) + _frames(48, 64, 2)
    local = Processor(backend, cfg).process(frames)
    core = InferenceCore(backend, cfg)
    assert core.proc.model_method is not None
    remote = _split_run(CameraStage(core.info, cfg), core, frames, cut=3)  # a uint8 and a float request, one forward
    assert sum(len(r.detections) for r in remote) > 0
    _same(local, remote, exact=True)


def test_faces_mode_split_equals_local_processor(backend) -> None:
    cfg = WorkerConfig(device="cpu", mode="faces")
    det = FakeDetector()
    frames = _frames(120, 160, 4)
    local = Processor(backend, cfg, det).process(frames)
    core = InferenceCore(backend, cfg)
    stage = CameraStage(core.info, cfg, det)
    prep = stage.prepare(frames)
    assert prep.inputs.shape[0] == 8  # two face crops per frame, never the frame
    _same(local, _split_run(stage, core, frames), exact=True)
    none = CameraStage(core.info, cfg, FakeDetector(rel_boxes=np.zeros((0, 5))))
    prep = none.prepare(frames)
    assert len(prep.inputs) == 0
    res = none.results(prep, core.run([prep.inputs])[0], 0.0)
    assert [len(r.detections) for r in res] == [0] * 4 and all(r.heatmap is None for r in res)


def test_model_inputs_match_the_local_preprocessing(backend) -> None:
    import torch

    core = InferenceCore(backend, WorkerConfig(device="cpu"))
    frames = [f.image for f in _frames(300, 400, 2)] + [f.image for f in _frames(40, 50, 1)]
    x = model_inputs(frames, core.info)  # mixed sizes: float input, large ones shrunk as uint8 first
    ref = core.proc._to_input(frames)  # noqa: SLF001 - the local engine's own preprocessing
    assert x.dtype == np.float32
    assert torch.equal(torch.from_numpy(x), ref)


def _file_items(n: int) -> list:
    return [make_frame("f", i) for i in range(n)]


@pytest.mark.timeout(20)
def test_resume_after_skips_delivered_file_frames_and_renumbers_live_ones() -> None:
    def drain(src) -> list:
        out = []
        while True:
            it = src.get(0.05)
            if it is None:
                return out
            out.append(it)

    got = drain(ResumeAfter(FakeSource(_file_items(6)), last=3))
    assert [i.index for i in got if isinstance(i, Frame)] == [4, 5]
    assert isinstance(got[-1], SourceEvent) and got[-1].state is SourceState.END_OF_STREAM
    assert [i.index for i in drain(ResumeAfter(FakeSource(_file_items(3)), None)) if isinstance(i, Frame)] == [0, 1, 2]
    live = drain(ResumeAfter(FakeSource(_file_items(3), live=True), last=10))
    assert [i.index for i in live if isinstance(i, Frame)] == [11, 12, 13]  # indices keep increasing after a restart


@pytest.mark.timeout(180)
def test_local_engine_run_never_imports_ray(tmp_path: Path) -> None:
    ck = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    clip = write_video(tmp_path / "a.mp4", n=4)
    code = (
        "import sys, json; from stream.cli.main import main; "
        f"rc = main(['run', '-s', {str(clip)!r}, '--checkpoint', {str(ck)!r}, '--no-display', '--no-progress', "
        f"'--events', {str(tmp_path / 'e.jsonl')!r}]); "
        "print(json.dumps({'rc': rc, 'ray': sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))}))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DISPLAY", None)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert last == {"rc": 0, "ray": []}, p.stderr[-2000:]
    assert sum(1 for line in (tmp_path / "e.jsonl").open() if '"type":"frame"' in line) == 4



def test_ray_engine_errors_are_one_line_user_errors(monkeypatch, tmp_path: Path) -> None:
    import importlib.util

    from stream.config import load_config
    from stream.engines import ray_engine
    from stream.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'maskstream\[ray\]'"):
        ray_engine.check_ray()
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  engine: spark\nray:\n  group_size: 0\n")
    with pytest.raises(UserError, match=r"run\.engine must be one of local, ray"):
        load_config(bad)
    bad.write_text("ray:\n  group_size: 0\n")
    with pytest.raises(UserError, match=r"ray\.group_size must be an int >= 1, got 0"):
        load_config(bad)


# ---------------------------------------------------------------- people on the camera's side


class _ScriptedDetector:
    """Faces by frame index (read from pixel (0, 0)): person A all along, B from frame 6 to 17, C from 10."""

    def detect(self, images):
        out = []
        for im in images:
            i = int(im[0, 0, 0])
            rows = [[20 + 2 * i, 30, 60 + 2 * i, 80, 0.9]]
            if 6 <= i < 18:
                rows.append([150, 40, 190, 95, 0.8])
            if i >= 10:
                rows.append([100 - i, 70, 135 - i, 115, 0.7])
            out.append(np.array(rows, np.float32))
        return out


def _people_frames(source_id: str, n: int, seed: int) -> list[Frame]:
    """A file source's frames (pos_ms at 25 fps): noise with bright faces where the detector puts them."""
    rng = np.random.default_rng(seed)
    det = _ScriptedDetector()
    frames = []
    for i in range(n):
        im = rng.integers(0, 90, (120, 200, 3), np.uint8)
        im[0, 0, 0] = i
        for x1, y1, x2, y2, _ in det.detect([im])[0].astype(int):
            im[y1:y2, x1:x2] = rng.integers(150, 255, 3, np.uint8)
        frames.append(Frame(source_id, i, im, 100.0 + i / 25.0, 40.0 * i))
    return frames


def _tracked_run(stage, frames, batch, infer=None, after=None):
    """Frames of one source through a people-tracking stage in batches of ``batch`` -> (results, states)."""
    out, states = [], []
    for k in range(0, len(frames), batch):
        part = frames[k : k + batch]
        if infer is None:  # the local Processor
            got = [(r, None) for r in stage.process(part)]
        else:
            got = stage.run(part, infer)
        out += [r for r, _ in got]
        states += [s for _, s in got]
        if after is not None and after(len(out)):
            break
    return out, states


@pytest.mark.parametrize("mode", ["frame", "faces"])
@pytest.mark.timeout(120)
def test_people_on_the_camera_side_equal_the_local_processor_and_resume_from_a_snapshot(backend, mode) -> None:
    """The ray engine's camera side tracks and votes as the local worker does, whatever the batching (local: two
    sources interleaved in batches of 4; camera: one source in batches of 3), and a camera restarted from the
    snapshot of the last delivered frame continues with the same people, events and ids."""
    from stream.people import PeopleStage, restore_source
    from stream.people_config import PeopleConfig
    from tests._people_compare import result_people, same

    cfg = WorkerConfig(device="cpu", mode=mode, face_margin=0.1, threshold=ThresholdConfig(mode="fraction", value=0.5))
    pcfg = PeopleConfig(detect_every=3, undecided_every=2, decided_every=4)
    margin = cfg.face_margin if mode == "faces" else 0.0
    det = _ScriptedDetector() if mode == "faces" else None
    live = {"a": False, "b": False}
    fa, fb = _people_frames("a", 24, 1), _people_frames("b", 24, 2)
    mixed = [f for pair in zip(fa, fb) for f in pair]
    local_stage = PeopleStage(("with_mask", "without_mask"), pcfg, None, margin, live)
    local, _ = _tracked_run(Processor(backend, cfg, det, local_stage), mixed, 4)
    local_a = [result_people(r) for r in local if r.frame.source_id == "a"]
    left_a = local_stage.finish_source("a")

    core = InferenceCore(backend, cfg)

    def infer(x):
        return core.run([x])[0]

    def camera():
        return CameraStage(core.info, cfg, det, PeopleStage(core.info.class_names, pcfg, None, margin, live))

    whole, states = _tracked_run(camera(), fa, 3, infer)
    assert all(s is not None for s in states)  # a snapshot after every frame
    same(local_a, [result_people(r) for r in whole], where=mode)
    same(left_a, restore_source(states[-1]).finish(), where="left")
    evs = [e["event"] for r in whole for e in r.extra["person_events"]] + [e["event"] for e in left_a]
    assert evs.count("appeared") == 3 if mode == "faces" else evs.count("appeared") >= 1
    assert evs.count("appeared") == evs.count("left") and "decided" in evs

    cut = 11  # the camera dies after 11 delivered frames; its successor resumes from the snapshot after frame 10
    first, st1 = _tracked_run(camera(), fa, 4, infer, after=lambda n: n >= cut)
    again = camera()
    again.people.restore("a", st1[cut - 1])
    rest, _ = _tracked_run(again, fa[cut:], 4, infer)
    same(local_a, [result_people(r) for r in first[:cut] + rest], where=f"{mode} resumed")
    same(left_a, again.people.finish_source("a"), where="left resumed")
