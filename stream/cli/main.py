"""``maskstream`` entry point: discovers ``stream/cli/cmd_*.py`` subcommands.

A subcommand module defines ``NAME`` (str), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. User errors (``UserError`` and
``CheckpointError``; commands turn bad-input ``ValueError``s into ``UserError``) print one
line ``maskstream: error: ...`` and exit 2; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Sequence

import stream.cli as cli_pkg
from stream.errors import UserError


def _commands() -> list:
    mods = []
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            mods.append(importlib.import_module(f"stream.cli.{info.name}"))
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 50))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="maskstream",
        description="Real-time face-mask detection that shows why it decided: a class, a HayCAM+ "
        "saliency map and boxes for every frame.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as ``sys.exit`` code by the script)."""
    from core.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args._run(args) or 0)
    except (UserError, CheckpointError) as exc:
        print(f"maskstream: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("maskstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
