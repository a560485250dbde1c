"""Comparing what two runs said about people: person events, per-frame people and tracked detections.

Everything must be equal except timing fields and float noise: batch composition differs between engines, so
class scores differ in the 6th decimal and a confidence rounded to 4 decimals may move by one unit.
"""

from __future__ import annotations

import math
from typing import Any

TIMING = frozenset({"time", "latency_ms", "batch_size"})  # clocks, and how frames happened to be batched
PIXELS = frozenset({"box", "boxes"})  # a map value one rounding step away may move a map box's edge a little


def same(a: Any, b: Any, tol: float = 2e-3, where: str = "") -> None:
    """Assert ``a`` and ``b`` (JSON-like) are equal: floats within ``tol`` (box coordinates within 0.5 px),
    timing fields ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        ka, kb = set(a) - TIMING, set(b) - TIMING
        assert ka == kb, f"{where}: keys {sorted(ka ^ kb)} differ"
        for k in sorted(ka):
            same(a[k], b[k], max(tol, 0.5) if k in PIXELS else tol, f"{where}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items ({a} / {b})"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            assert a is b, f"{where}: {a} != {b}"
        elif math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), f"{where}: {a} != {b}"
        else:
            assert abs(a - b) <= tol, f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def result_people(r: Any) -> dict:
    """A tracked ``FrameResult`` -> what it says about people (JSON-like, for :func:`same`)."""
    d = r.detections
    labels = d.data.get("person_label")
    return {
        "frame": [r.frame.source_id, r.frame.index],
        "ids": [] if d.tracker_id is None else [int(v) for v in d.tracker_id],
        "labels": [x.label for x in d],
        "person_labels": [] if labels is None else [str(v) for v in labels],
        "boxes": [[float(v) for v in x.box] for x in d],
        "people": list((r.extra or {}).get("people", [])),
        "events": list((r.extra or {}).get("person_events", [])),
    }
