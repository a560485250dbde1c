"""The per-person table: one CSV row per person and stretch of time under one label.

Columns: ``source, person_id, label, start_s, end_s, seconds, first_frame, last_frame``. Times are media
seconds (the file position for files). Rows come from the ``left`` person events (every person gets
one, at the latest when the run ends), so the file is complete once the sink closes.

Config: ``sinks.people_table.path``: a ``.csv`` path, ``auto`` (``<events stem>.people.csv`` next to the
events file, else next to the video) or null (off). Off as well when ``people.enabled`` is false.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from stream.errors import UserError, check
from stream.sinks.base import Sink
from stream.sinks.registry import SinkContext, register_sink

log = logging.getLogger(__name__)

COLUMNS = ("source", "person_id", "label", "start_s", "end_s", "seconds", "first_frame", "last_frame")


@dataclass(frozen=True)
class PeopleTableOptions:
    """``sinks.people_table``.

    Attributes:
        path: the CSV file, ``auto`` (next to the events file, else the video) or None (off).
    """

    path: str | None = None

    def __post_init__(self) -> None:
        if self.path is not None:
            check(self.path == "auto" or self.path.lower().endswith(".csv"), "path",
                  f"must be a .csv path, auto or null, got {self.path!r}")


def table_path(table: str | None, events: str | None, output: str | None) -> Path | None:
    """Where the table goes: ``table`` itself, or for ``auto`` ``<events stem>.people.csv`` next to the
    events file (else next to the video); None when off or when ``auto`` has nothing to sit next to."""
    if table is None:
        return None
    if table != "auto":
        return Path(table)
    base = events or output
    if base is None:
        log.warning("sinks.people_table.path: auto, but there is no events file or video to put it next to; not written")
        return None
    b = Path(base)
    return b.with_name(f"{b.stem}.people.csv")


@register_sink("people_table", PeopleTableOptions)
class PeopleTableSink(Sink):
    """Collects ``left`` person events and writes the table on close (truncates the file on open)."""

    @classmethod
    def from_options(cls, opts: PeopleTableOptions, ctx: SinkContext) -> "PeopleTableSink | None":
        if opts.path is None:
            return None
        if not ctx.people:
            log.warning("sinks.people_table: people.enabled is false, so there are no people; not written")
            return None
        path = table_path(opts.path, ctx.options_of("events").events, ctx.options_of("video").output)
        return cls(path) if path is not None else None

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
