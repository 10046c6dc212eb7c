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
        try:
            module = importlib.import_module(f"{commands.__name__}.{info.name}")
        except ModuleNotFoundError as exc:  # an optional dependency is missing: the other commands still work
            _register_unavailable(sub, info.name.replace("_", "-"), exc)
            continue
        module.register(sub)
    return parser


def _register_unavailable(sub: argparse._SubParsersAction, name: str, exc: ModuleNotFoundError) -> None:
    """A subcommand whose module cannot be imported here: it explains why instead of breaking the whole CLI."""
    missing = str(exc.name).split(".")[0]
    reason = f"needs the Python module {missing!r}, which is not installed (pip install -r requirements.txt)"

    def unavailable(_: argparse.Namespace) -> int:
        print(f"casmtr-vo {name}: unavailable: {reason}", file=sys.stderr)
        return 2

    p = sub.add_parser(name, help=f"(unavailable: {reason})", add_help=False, prefix_chars="\x00")  # takes any args
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=unavailable)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, ImportError) as exc:  # user errors: one clear line, no traceback
        print(f"casmtr-vo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
