#!/usr/bin/env python3
"""A tiny local RTSP server that serves a moving test pattern, for tests and demos.

Run it with the *system* Python, which has PyGObject once the Debian packages are in
(``.ci/system-deps``): ``/usr/bin/python3 tools/rtsp_server.py --port 8554``. It serves
``rtsp://127.0.0.1:<port>/test`` (H.264: ``videotestsrc ! x264enc tune=zerolatency ! rtph264pay``),
bound to 127.0.0.1 only, prints ``READY rtsp://127.0.0.1:<port>/<mount>`` on stdout once it
listens, and runs until SIGINT/SIGTERM.

Exit status: 0 on a signal, 3 when GStreamer or a needed element is missing, 4 when the port
cannot be bound.

The same file also holds :class:`RtspServerProcess`, which tests and benchmarks (under pip's
Python) use to start/kill/restart the server as a subprocess. This file must not import anything
from the project, nor ``gi`` at module level: pip's Python has no ``gi``.
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve()

_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "missing = [e for e in ('videotestsrc', 'videoconvert', 'x264enc', 'rtph264pay') "
    "if Gst.ElementFactory.find(e) is None]; "
    "print('missing GStreamer elements: ' + ', '.join(missing) if missing else 'ok')"
)


def unavailable_reason(python: str = SYSTEM_PYTHON) -> str | None:
    """Why the server cannot run here (None when it can): no system Python, no gi, no elements."""
    if not os.access(python, os.X_OK):
        return f"{python} not found (the RTSP test server runs under the system Python)"
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {python}: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return (f"{python} cannot import gi/GstRtspServer ({last}); "
                "install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly (.ci/system-deps)")
    if proc.stdout.strip() != "ok":
        return proc.stdout.strip() + " (install gstreamer1.0-plugins-base/good/ugly: .ci/system-deps)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServerProcess:
    """This script as a subprocess: ``start()`` waits for READY; ``kill()`` simulates a crash.

    Args:
        port: TCP port on 127.0.0.1.
        extra_args: more command-line arguments (``--mount``, ``--fps``...).
        python: interpreter with gi (the system Python).
    """

    def __init__(self, port: int, extra_args: list[str] | None = None, python: str = SYSTEM_PYTHON) -> None:
        self.port = port
        self.extra_args = list(extra_args or [])
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self.urls: list[str] = []

    @property
    def url(self) -> str:
        """URL of the first mount."""
        return self.urls[0] if self.urls else f"rtsp://127.0.0.1:{self.port}/test"

    def start(self, timeout: float = 15.0) -> RtspServerProcess:
        """Start the server and wait until it listens; raises RuntimeError with its stderr if not."""
        self.stop()
        self.proc = subprocess.Popen(
            [self.python, str(SCRIPT), "--port", str(self.port), *self.extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()  # raw reads: a buffered readline would hide lines from select
        self.urls = []
        pending = b""
        deadline = time.monotonic() + timeout
        n_mounts = max(1, self.extra_args.count("--mount"))
        while len(self.urls) < n_mounts:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, min(remaining, 0.5)))
            if ready:
                chunk = os.read(fd, 4096)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    if text.startswith("READY "):
                        self.urls.append(text.split(" ", 1)[1].strip())
                if chunk:
                    continue
            if self.proc.poll() is not None or remaining <= 0:
                err = self._stop_and_read_stderr()
                raise RuntimeError(f"RTSP server on port {self.port} did not start: {err.strip()[-2000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL the server (a crash: no RTSP teardown) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL it if it lingers, reap it (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def _stop_and_read_stderr(self) -> str:
        proc = self.proc
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.kill()
        err = b""
        try:
            proc.wait(5)
            if proc.stderr is not None:
                err = proc.stderr.read() or b""
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self._reap()
        return err.decode(errors="replace")

    def _reap(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> RtspServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8554, help="TCP port to listen on (127.0.0.1 only)")
    p.add_argument("--mount", action="append", default=None,
                   help="mount path to serve (repeatable; default /test)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--pattern", default="ball", help="videotestsrc pattern (ball, smpte, ...)")
    p.add_argument("--user", default=None, help="require RTSP basic auth with this user")
    p.add_argument("--password", default=None, help="password for --user")
    return p.parse_args(argv)


def _launch_line(args: argparse.Namespace) -> str:
    return (
        f"( videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(f"rtsp_server: GStreamer RTSP server bindings missing: {exc}", file=sys.stderr)
        return 3
    Gst.init(None)
    for element in ("videotestsrc", "videoconvert", "x264enc", "rtph264pay"):
        if Gst.ElementFactory.find(element) is None:
            print(f"rtsp_server: GStreamer element {element!r} missing", file=sys.stderr)
            return 3

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    paths = args.mount or ["/test"]
    for path in paths:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(_launch_line(args))
        factory.set_shared(True)
        if args.user:
            factory.add_role_from_structure(Gst.Structure.from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
        mounts.add_factory(path if path.startswith("/") else "/" + path, factory)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password or "")
        auth.add_basic(basic, token)
        server.set_auth(auth)

    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 4

    loop = GLib.MainLoop()

    def _quit(*_: object) -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, _quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, _quit)
    for path in paths:
        print(f"READY rtsp://127.0.0.1:{args.port}/{path.lstrip('/')}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
