"""``kdist ... --help``: every command ends with examples that parse, and the arguments say
what they take (issue 17)."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from kdist.cli import DATE_FORMS, build_parser, main
from kdist.schema import to_date


def _commands(parser=None, prefix=()):
    """Every (command words, parser) below ``parser``, nested ones (cluster certs) too."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


COMMANDS = [" ".join(words) for words, _ in _commands()]


def _help(capsys, words) -> str:
    with pytest.raises(SystemExit) as info:
        main([*words, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_every_command_is_covered():
    assert {"ingest", "update", "jobs", "show", "actions", "status", "check", "verify",
            "export", "providers", "cluster",
            "cluster certs", "cluster scheduler", "cluster worker"} == set(COMMANDS)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_ends_with_two_to_four_examples_that_parse(capsys, command):
    text = _help(capsys, command.split())
    _, sep, examples = text.rstrip("\n").rpartition("\nexamples:\n")
    assert sep, f"kdist {command} --help has no examples:\n{text}"
    lines = examples.splitlines()
    assert 2 <= len(lines) <= 4, lines
    for line in lines:
        assert line.startswith("  kdist "), line
        words = shlex.split(line, comments=True)[1:]
        build_parser().parse_args(words)  # a real command line: argparse takes it
        assert words[:len(command.split())] == command.split(), line


def test_help_keeps_option_help_and_wraps_it(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = _help(capsys, ["ingest"])
    assert "attempts per symbol for transient errors" in text
    assert max(len(line) for line in text.split("\nexamples:\n")[0].splitlines()) <= 100


@pytest.mark.parametrize("command, option, words", [
    ("ingest", "SYMBOL", ["600000.SH", "sh600000", "000001"]),
    ("ingest", "--split", ["chunks", "per-worker"]),
    ("ingest", "--start", DATE_FORMS),
    ("ingest", "--end", ["today", *DATE_FORMS]),
    ("update", "--end", DATE_FORMS),
    ("show", "--start", DATE_FORMS),
    ("show", "--end", DATE_FORMS),
])
def test_arguments_say_what_they_take(capsys, command, option, words):
    text = _help(capsys, [command])
    options = text.split("\nexamples:\n")[0]
    # The help of the option: from its name at the start of a line to the next option.
    block = options.split(f"\n  {option}", 1)[1].split("\n  -", 1)[0]
    flat = re.sub(r"(?<=\w-) ", "", " ".join(block.split()))  # per- worker: per-worker
    for word in words:
        assert word in flat, (option, word, flat)


def test_the_date_forms_the_help_names_are_accepted():
    assert len(DATE_FORMS) >= 3
    days = {to_date(form).date().isoformat() for form in DATE_FORMS}
    assert days <= {"2024-01-02", "2024-01-01"}, days
