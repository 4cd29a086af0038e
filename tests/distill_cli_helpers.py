"""Running `distill.py --config FILE` as a user does (shared by the distill CLI tests): configs derived from the
example configs with fast settings, the run in a subprocess, and the logged losses of a stage."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# Settings that make a stage a few seconds on 2 CPU cores.
FAST = {
    "max_train_samples": 48,
    "max_test_samples": 24,
    "max_steps": 3,
    "per_device_train_batch_size": 8,
    "logging_steps": 1,
    "save_strategy": "no",
    "disable_tqdm": True,
}
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


def write_config(tmp_path, base: str | None = None, name="config.yaml", **changes) -> Path:
    """The example config `base` (or an empty one) with `changes`, output under `tmp_path / "run"`, written as YAML."""
    values = yaml.safe_load((CONFIGS / base).read_text()) if base else {}
    values["output_dir"] = str(tmp_path / "run")
    values.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def log_history(stage_dir):
    return json.loads((Path(stage_dir) / "trainer_state.json").read_text())["log_history"]
