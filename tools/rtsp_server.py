#!/usr/bin/env python3
"""A tiny local RTSP server that serves a moving test pattern, for tests and demos.

Run it with the *system* Python, which has PyGObject once the Debian packages are in
(``.ci/system-deps``): ``/usr/bin/python3 tools/rtsp_server.py --port 8554``. It serves
``rtsp://127.0.0.1:<port>/test`` (H.264: ``videotestsrc ! x264enc tune=zerolatency ! rtph264pay``),
bound to 127.0.0.1 only, prints ``READY rtsp://127.0.0.1:<port>/<mount>`` on stdout once it
listens, and runs until SIGINT/SIGTERM.

Exit status: 0 on a signal, 3 when GStreamer or a needed element is missing, 4 when the port
cannot be bound.

This file must not import anything from the project: pip's Python has no ``gi``.
"""
from __future__ import annotations

import argparse
import signal
import sys


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
        token = GstRtspServer.RTSPToken.new_empty()
        token.get_structure().set_value(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
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
