"""The people part of the run summary: unique people per decided label and person-seconds per label.

Fed with the person events (``stream.people``) on the pipeline thread. A person counts once under
every label they were decided as (someone who took the mask off counts under both), and under
``undecided`` when they left without a decision; ``seconds`` sums each person's time in view per label.
"""

from __future__ import annotations

import collections

from core.track import UNDECIDED


class PeopleSummary:
    """Counters over person events."""

    def __init__(self) -> None:
        self.labels: dict[tuple[str, int], set[str]] = {}
        self.seconds: collections.Counter = collections.Counter()
        self.left = 0
        self.changes = 0

    def add(self, ev: dict) -> None:
        """Count one person event."""
        key = (str(ev.get("source")), int(ev["person_id"]))
        labels = self.labels.setdefault(key, set())
        kind = ev.get("event")
        if kind in ("decided", "changed"):
            labels.add(str(ev["label"]))
            self.changes += kind == "changed"
        elif kind == "left":
            self.left += 1
            for label, s in (ev.get("seconds_per_label") or {}).items():
                self.seconds[label] += float(s)

    @property
    def total(self) -> int:
        return len(self.labels)

    def per_label(self) -> dict[str, int]:
        """Unique people per decided label (``undecided``: never decided)."""
        out: collections.Counter = collections.Counter()
        for labels in self.labels.values():
            for label in labels or {UNDECIDED}:
                out[label] += 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict:
        return {
            "people": self.total,
            "people_per_label": self.per_label(),
            "person_seconds": {k: round(v, 2) for k, v in sorted(self.seconds.items())},
            "person_seconds_without_mask": round(self.seconds.get("without_mask", 0.0), 2),
            "label_changes": self.changes,
        }

    def format(self) -> str:
        d = self.to_dict()
        per = ", ".join(f"{k} {v}" for k, v in d["people_per_label"].items()) or "none"
        return (
            f"  people   {d['people']} ({per}); {d['label_changes']} label changes; "
            f"person-seconds without a mask {d['person_seconds_without_mask']:.1f}"
        )
