"""The per-person table: one CSV row per person and stretch of time under one label.

Columns: ``source, person_id, label, start_s, end_s, seconds, first_frame, last_frame``. Times are media
seconds (the file position for files). Rows come from the ``left`` person events (every person gets
one, at the latest when the run ends), so the file is complete once the sink closes.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from stream.errors import UserError
from stream.sinks.base import Sink

log = logging.getLogger(__name__)

COLUMNS = ("source", "person_id", "label", "start_s", "end_s", "seconds", "first_frame", "last_frame")


def table_path(table: str | None, events: str | None, output: str | None) -> Path | None:
    """Where the table goes: ``table`` itself, or for ``auto`` ``<events stem>.people.csv`` next to the
    events file (else next to the video); None when off or when ``auto`` has nothing to sit next to."""
    if table is None:
        return None
    if table != "auto":
        return Path(table)
    base = events or output
    if base is None:
        log.warning("people.table: auto, but there is no events file or video to put it next to; not written")
        return None
    b = Path(base)
    return b.with_name(f"{b.stem}.people.csv")


class PeopleTableSink(Sink):
    """Collects ``left`` person events and writes the table on close (truncates the file on open)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"people table {self.path}: cannot be written ({exc.strerror or exc})") from None
        self.rows: list[tuple] = []
        self._closed = False

    def person(self, event: dict) -> None:
        if event.get("event") != "left":
            return
        for label, a, b in event.get("ranges") or []:
            self.rows.append(
                (
                    event["source"],
                    int(event["person_id"]),
                    label,
                    a,
                    b,
                    round(float(b) - float(a), 3),
                    event.get("first_frame"),
                    event.get("last_frame"),
                )
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        rows = sorted(self.rows, key=lambda r: (str(r[0]), r[1], r[3]))
        with open(self.path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            w.writerows(rows)
