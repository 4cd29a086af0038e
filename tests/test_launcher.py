"""`molformer-kd` and `distill.py` answer `--help` and `--version` from a recording (molformer_kd_launcher.py), without
importing torch: the recording says what the real parsers say, and every other command line is left to the real
command."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import molformer_kd
import molformer_kd_launcher as launcher

REPO = Path(__file__).resolve().parents[1]
# Runs the console script's entry point as `.venv/bin/molformer-kd` does, without needing it installed.
CONSOLE_SCRIPT = ["-c", "import sys, molformer_kd_launcher; sys.exit(molformer_kd_launcher.main())"]
FAST_COMMAND_LINES = [
    (launcher.DISTILL_SCRIPT, [str(REPO / "distill.py")], ["--help"]),
    (launcher.DISTILL_SCRIPT, [str(REPO / "distill.py")], ["--version"]),
    (launcher.MOLFORMER_KD, CONSOLE_SCRIPT, ["--help"]),
    (launcher.MOLFORMER_KD, CONSOLE_SCRIPT, ["--version"]),
    (launcher.MOLFORMER_KD, CONSOLE_SCRIPT, ["distill", "--help"]),
    (launcher.MOLFORMER_KD, CONSOLE_SCRIPT, ["predict", "-h"]),
]


def test_the_recording_is_what_the_real_parsers_print():
    with open(launcher.recording_path(), encoding="utf-8") as file:
        recording = json.load(file)
    assert recording == launcher.record(), "a parser changed: regenerate with `python -m molformer_kd_launcher`"


def test_version_is_the_package_version(capsys):
    assert launcher.main(["--version"]) == 0
    launcher.distill_main(["--version"])
    assert capsys.readouterr().out == f"molformer-kd {molformer_kd.__version__}\n" * 2


def test_only_recorded_command_lines_are_answered():
    assert launcher.recorded_answer(launcher.MOLFORMER_KD, ["-h"]) == launcher.real_output(
        launcher.MOLFORMER_KD, ["--help"]
    )
    for argv in ([], ["predict"], ["predict", "--model", "-h"], ["distill", "--config", "run.yaml"], ["--hel"]):
        assert launcher.recorded_answer(launcher.MOLFORMER_KD, argv) is None, argv
    assert launcher.recorded_answer(launcher.DISTILL_SCRIPT, ["--config", "run.yaml", "--help"]) is None


@pytest.mark.parametrize(
    ("program", "launch", "argv"), FAST_COMMAND_LINES, ids=[f"{p} {' '.join(a)}" for p, _, a in FAST_COMMAND_LINES]
)
def test_help_and_version_print_the_recording_without_importing_torch(program, launch, argv):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *launch, *argv], cwd=REPO, capture_output=True, text=True, check=True
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "transformers", "molformer_kd", "numpy"))
    assert heavy == []
    assert done.stdout == launcher.recorded_answer(program, argv)
