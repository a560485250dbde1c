"""``maskstream run``: detect masks in live or recorded video, with saliency maps and boxes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from stream.config import BACKENDS, MODES, load_config

NAME = "run"
ORDER = 10
HELP = "detect masks in webcam / RTSP / video-file streams and show why (map + boxes)"
DESCRIPTION = (
    "Classify every frame (mask / no mask), compute its saliency map (HayCAM+ by default) and boxes, "
    "and show / write the annotated video, JSON Lines events and no-mask snapshots. With no --source it "
    "runs on the bundled sample clip and writes out/annotated.mp4 and out/events.jsonl. "
    "Window keys: q quits, h toggles the heatmap, space pauses. Ctrl-C / SIGTERM stop cleanly "
    "(files are closed and playable; a summary is printed). Exit codes: 0 done, 1 a stage failed, "
    "2 bad input (config, option, file, URL), 130 interrupted by Ctrl-C."
)
DEMO_OUTPUT = "out/annotated.mp4"
DEMO_EVENTS = "out/events.jsonl"

log = logging.getLogger("maskstream.run")


def _h(text: str) -> str:
    """Help text without argparse's "(default: None)" suffix (the config holds the defaults)."""
    return text + "%(default).0s"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from core.cams import method_names

    p.add_argument(
        "--source",
        "-s",
        action="append",
        metavar="S",
        default=None,
        help=_h(
            "input: camera index (0), rtsp://user:pass@host/path, http(s) URL, video file or image "
            "folder; repeat for several sources (batched together). Default: the bundled sample clip"
        ),
    )
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=None,
        help=_h(
            "YAML config overlaid on the defaults (configs/default.yaml); a bare name picks a bundled "
            "config: webcam, rtsp, offline, crowd"
        ),
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help=_h(
            "frame: one class per frame and boxes cut from the map (the paper's setting); "
            "faces: face detector, then every face classified and explained (config: worker.mode)"
        ),
    )
    p.add_argument(
        "--method",
        choices=list(method_names()),
        default=None,
        help=_h(
            "saliency map method (config: worker.method, default haycam+); haycam+hr: the finer map, with the "
            "variant and threshold calibrated in the checkpoint (several forwards per batch)"
        ),
    )
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE|DIR",
        default=None,
        help=_h(
            "annotated video (.mp4: fragmented H.264, plays in browsers and after a crash; .avi: MJPG; "
            "several sources write FILE-<k>.ext), or a folder (no suffix) for one annotated image per frame, "
            "named after the photo for image folders"
        ),
    )
    p.add_argument(
        "--codec",
        choices=("auto", "h264", "mp4v", "mjpg"),
        default=None,
        help=_h("codec of --output (config: sinks.codec; auto: h264 for .mp4, mjpg for .avi)"),
    )
    p.add_argument(
        "--record",
        metavar="DIR",
        default=None,
        help=_h(
            "record every source continuously into DIR in segments (config: sinks.record.*: length, "
            "retention by age and size); DIR/index.sqlite lists segments and their events"
        ),
    )
    p.add_argument(
        "--clips",
        metavar="DIR",
        default=None,
        help=_h("write a short annotated clip of each no-mask moment into DIR (config: sinks.clips.*)"),
    )
    p.add_argument("--events", metavar="FILE", default=None, help=_h("JSON Lines events file"))
    p.add_argument(
        "--snapshots", metavar="DIR", default=None, help=_h("directory for JPEG snapshots of no-mask detections")
    )
    p.add_argument(
        "--no-display", action="store_true", help=_h("never open a window (headless; implied without DISPLAY)")
    )
    p.add_argument(
        "--checkpoint", metavar="PATH", default=None, help=_h("model checkpoint (default: the shipped model)")
    )
    p.add_argument("--device", default=None, help=_h("auto | cpu | cuda | cuda:N (config: worker.device)"))
    p.add_argument("--backend", choices=BACKENDS, default=None, help=_h("inference backend (config: worker.backend)"))
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        default=None,
        help=_h("frames per forward pass (config: worker.batch_size)"),
    )
    p.add_argument("--max-frames", type=int, metavar="N", default=None, help=_h("stop after N frames in total"))
    p.add_argument("--loop", action="store_true", help=_h("restart file sources at their end (until Ctrl-C)"))
    p.add_argument("--no-progress", action="store_true", help=_h("no progress bar"))
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default=None,
        help=_h("local: one process (default); ray: camera actors and shared batched inference on a Ray "
                "cluster (pip install 'maskstream[ray]'; config: run.engine, ray.*)"),
    )
    p.add_argument(
        "--address", metavar="ADDR", default=None,
        help=_h("ray engine: join this Ray cluster (auto, HOST:PORT); default: a local instance on 127.0.0.1"),
    )
    p.add_argument("--json-summary", metavar="FILE", default=None, help=_h("also write the run summary as JSON"))
    p.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        default=None,
        help=_h(
            "serve the live web view (page, MJPEG per source, /api/status, /api/events, /metrics) on PORT "
            "(0: any free port), loopback unless HOST is given and sinks.web.allow_remote is true (config: sinks.web)"
        ),
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, dict[str, Any]] = {"sources": {}, "worker": {}, "sinks": {}, "run": {}}
    if args.source:
        o["sources"]["specs"] = list(args.source)
    if args.loop:
        o["sources"]["loop"] = True
    for opt, key in (
        ("mode", "mode"),
        ("method", "method"),
        ("checkpoint", "checkpoint"),
        ("device", "device"),
        ("backend", "backend"),
        ("batch_size", "batch_size"),
    ):
        if getattr(args, opt) is not None:
            o["worker"][key] = getattr(args, opt)
    for opt in ("output", "events", "snapshots", "codec"):
        if getattr(args, opt) is not None:
            o["sinks"][opt] = getattr(args, opt)
    for opt in ("record", "clips"):
        if getattr(args, opt) is not None:
            o["sinks"][opt] = {"dir": getattr(args, opt)}
    if args.no_display:
        o["sinks"]["display"] = False
    if args.max_frames is not None:
        o["run"]["max_frames"] = args.max_frames
    if args.no_progress:
        o["run"]["progress"] = False
    if getattr(args, "serve", None) is not None:
        o["sinks"]["web"] = parse_serve(args.serve)
    for opt in ("engine", "address"):
        if getattr(args, opt, None) is not None:
            o["run"][opt] = getattr(args, opt)
    return {k: v for k, v in o.items() if v}


