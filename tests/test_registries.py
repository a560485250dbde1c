"""The extension points: a sink type registered with its options dataclass gets a strict config section and is
built by ``run``'s wiring; backend options from the config reach the backend; backends and methods list their
names on an unknown one."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from core.backends import BACKENDS, OrtOptions, TorchOptions, backend_kind  # noqa: E402
from stream import config as config_mod  # noqa: E402
from stream.config import load_config  # noqa: E402
from stream.errors import ConfigValueError, UserError, check  # noqa: E402
from stream.pipeline import build_sinks  # noqa: E402
from stream.sinks import SINKS, EventsSink, Sink, SinkContext, SnapshotSink, VideoSink, register_sink  # noqa: E402


@dataclass(frozen=True)
class PingOptions:
    port: int | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        check(self.port is None or 1 <= self.port <= 65535, "port", f"must be in [1, 65535], got {self.port}")


class PingSink(Sink):
    def __init__(self, port: int, ids) -> None:
        self.port, self.ids = port, list(ids)

    @classmethod
    def from_options(cls, opts: PingOptions, ctx: SinkContext):
        return cls(opts.port, ctx.source_ids) if opts.port else None


@pytest.fixture
def ping_registered():
    register_sink("ping", PingOptions)(PingSink)
    try:
        yield config_mod._sinks_config_class()
    finally:
        SINKS.pop("ping")


def test_a_registered_sink_gets_a_strict_section(ping_registered):
    cls = ping_registered
    names = [f.name for f in dataclasses.fields(cls)]
    sections = [t.name for t in SINKS.values() if not t.flat]  # the other registered types, then "ping"
    assert sections[-1] == "ping" and names[-len(sections) - 1:] == ["display", *sections]
    assert "output" in names  # built-ins stay flat, in front
    sc = config_mod._build(cls, {"ping": {"port": 8080}, "events": "x.jsonl"}, "sinks")
    assert sc.options("ping") == PingOptions(8080) and sc.options("events").events == "x.jsonl"
    with pytest.raises(ConfigValueError) as ei:
        config_mod._build(cls, {"ping": {"prot": 1}}, "sinks")
    assert ei.value.key == "sinks.ping.prot" and "did you mean sinks.ping.port?" in ei.value.message
    with pytest.raises(ConfigValueError) as ei:
        config_mod._build(cls, {"ping": {"port": 0}}, "sinks")
    assert ei.value.key == "sinks.ping.port" and ei.value.message == "must be in [1, 65535], got 0"


def test_build_sinks_builds_every_registered_type_that_is_on(ping_registered, tmp_path):
    cfg = load_config(None, {"sinks": {"output": str(tmp_path / "a.mp4"), "events": str(tmp_path / "e.jsonl")}})
    sinks = build_sinks(cfg, ["cam"], {"cam": 25.0})  # a config class built before "ping": ping is off
    assert [type(s) for s in sinks] == [VideoSink, EventsSink]  # registry order; snapshots are off too
    for s in sinks:
        s.close()
    sc = config_mod._build(ping_registered, {"snapshots": str(tmp_path / "snap"), "ping": {"port": 9}}, "sinks")
    sinks = build_sinks(dataclasses.replace(cfg, sinks=sc), ["cam"], {"cam": None})
    assert [type(s) for s in sinks] == [SnapshotSink, PingSink] and sinks[1].port == 9 and sinks[1].ids == ["cam"]


def test_a_sink_without_from_options_or_a_taken_name_is_refused():
    with pytest.raises(TypeError, match="from_options"):
        register_sink("bare", PingOptions)(Sink)
    with pytest.raises(ValueError, match="already registered"):
        register_sink("events", PingOptions)(PingSink)


def test_backend_options_from_the_config_reach_the_backend(tmp_path):
    pytest.importorskip("onnxruntime")
    from stream.processor import create_backend

    cfg = load_config(None, {"worker": {"backend": "onnxruntime", "device": "cpu", "backend_options": {
        "onnxruntime": {"threads": 1, "graph_opt": "basic", "cache_dir": str(tmp_path)},
        "torch": {"compile": True}}}})  # the other kind's options are not used
    assert cfg.worker.backend_kwargs() == {"threads": 1, "graph_opt": "basic", "cache_dir": str(tmp_path)}
    b = create_backend(cfg.worker)
    so = b.session.get_session_options()
    assert so.intra_op_num_threads == 1 and str(so.graph_optimization_level).endswith("ENABLE_BASIC")
    assert any(Path(tmp_path).rglob("*.onnx"))  # the export went to the configured cache


def test_bad_backend_options_name_the_key(tmp_path):
    with pytest.raises(UserError, match=r"worker.backend_options.onnxruntime.thread is not a known key"):
        load_config(None, {"worker": {"backend_options": {"onnxruntime": {"thread": 1}}}})
    with pytest.raises(UserError, match=r"worker.backend_options.onnxruntime is invalid: threads must be >= 0"):
        load_config(None, {"worker": {"backend_options": {"onnxruntime": {"threads": -1}}}})


def test_backend_registry_names_and_aliases():
    assert list(BACKENDS) == ["torch", "onnxruntime"]
    assert BACKENDS["torch"].options is TorchOptions and BACKENDS["onnxruntime"].options is OrtOptions
    assert backend_kind("ort").name == "onnxruntime" and backend_kind("PyTorch").name == "torch"
    with pytest.raises(ValueError, match=r"must be one of \['torch', 'onnxruntime'\], but got 'tpu'"):
        backend_kind("tpu")
