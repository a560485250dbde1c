"""The on-screen window: ``cv2.imshow`` when a display exists, a no-op otherwise.

Keys: ``q`` / Esc quit, ``h`` toggles the heatmap, space pauses (the pipeline then stops
reading results: file sources wait, live sources drop their oldest frames). Closing the
window quits too. Headless machines (no ``DISPLAY`` / ``WAYLAND_DISPLAY``, or an OpenCV
built without GUI support) never crash: the window is simply off, with one log line.
"""

from __future__ import annotations

import logging
import os
import sys

import cv2
import numpy as np

from stream.redact import redact_text

log = logging.getLogger(__name__)

QUIT, TOGGLE_HEATMAP, PAUSE = "quit", "toggle_heatmap", "pause"
KEYS = {ord("q"): QUIT, 27: QUIT, ord("h"): TOGGLE_HEATMAP, ord(" "): PAUSE}


def display_available() -> tuple[bool, str]:
    """(True, "") when a window can be shown, else (False, why)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no DISPLAY or WAYLAND_DISPLAY set"
    info = cv2.getBuildInformation()
    gui = info.split("GUI:", 1)[1].splitlines()[0].strip() if "GUI:" in info else ""
    if gui.upper() in ("NONE", "NO"):
        return False, "OpenCV has no GUI support (opencv-python-headless?)"
    return True, ""


class Display:
    """Windows per source; a context manager that destroys them on exit.

    Args:
        enabled: requested on (``--no-display`` / ``sinks.display: false`` turn it off).
    """

    def __init__(self, enabled: bool = True, title: str = "maskstream") -> None:
        self.title = title
        self.paused = False
        self.active = False
        self._windows: set[str] = set()
        if enabled:
            ok, why = display_available()
            if ok:
                self.active = True
            else:
                log.info("display off: %s", why)

    def __enter__(self) -> "Display":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _name(self, source_id: str) -> str:
        return f"{self.title} - {redact_text(source_id)}"

    def show(self, source_id: str, image: np.ndarray) -> str | None:
        """Show ``image`` in the source's window; returns the key action, if any."""
        if not self.active:
            return None
        name = self._name(source_id)
        try:
            if name not in self._windows:
                cv2.namedWindow(name, cv2.WINDOW_NORMAL)
                self._windows.add(name)
            cv2.imshow(name, image)
            return self.poll(1)
        except cv2.error as exc:  # e.g. the X server went away
            log.warning("display off: %s", str(exc).strip().splitlines()[-1] if str(exc).strip() else exc)
            self.active = False
            return None

    def poll(self, wait_ms: int = 30) -> str | None:
        """Handle one key press (and window closes); returns QUIT, TOGGLE_HEATMAP, PAUSE or None."""
        if not self.active:
            return None
        key = cv2.waitKey(wait_ms) & 0xFF
        action = KEYS.get(key)
        if action == PAUSE:
            self.paused = not self.paused
        for name in list(self._windows):
            try:
                if cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) < 1:
                    return QUIT
            except cv2.error:
                return QUIT
        return action

    def close(self) -> None:
        if self._windows:
            try:
                cv2.destroyAllWindows()
                cv2.waitKey(1)
            except cv2.error:
                pass
            self._windows.clear()
        self.active = False
