"""Capped exponential backoff: exact delays without jitter, seeded reproducible jitter, bounds."""
from __future__ import annotations

import random

import pytest

from stream.backoff import Backoff
from stream.sources import SourceOptions


def test_exponential_then_capped_without_jitter() -> None:
    b = Backoff(initial=0.5, maximum=10.0, factor=2.0, jitter=0.0)
    assert [b.delay(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert b.delay(10_000) == 10.0  # huge attempt numbers (retry forever) neither overflow nor grow


def test_seeded_jitter_is_reproducible_and_matches_formula() -> None:
    first = Backoff(initial=1.0, maximum=8.0, jitter=0.25, seed=42)
    a = [first.delay(n) for n in range(1, 7)]
    b = Backoff(initial=1.0, maximum=8.0, jitter=0.25, seed=42)
    assert [b.delay(n) for n in range(1, 7)] == a
    rng = random.Random(42)
    expected = []
    for base in [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]:
        expected.append(min(8.0, base * (1 + 0.25 * (2 * rng.random() - 1))))
    assert a == pytest.approx(expected, abs=1e-12)
    # a different seed gives a different (still bounded) schedule
    other = Backoff(initial=1.0, maximum=8.0, jitter=0.25, seed=43)
    c = [other.delay(n) for n in range(1, 7)]
    assert c != a


def test_jitter_stays_within_bounds() -> None:
    b = Backoff(initial=0.5, maximum=4.0, jitter=0.5, seed=0)
    for n in range(1, 200):
        base = min(4.0, 0.5 * 2 ** (n - 1))
        d = b.delay(n)
        assert 0.5 * base <= d <= min(4.0, 1.5 * base)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": 0}, "initial"),
        ({"initial": 2.0, "maximum": 1.0}, "maximum"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 1.0}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
    ],
)
def test_invalid_backoff_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(0)


def test_options_build_the_schedule() -> None:
    opts = SourceOptions(reconnect_initial=0.25, reconnect_max=1.0, reconnect_jitter=0.0)
    assert [opts.backoff().delay(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"live_buffer": 0}, "live_buffer"),
        ({"file_queue": 0}, "file_queue"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"open_timeout": float("nan")}, "open_timeout"),
        ({"reconnect_initial": 2.0, "reconnect_max": 1.0}, "reconnect_max"),
        ({"reconnect_jitter": 1.5}, "reconnect_jitter"),
        ({"fps": 0}, "fps"),
        ({"loop": "yes"}, "loop"),
        ({"live_buffer": 2.5}, "live_buffer"),
    ],
)
def test_invalid_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SourceOptions(**kwargs)
