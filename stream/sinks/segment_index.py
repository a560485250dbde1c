"""The recordings index: one SQLite file listing every segment and the events inside it.

``<dir>/index.sqlite``, two tables::

    segments(id, source, path, start, end, frames, bytes, status)
        path: relative to the recordings directory; start/end: Unix time of the first/last frame;
        status: recording (open now, or the run died: fixed on the next start) | complete |
        interrupted (the run died; frames counted from the file) | truncated (a write error cut it)
    events(id, segment_id, source, time, frame_index, type, detail)
        type: nomask (a no-mask run starts) | state (source connected/disconnected...) | person;
        detail: the event as JSON.

SQLite because the index is updated in place (a segment closes, retention deletes rows) and every
change is atomic, so the index and the files agree after a crash too. One connection guarded by a
lock: the writer threads of every source share it.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import av

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, path TEXT NOT NULL UNIQUE, start REAL NOT NULL,
    "end" REAL, frames INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    source TEXT NOT NULL, time REAL NOT NULL, frame_index INTEGER, type TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS segments_start ON segments(start);
CREATE INDEX IF NOT EXISTS events_segment ON events(segment_id);
"""


@dataclass
class Segment:
    """One segment file as the recorder knows it (``id`` is None until it is in the index)."""

    source: str
    path: str  # relative to the recordings directory
    start: float
    end: float | None = None
    frames: int = 0
    bytes: int = 0
    status: str = "recording"
    id: int | None = None
    events: list[dict] = field(default_factory=list)


def start_from_name(name: str) -> float | None:
    """Unix start time from a segment name ``<source>_YYYYmmddTHHMMSS.mmmZ[-k].mp4``, or None."""
    m = re.search(r"_(\d{8}T\d{6})\.(\d{3})Z(?:-\d+)?\.mp4$", name)
    if m is None:
        return None
    d = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return d.timestamp() + int(m.group(2)) / 1000.0


def count_packets(path: Path) -> int:
    """Video packets (= frames) a file holds, read without decoding; 0 when unreadable."""
    try:
        with av.open(str(path)) as c:
            return sum(1 for p in c.demux(video=0) if p.size)
    except (av.error.FFmpegError, OSError):
        return 0


class SegmentIndex:
    """The SQLite index of a recordings directory (created if missing; kept across runs).

    Args:
        root: the recordings directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / "index.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=5.0)
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(SCHEMA)
        except sqlite3.Error:
            self._db.close()
            raise

    # ---------------------------------------------------------------- writes (atomic)
    def add(self, seg: Segment) -> None:
        """Insert an open segment (sets ``seg.id``)."""
        with self._lock:
            cur = self._db.execute(
                'INSERT INTO segments (source, path, start, "end", frames, bytes, status) VALUES (?,?,?,?,?,?,?)',
                (seg.source, seg.path, seg.start, seg.end, seg.frames, seg.bytes, seg.status),
            )
            seg.id = int(cur.lastrowid)

    def finish(self, seg: Segment) -> None:
        """Store a closed segment and its events in one transaction (the events list is emptied)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                if seg.id is None:
                    cur = db.execute(
                        'INSERT INTO segments (source, path, start, "end", frames, bytes, status) VALUES (?,?,?,?,?,?,?)',
                        (seg.source, seg.path, seg.start, seg.end, seg.frames, seg.bytes, seg.status),
                    )
                    seg_id = int(cur.lastrowid)
                else:
                    seg_id = seg.id
                    db.execute(
                        'UPDATE segments SET "end"=?, frames=?, bytes=?, status=? WHERE id=?',
                        (seg.end, seg.frames, seg.bytes, seg.status, seg_id),
                    )
                db.executemany(
                    "INSERT INTO events (segment_id, source, time, frame_index, type, detail) VALUES (?,?,?,?,?,?)",
                    [
                        (seg_id, seg.source, e["time"], e.get("frame_index"), e["type"], json.dumps(e))
                        for e in seg.events
                    ],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    db.execute("ROLLBACK")
                raise
            seg.id = seg_id
            seg.events = []

    def remove(self, seg_id: int) -> None:
        """Delete a segment's row and its events."""
        with self._lock:
            self._db.execute("DELETE FROM segments WHERE id=?", (seg_id,))

    # ---------------------------------------------------------------- reads
    def segments(self, source: str | None = None) -> list[Segment]:
        """Every indexed segment, oldest first (events not loaded)."""
        q = 'SELECT source, path, start, "end", frames, bytes, status, id FROM segments'
        args: tuple = ()
        if source is not None:
            q, args = q + " WHERE source=?", (source,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY start, id", args).fetchall()
        return [Segment(*r) for r in rows]

    def events(self, segment_id: int) -> list[dict]:
        """The events stored with one segment, in time order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT detail FROM events WHERE segment_id=? ORDER BY time, id", (segment_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # ---------------------------------------------------------------- maintenance
    def recover(self) -> int:
        """Segments left ``recording`` by a run that died: count their frames from the file
        (status ``interrupted``), or drop the row when the file is gone or holds nothing; segment files
        with no row (a crash between creating a file and indexing it) are indexed the same way, and
        rows whose file was deleted by hand are dropped. Returns the rows fixed."""
        fixed = 0
        known = {s.path for s in self.segments()}
        for f in sorted(self.root.glob("*/*.mp4")):
            rel = f.relative_to(self.root).as_posix()
            if rel not in known:  # the source's id is unknown here: its folder name stands in
                self.add(Segment(f.parent.name, rel, start_from_name(f.name) or f.stat().st_mtime))
        for seg in [s for s in self.segments() if s.status != "recording" and not (self.root / s.path).is_file()]:
            self.remove(seg.id)  # type: ignore[arg-type]
            fixed += 1
        for seg in [s for s in self.segments() if s.status == "recording"]:
            f = self.root / seg.path
            n = count_packets(f) if f.is_file() else 0
            if n == 0:
                f.unlink(missing_ok=True)
                self.remove(seg.id)  # type: ignore[arg-type]
            else:
                seg.frames, seg.bytes, seg.status = n, f.stat().st_size, "interrupted"
                seg.end = seg.end or seg.start
                self.finish(seg)
            fixed += 1
        return fixed

    def enforce(self, max_age_s: float, max_bytes: int, open_bytes: int = 0, now: float | None = None) -> list[str]:
        """Retention: delete closed segments older than ``max_age_s`` (0: none), then the oldest
        while the total (closed + ``open_bytes`` of segments being written) exceeds ``max_bytes``
        (0: no cap). Returns the deleted paths (relative)."""
        now = time.time() if now is None else now
        closed = [s for s in self.segments() if s.status != "recording"]
        deleted: list[str] = []

        def drop(s: Segment) -> None:
            (self.root / s.path).unlink(missing_ok=True)
            self.remove(s.id)  # type: ignore[arg-type]
            deleted.append(s.path)

        keep = []
        for s in closed:
            if max_age_s > 0 and (s.end or s.start) < now - max_age_s:
                drop(s)
            else:
                keep.append(s)
        if max_bytes > 0:
            total = open_bytes + sum(s.bytes for s in keep)
            for s in keep:  # oldest first
                if total <= max_bytes:
                    break
                drop(s)
                total -= s.bytes
        for p in deleted:
            log.info("recordings: deleted %s (retention)", p)
        return deleted

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]
