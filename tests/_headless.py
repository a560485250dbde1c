"""Test helpers for the headless deployment tests: free loopback ports, a mosquitto broker the test
starts and stops, an MQTT subscriber that records what arrives, and a subprocess ``maskstream run``."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).exists()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Broker:
    """Debian's mosquitto on 127.0.0.1:<port>, with persistence so subscriptions of persistent sessions
    survive a restart (a stop is SIGTERM: mosquitto saves its database).

    ``user`` is the test's own user: started as root, mosquitto would otherwise drop to the ``mosquitto``
    user, which cannot write into pytest's private (0700) tmp dir, so it would silently save nothing and
    every persistent session would be gone after a restart."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        if MOSQUITTO is None:
            pytest.skip("mosquitto is not installed (.ci/system-deps installs it)")
        self.port = port or free_port()
        self.dir = tmp
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {tmp}/\nautosave_interval 1\nlog_dest stderr\nlog_type error\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Subscriber:
    """Records every message under ``topic`` (a persistent session: the broker keeps QoS 1 messages for it)."""

    def __init__(self, port: int, topic: str = "maskstream/#", client_id: str = "test-sub") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self._subacks: set[int] = set()
        self.sessions: list[bool] = []  # session_present of each connect (True: the broker kept the session)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.1, 0.5)

        def on_connect(client, userdata, flags, rc, props):
            self.sessions.append(bool(flags.session_present))
            client.subscribe(topic, qos=1)

        def on_subscribe(client, userdata, mid, rcs, props):
            with self.lock:
                self._subacks.add(mid)
            self.subscribed.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        self.client = c
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        assert self.subscribed.wait(10), "subscriber did not subscribe"

    def on(self, suffix: str) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def wait_for(self, cond, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def sync(self, timeout: float = 10.0) -> bool:
        """A round trip through the broker (a SUBSCRIBE to an unused topic and its SUBACK): the broker
        handles one connection's packets in order, so once it answers it has also processed every
        acknowledgement of the messages this subscriber received before; stopping it then cannot make
        it redeliver them."""
        _, mid = self.client.subscribe("maskstream-test-sync/none", qos=0)

        def acked():
            with self.lock:
                return mid in self._subacks

        return self.wait_for(acked, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("MASKSTREAM_TOKEN", None)
    return env


def start_run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 90.0) -> tuple[subprocess.Popen, str]:
    """``maskstream run ARGS --serve 0`` in the background; returns (process, base URL without the slash).

    The URL is read from the 'web view at' line on stderr (stderr keeps being drained into ``proc.err``).
    """
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli.main", "run", "--no-display", "--no-progress",
                             "--serve", "0", *args], cwd=cwd, env=env or run_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.err_lines = []  # type: ignore[attr-defined]
    found = threading.Event()
    url: list[str] = []

    def drain():
        for line in proc.stderr:
            proc.err_lines.append(line)  # type: ignore[attr-defined]
            if "web view at " in line and not url:
                url.append(line.split("web view at ", 1)[1].strip().rstrip("/"))
                found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    if not found.wait(timeout) or not url:
        proc.kill()
        raise AssertionError("run did not announce its web view:\n" + "".join(proc.err_lines))  # type: ignore
    return proc, url[0]


def stop_run(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30.0) -> tuple[int, str, str]:
    """Stop a background run; returns (exit code, stdout, stderr)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
        out = proc.stdout.read() if proc.stdout else ""
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise
    time.sleep(0.1)
    return proc.returncode, out, "".join(proc.err_lines)  # type: ignore[attr-defined]