def parse_serve(text: str) -> dict[str, Any]:
    """``--serve`` value -> ``sinks.web`` overrides: ``8080`` -> port only; ``0.0.0.0:8080`` / ``[::1]:8080`` -> host and port.

    Raises:
        UserError: when PORT is not an int in [0, 65535].
    """
    from stream.errors import UserError

    host, sep, port = text.strip().rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--serve {text!r}: expected [HOST:]PORT with PORT in 0..65535")
    out: dict[str, Any] = {"enabled": True, "port": int(port)}
    if sep and host:
        out["host"] = host.strip("[]")
    return out


class _Signals:
    """SIGINT/SIGTERM -> a clean stop request (a second Ctrl-C interrupts at once)."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:  # noqa: ARG002
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        self.pipeline.request_stop("interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)")

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from stream.pipeline import PipelineError, build_pipeline

    overrides = _overrides(args)
    cfg = load_config(args.config, overrides)
    if not cfg.sources.specs:  # the demo: bundled clip -> out/annotated.mp4 + out/events.jsonl
        sinks = {}
        if cfg.sinks.output is None:
            sinks["output"] = DEMO_OUTPUT
        if cfg.sinks.events is None:
            sinks["events"] = DEMO_EVENTS
        if sinks:
            cfg = load_config(args.config, {**overrides, "sinks": {**overrides.get("sinks", {}), **sinks}})
    if cfg.run.engine == "ray":  # imports ray; the local engine never does
        from stream.engines.ray_engine import build_ray_pipeline

        pipeline = build_ray_pipeline(cfg)
    else:
        pipeline = build_pipeline(cfg)
    code = 0
    try:
        with _Signals(pipeline) as sig:
            summary = pipeline.run()
        if sig.received == signal.SIGINT or summary.stopped_by == "interrupted":
            code = 130
    except PipelineError as exc:
        print(pipeline.summary.format(), file=sys.stderr)
        print(f"maskstream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary.format())
    if hasattr(pipeline, "ray_report"):
        print("  " + pipeline.ray_report())
    outs = [p for p in (cfg.sinks.output, cfg.sinks.events, cfg.sinks.snapshots, cfg.sinks.record.dir,
                        cfg.sinks.clips.dir) if p]
    if outs:
        print("  wrote    " + ", ".join(outs))
    if args.json_summary:
        Path(args.json_summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_summary).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return code
