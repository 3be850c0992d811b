"""The CLI's documented surface and its shared helpers (no PostgreSQL, no backend)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from restore_assets.cli import common, main, server_restore
from restore_assets.core.errors import RestoreError

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_commands() -> list[tuple[list[str], set[str]]]:
    """(command words, options) of each command in the README's CLI reference table."""
    text = README.read_text()
    section = text[text.index("## CLI reference") :]
    section = section[: section.index("\n## ", 1)]
    found = []
    for line in section.splitlines():
        cells = re.split(r"(?<!\\)\|", line)
        if len(cells) < 3 or not cells[1].strip().startswith("`"):
            continue
        for usage in re.findall(r"`([^`]*)`", cells[1]):
            words = []
            for word in usage.split():
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                words.append(word)
            found.append((words, set(re.findall(r"--[a-z][a-z0-9-]*", usage))))
    return found


def subparser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The parser of a (nested) sub-command."""
    for word in words:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


def test_every_documented_command_and_option_is_parsed() -> None:
    commands = documented_commands()
    assert len(commands) >= 20, commands  # the table was read
    parser = main.build_parser()
    for words, options in commands:
        known = set(subparser(parser, words)._option_string_actions)
        assert options | {"--json"} <= known, (words, options - known)  # every command: --json


def test_a_missing_option_would_be_seen() -> None:
    parser = main.build_parser()
    known = set(subparser(parser, ["fleet", "down"])._option_string_actions)
    assert "--purge" in known and "--no-such-option" not in known


def test_finish_prints_the_outcome_and_maps_the_status_to_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(json=False)
    assert common.finish(args, {"status": "succeeded"}, lambda d: "ok") == 0
    assert common.finish(args, {"status": "failed"}, lambda d: "bad") == 1
    assert common.finish(args, {"status": "interrupted"}, lambda d: "?") == 1
    assert capsys.readouterr().out == "ok\nbad\n?\n"
    assert common.finish(args, {"status": "rejected", "cause": "why"}, lambda d: "-") == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "error: why\n")
    as_json = argparse.Namespace(json=True)
    assert common.finish(as_json, {"status": "rejected", "cause": "why"}, lambda d: "-") == 2
    assert '"status": "rejected"' in capsys.readouterr().out


def test_known_restore_turns_a_missing_record_into_a_user_error() -> None:
    with pytest.raises(
        RestoreError, match=r"unknown restore id 'r-1': see `restore-assets history`"
    ):
        with common.known_restore("r-1"):
            raise KeyError("r-1")
    with common.known_restore("r-1"):
        pass  # nothing raised, nothing changed


def test_backend_config_reads_the_yaml_and_the_options(tmp_path: Path) -> None:
    config = tmp_path / "backend.yaml"
    config.write_text("backend: aws\naws:\n  region: eu-west-1\n")
    args = argparse.Namespace(root="/r", config=str(config), backend=None, workers=3)
    assert common.backend_config(args) == {
        "backend": "aws",
        "aws": {"region": "eu-west-1"},
        "config_file": str(config.resolve()),
        "root": "/r",
        "copy_workers": 3,
    }
    local = argparse.Namespace(root="/r", config=str(config), backend="local")
    assert common.backend_config(local)["backend"] == "local"
    assert common.backend_config(argparse.Namespace(root="/r")) == {
        "backend": "local",
        "root": "/r",
    }


def test_the_server_restore_commands_use_the_shared_helpers() -> None:
    assert server_restore.backend_config is common.backend_config
    assert server_restore.finish is common.finish
    for name in ("_emit", "_finish", "EXIT"):
        assert not hasattr(server_restore, name), name
