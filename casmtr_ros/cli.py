"""``casmtr-vo``: one command with subcommands.

Each module in :mod:`casmtr_ros.commands` adds one subcommand through ``register(subparsers)``, which must
create a parser and set ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import casmtr_ros
import casmtr_ros.commands as commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="casmtr-vo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"casmtr_ros {casmtr_ros.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError) as exc:  # user errors: one clear line, no traceback
        print(f"casmtr-vo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
