"""The command line: every subcommand is listed and has working --help; unknown commands and bad
arguments exit non-zero with a clear message; the installed console script runs."""

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest

from domainbert.cli import COMMANDS, build_parser, main


def test_top_level_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_help_works(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*name.split(), "--help"])
    assert exit_.value.code == 0
    assert f"usage: domainbert {name}" in capsys.readouterr().out
    build_parser(name)  # both functions of the table entry resolve
    module, _, func = COMMANDS[name].run.partition(":")
    assert callable(getattr(__import__(module, fromlist=[func]), func))


def test_group_without_subcommand_lists_the_group(capsys):
    assert main(["vocab"]) == 0
    assert "vocab build" in capsys.readouterr().out


def test_unknown_command_and_bad_arguments_exit_non_zero(capsys):
    assert main(["pretrian"]) == 2
    assert "unknown command 'pretrian'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["model", "create", "--preset", "gigantic", "--out", "x"])
    assert exit_.value.code == 2
    assert "invalid choice: 'gigantic'" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = shutil.which("domainbert")
    assert exe, "the domainbert console script is not on PATH: pip install -e ."
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("domainbert ")
    done = subprocess.run([exe, "model", "info", "/nonexistent"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_repeated_list_option_adds_to_the_list(name):
    """``--seed 42 --seed 43`` runs both seeds and ``blurb --model A --model B`` both models (argparse's
    own list options keep only the last occurrence, silently)."""
    parser = build_parser(name)
    for action in parser._actions:
        if action.option_strings and action.nargs in ("+", "*"):
            ns = argparse.Namespace(**{action.dest: action.default})
            action(parser, ns, ["1"], action.option_strings[0])
            action(parser, ns, ["2"], action.option_strings[0])
            assert getattr(ns, action.dest) == ["1", "2"], f"{name} {action.option_strings[0]}"


def test_finetune_seeds_given_twice_are_both_run():
    ns = build_parser("finetune").parse_args(["--model", "m", "--out", "o", "--task", "gad", "--seed", "42",
                                              "--seed", "43", "44"])
    assert ns.seed == [42, 43, 44]
