"""A full disk while the recordings index commits: the caller gets SQLite's own "full" error (not the
"cannot rollback" that a second ROLLBACK used to raise over it), the recorder words it like the encoder's
ENOSPC, and the index still works once there is room again. The disk is made full for real with SQLite's
``max_page_count`` (SQLITE_FULL, the code a full file system gives)."""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from stream.sinks.record import write_error_message
from stream.sinks.segment_index import Segment, SegmentIndex


def test_a_full_index_raises_its_own_error_and_recovers(tmp_path):
    idx = SegmentIndex(tmp_path)
    try:
        seg = Segment("cam", "cam/a.mp4", 0.0, 1.0, frames=5)
        idx.add(seg)
        pages = idx._db.execute("PRAGMA page_count").fetchone()[0]
        idx._db.execute(f"PRAGMA max_page_count = {pages}")  # no room for another page
        seg.events = [{"time": 0.5, "type": "detection", "detail": "x" * 4000} for _ in range(20)]
        with pytest.raises(sqlite3.Error) as info:
            idx.finish(seg)
        assert info.value.sqlite_errorcode == sqlite3.SQLITE_FULL, info.value
        assert not idx._db.in_transaction
        assert write_error_message(info.value).startswith(os.strerror(errno.ENOSPC))
        assert idx.segments()[0].status == "recording"  # the failed transaction left nothing half-written

        idx._db.execute("PRAGMA max_page_count = 1073741823")  # space is back
        seg.status = "complete"
        idx.finish(seg)
        [stored] = idx.segments()
        assert (stored.status, stored.frames, len(idx.events(stored.id))) == ("complete", 5, 20)
    finally:
        idx.close()


def test_other_write_errors_keep_their_words():
    assert write_error_message(OSError(errno.EIO, os.strerror(errno.EIO))) == os.strerror(errno.EIO)
    assert write_error_message(sqlite3.OperationalError("database is locked")) == "database is locked"
    assert write_error_message(RuntimeError()) == "RuntimeError"
