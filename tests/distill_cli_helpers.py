"""Running `distill.py --config FILE` in a subprocess, as a user does (shared by the distill CLI tests)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `accelerate launch` with two CPU processes (gloo). Port 0: the launcher takes a free port, so two-process tests never
# collide with each other or with a port still in TIME_WAIT.
TWO_PROCESSES = (
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--main_process_port",
    "0",
)


def run_distill_cli(config, launcher=(sys.executable,), env=None, timeout=300):
    """`launcher distill.py --config config` from the repository root; returns the CompletedProcess (text output)."""
    return subprocess.run(
        [*launcher, str(REPO / "distill.py"), "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )
