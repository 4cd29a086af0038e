"""The entry points of `molformer-kd` and `distill.py`: `--help` and `--version` answered without importing torch.

Importing any `molformer_kd` module first runs the package's `__init__`, which registers the models and processors
with the transformers Auto classes and so imports torch and transformers: seconds before a help text could appear.
This module therefore lives outside the package and imports nothing of it until it must. It prints what the real
parsers print for the command lines of `recorded_command_lines()`, read from `molformer_kd/command_help.json`
(located with `importlib.util.find_spec`, which does not run the package's `__init__`), and hands every other
command line to the real command (`molformer_kd.cli.main`, `molformer_kd.distill_command.main`).

The recording is regenerated after changing a parser or the version with

    python -m molformer_kd_launcher

and tests/test_launcher.py fails while it differs from what the parsers print. It is recorded at `HELP_COLUMNS`
columns: argparse wraps help to the terminal's width, and a recording cannot, so the answers are the 80-column help.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Sequence

RECORDING_FILE = "command_help.json"  # in the molformer_kd package folder (package data)
HELP_COLUMNS = 80
MOLFORMER_KD = "molformer-kd"
DISTILL_SCRIPT = "distill.py"


# ---------------------------------------------------------------------------------------------------- answering


def recording_path() -> str | None:
    """The recording's path in the installed (or checked out) package, without importing the package."""
    spec = importlib.util.find_spec("molformer_kd")
    folders = spec.submodule_search_locations if spec is not None else None
    for folder in folders or []:
        path = os.path.join(folder, RECORDING_FILE)
        if os.path.isfile(path):
            return path
    return None


def recorded_answer(program: str, argv: Sequence[str]) -> str | None:
    """What `program *argv` prints when that is a recorded command line, else None (the real command must run)."""
    # `-h` is argparse's short form of `--help` in every parser here; the recording holds the long form only.
    wanted = ["--help" if arg == "-h" else arg for arg in argv]
    path = recording_path()
    if not wanted or path is None:
        return None
    with open(path, encoding="utf-8") as file:
        recording = json.load(file)
    return next(("".join(entry["stdout"]) for entry in recording.get(program, []) if entry["argv"] == wanted), None)


def main(argv: Sequence[str] | None = None) -> int:
    """The `molformer-kd` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    answer = recorded_answer(MOLFORMER_KD, argv)
    if answer is not None:
        sys.stdout.write(answer)
        return 0
    from molformer_kd.cli import main as cli_main

    return cli_main(argv)


def distill_main(argv: Sequence[str] | None = None) -> None:
    """`distill.py` (the script that launchers such as `accelerate launch` take)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    answer = recorded_answer(DISTILL_SCRIPT, argv)
    if answer is not None:
        sys.stdout.write(answer)
        return
    from molformer_kd.distill_command import main as distill_command_main

    distill_command_main(argv, prog=DISTILL_SCRIPT)


# ---------------------------------------------------------------------------------------------------- recording


def recorded_command_lines() -> dict[str, list[list[str]]]:
    """The command lines answered from the recording: `--help` and `--version` of both programs and `--help` of
    every `molformer-kd` subcommand. Imports the package (it reads the subcommands off the real parser)."""
    import argparse

    from molformer_kd.cli import build_parser

    # argparse has no public way to list a parser's subcommands; its actions and the subparsers action's choices
    # are what `--help` itself reads.
    subcommands = next(
        action.choices for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
    )
    return {
        MOLFORMER_KD: [["--help"], ["--version"], *([name, "--help"] for name in subcommands)],
        DISTILL_SCRIPT: [["--help"], ["--version"]],
    }


def real_output(program: str, argv: list[str]) -> str:
    """What the real command prints on stdout for `program *argv` at `HELP_COLUMNS` columns (it must exit with 0)."""
    import contextlib
    import io
    from unittest import mock

    from molformer_kd.cli import main as cli_main
    from molformer_kd.distill_command import main as distill_command_main

    stdout = io.StringIO()
    with mock.patch.dict(os.environ, {"COLUMNS": str(HELP_COLUMNS)}), contextlib.redirect_stdout(stdout):
        try:
            if program == MOLFORMER_KD:
                cli_main(argv)
            else:
                distill_command_main(argv, prog=DISTILL_SCRIPT)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise RuntimeError(f"`{program} {' '.join(argv)}` exited with {exit_.code}") from None
        else:
            raise RuntimeError(f"`{program} {' '.join(argv)}` did not exit: it is not a help or version command line")
    return stdout.getvalue()


def record() -> dict[str, list[dict]]:
    """The recording as `command_help.json` holds it: per program, each command line and what it prints (as a list
    of lines, so that a changed help text is a readable diff)."""
    return {
        program: [
            {"argv": argv, "stdout": real_output(program, argv).splitlines(keepends=True)} for argv in command_lines
        ]
        for program, command_lines in recorded_command_lines().items()
    }


def write_recording() -> str:
    """Record the answers into the package's `command_help.json`; returns its path."""
    spec = importlib.util.find_spec("molformer_kd")
    path = os.path.join(spec.submodule_search_locations[0], RECORDING_FILE)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(record(), file, indent=1, ensure_ascii=False)
        file.write("\n")
    return path


if __name__ == "__main__":
    print(f"wrote {write_recording()}")
