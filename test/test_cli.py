"""The ``casmtr-vo`` entry point: a missing optional dependency disables one subcommand, not the whole CLI."""

from __future__ import annotations

import sys

import pytest

from casmtr_ros import cli


def test_all_subcommands_register() -> None:
    choices = cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"train", "bench", "demo", "replay", "eval-pairs", "eval-homography"} <= set(choices)


def test_missing_optional_module_disables_only_its_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A GPU box without rosbags (seen on a lent H100) must still train and benchmark."""
    for name in list(sys.modules):
        if name == "rosbags" or name.startswith(("rosbags.", "casmtr_ros.commands.", "casmtr_ros.bags")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rosbags", None)  # import rosbags -> ModuleNotFoundError
    parser = cli.build_parser()
    args = parser.parse_args(["train", "train_lite_cpu", "--steps", "1"])
    assert args.func.__module__ == "casmtr_ros.commands.train"
    assert cli.main(["demo", "--anything"]) == 2
    err = capsys.readouterr().err
    assert "casmtr-vo demo: unavailable" in err and "'rosbags'" in err
