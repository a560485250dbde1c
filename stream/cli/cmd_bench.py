"""``maskstream bench``: img/s and latency by backend × batch size × map method (see core/bench.py)."""
from __future__ import annotations

import argparse

from stream.errors import UserError

NAME = "bench"
HELP = "benchmark the inference backends and map methods (img/s, latency p50/p99)"
DESCRIPTION = (
    "Time torch vs onnxruntime (and pytorch-grad-cam) per batch size and map method: the bare forward, "
    "and forward + map + upsampling + boxes end to end. Prints a Markdown table and writes bench.json "
    "and bench.md under --out. Ratios compare rows measured in the same run."
)
ORDER = 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags: those of ``core.bench``."""
    from core.bench import add_arguments as bench_args

    bench_args(parser)


def run(args: argparse.Namespace) -> int:
    """Validate flags (UserError names the bad one), then run the benchmark."""
    from core.bench import main_args, validate

    try:
        validate(args)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return main_args(args)
