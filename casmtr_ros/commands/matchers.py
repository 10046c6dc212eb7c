"""``casmtr-vo matchers``: list the matcher names accepted everywhere a matcher is chosen."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from casmtr_ros.matching import available_matchers

    for name in available_matchers():
        print(name)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("matchers", help="list available matchers")
    p.set_defaults(func=run)
