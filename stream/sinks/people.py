"""Small helpers the web, metrics and alert sinks share to read a result without caring whether it is
the older worker result or ``stream.results.FrameResult``."""

from __future__ import annotations

from typing import Any


def people_in_view(result: Any) -> list[dict]:
    """``result.extra["people"]`` (tracker output: person_id, label, box, confidence) as JSON-ready dicts."""
    extra = getattr(result, "extra", None) or {}
    out = []
    for p in extra.get("people", ()) or ():
        if not isinstance(p, dict):
            continue
        box = p.get("box")
        out.append({
            "person_id": _plain(p.get("person_id")),
            "label": p.get("label"),
            "confidence": None if p.get("confidence") is None else round(float(p["confidence"]), 3),
            "box": None if box is None else [round(float(v), 1) for v in box],
        })
    return out


def box_of(people: list[dict], person_id: Any) -> Any:
    """The box of ``person_id`` among ``people`` (None when absent)."""
    for p in people:
        if p.get("person_id") == person_id:
            return p.get("box")
    return None


def labels_and_box(result: Any, labels: frozenset) -> tuple[set[str], Any]:
    """(every label of the frame: frame label and box labels, the first box with one of ``labels`` or None)."""
    found: set[str] = set()
    box = None
    for d in result.detections:
        found.add(d.label)
        if box is None and d.label in labels:
            box = d.box
    if result.label is not None:
        found.add(result.label)
    return found, box


def _plain(v: Any) -> Any:
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
    except ImportError:  # pragma: no cover
        pass
    return v
