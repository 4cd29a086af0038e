"""Runs that survive faults: resume after a kill, finished stages, half-written checkpoints, full disks, several
processes starting from an empty folder, and bad configs that fail in seconds (exit code 2, one line)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from distill_cli_helpers import TWO_PROCESSES, run_distill_cli
from safetensors.torch import load_file

from molformer_kd import distill_command as distill_run
from molformer_kd.distillation.checkpoints import (
    CHECKPOINT_COMPLETE,
    STAGE_COMPLETE,
    RunFileError,
    atomic_write_text,
    last_complete_checkpoint,
    reported_file_errors,
)
from molformer_kd.distillation.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# A GIN trained alone for 8 steps with checkpoints at 4 and 8: a few seconds on one core.
TEACHER_ONLY = {
    "stages": ["teacher"],
    "teacher_config": {"model_type": "molformer_gin", "preset": "tiny", "dropout": 0.1},
    "dataset": "qm9_embedded",
    "label_columns": ["gap"],
    "max_train_samples": 64,
    "use_cpu": True,
    "seed": 0,
    "per_device_train_batch_size": 8,
    "learning_rate": 1e-3,
    "max_steps": 8,
    "logging_steps": 2,
    "save_strategy": "steps",
    "save_steps": 4,
    "report_to": "none",
    "disable_tqdm": True,
}


def write_config(tmp_path, values, name="config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def weights(stage_dir) -> dict:
    return load_file(str(Path(stage_dir) / "model.safetensors"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run, never interrupted."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    distill_run.main(["--config", str(write_config(tmp_path, {**TEACHER_ONLY, "output_dir": str(tmp_path / "run")}))])
    return tmp_path / "run" / "teacher"


def test_checkpoints_and_stage_are_marked_complete(uninterrupted):
    assert (uninterrupted / "checkpoint-4" / CHECKPOINT_COMPLETE).is_file()
    assert (uninterrupted / "checkpoint-8" / CHECKPOINT_COMPLETE).is_file()
    assert json.loads((uninterrupted / STAGE_COMPLETE).read_text())["global_step"] == 8
    assert last_complete_checkpoint(uninterrupted) == str(uninterrupted / "checkpoint-8")
    seconds = json.loads((uninterrupted / STAGE_COMPLETE).read_text())["summary"]["train_wall_s"]
    assert seconds == json.loads((uninterrupted / "train_results.json").read_text())["train_wall_s"] > 0


def saved_seconds(checkpoint) -> float:
    """The training clock's total when `checkpoint` was written."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return state["stateful_callbacks"]["TrainingClock"]["args"]["seconds"]


def test_resuming_a_finished_run_is_a_no_op(tmp_path, uninterrupted, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted.parent, run_dir)
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "teacher").iterdir()}
    config = write_config(tmp_path, {**TEACHER_ONLY, "output_dir": str(run_dir), "resume_from_checkpoint": "latest"})
    (summary,) = distill_run.main(["--config", str(config)])
    assert summary["stage"] == "teacher"
    assert "already finished" in caplog.text
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "teacher").iterdir()}
    assert after == before  # no checkpoint-9, the exported model untouched


def test_half_written_checkpoint_is_never_resumed_from(tmp_path, uninterrupted):
    """A kill while checkpoint-8 was being written: resume continues from checkpoint-4 and ends with exactly the
    weights of the uninterrupted run."""
    stage_dir = tmp_path / "run" / "teacher"
    stage_dir.mkdir(parents=True)
    shutil.copytree(uninterrupted / "checkpoint-4", stage_dir / "checkpoint-4")
    partial = stage_dir / "checkpoint-8"
    partial.mkdir()
    data = (uninterrupted / "checkpoint-8" / "model.safetensors").read_bytes()
    (partial / "model.safetensors").write_bytes(data[: len(data) // 2])  # no trainer_state.json, no marker
    assert last_complete_checkpoint(stage_dir) == str(stage_dir / "checkpoint-4")
    config = {**TEACHER_ONLY, "output_dir": str(tmp_path / "run"), "resume_from_checkpoint": "latest"}
    distill_run.main(["--config", str(write_config(tmp_path, config))])
    assert (stage_dir / "checkpoint-8" / CHECKPOINT_COMPLETE).is_file()
    assert_same_weights(weights(stage_dir), weights(uninterrupted))
    # The wall time counts the run that wrote checkpoint-4 and the one that resumed from it.
    total = json.loads((stage_dir / STAGE_COMPLETE).read_text())["summary"]["train_wall_s"]
    assert total > saved_seconds(stage_dir / "checkpoint-4") > 0


def test_killed_after_the_last_checkpoint_exports_it_without_training_more(tmp_path, uninterrupted):
    stage_dir = tmp_path / "run" / "teacher"
    stage_dir.mkdir(parents=True)
    for name in ("checkpoint-4", "checkpoint-8"):
        shutil.copytree(uninterrupted / name, stage_dir / name)
    config = {**TEACHER_ONLY, "output_dir": str(tmp_path / "run"), "resume_from_checkpoint": "latest"}
    distill_run.main(["--config", str(write_config(tmp_path, config))])
    assert not (stage_dir / "checkpoint-9").exists()
    assert_same_weights(weights(stage_dir), weights(uninterrupted))
    summary = json.loads((stage_dir / STAGE_COMPLETE).read_text())["summary"]
    assert summary["train_wall_s"] == saved_seconds(stage_dir / "checkpoint-8")  # the training it exported


def test_kill_9_at_a_random_moment_then_resume_gives_the_uninterrupted_weights(tmp_path, uninterrupted):
    """A real SIGKILL as soon as the last checkpoint's folder appears (wherever its writing is by then)."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path, {**TEACHER_ONLY, "output_dir": str(run_dir)})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "distill.py"), "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = run_dir / "teacher" / "checkpoint-8"
    deadline = time.monotonic() + 240
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    resumed = write_config(
        tmp_path, {**TEACHER_ONLY, "output_dir": str(run_dir), "resume_from_checkpoint": "latest"}, "resume.yaml"
    )
    distill_run.main(["--config", str(resumed)])
    assert_same_weights(weights(run_dir / "teacher"), weights(uninterrupted))


def test_a_fresh_run_clears_checkpoints_of_an_earlier_run(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted.parent, run_dir)
    config = write_config(tmp_path, {**TEACHER_ONLY, "output_dir": str(run_dir), "max_steps": 4, "save_steps": 4})
    distill_run.main(["--config", str(config)])
    assert sorted(p.name for p in (run_dir / "teacher").glob("checkpoint-*")) == ["checkpoint-4"]
    # A later `latest` resumes this run's checkpoint, never the earlier run's checkpoint-8.
    assert last_complete_checkpoint(run_dir / "teacher") == str(run_dir / "teacher" / "checkpoint-4")


# ---------------------------------------------------------------------------------------------- file errors


def test_full_disk_is_reported_with_the_path(tmp_path):
    target = tmp_path / "checkpoint-3"
    with (
        pytest.raises(RunFileError, match=f"no space left on the device while writing {target}"),
        reported_file_errors(target),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    # torch.save's C++ stream error on a full disk says neither cause nor file.
    with pytest.raises(RunFileError, match=str(target)), reported_file_errors(target):
        raise RuntimeError("basic_ios::clear: iostream error")
    with pytest.raises(ValueError, match="unrelated"), reported_file_errors(target):  # other errors pass unchanged
        raise ValueError("unrelated")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_permission_error_names_the_path(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(RunFileError, match=f"no permission to write {locked / 'metrics.json'}"):
        atomic_write_text(locked / "metrics.json", "{}")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, '{"old": 1}')

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(RunFileError):
        atomic_write_text(path, '{"new": 2}')
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ---------------------------------------------------------------------------------------------- bad configs

BASE = "ccmd_graphormer3d_to_gin_tiny.yaml"

BAD_VALUES = {
    "negative learning rate in stage_overrides": (
        {"stage_overrides": {"distill": {"learning_rate": -1e-3}}},
        "stage_overrides.distill.learning_rate: -0.001 is out of range; it must be > 0",
    ),
    "batch size 0 in stage_overrides": (
        {"stage_overrides": {"teacher": {"per_device_train_batch_size": 0}}},
        "stage_overrides.teacher.per_device_train_batch_size: 0 is out of range",
    ),
    "string learning rate": ({"learning_rate": "1e-3"}, "learning_rate: '1e-3' is not a number"),
    "learning rate 0": ({"learning_rate": 0}, "learning_rate: 0 is out of range"),
    "label_columns as a string": ({"label_columns": "gap"}, r"label_columns: 'gap' is not a list .*\[gap\]"),
    "negative objective weight": (
        {"objectives": {"task": {"weight": 1.0}, "ccmd": {"weight": -0.5}}},
        "weight of 'ccmd' is -0.5",
    ),
    "negative noise_sigma": ({"noise_sigma": -1}, "noise_sigma: -1 is out of range"),
    "missing dataset file": ({"dataset": "/nonexistent/mols.csv"}, "dataset: file '/nonexistent/mols.csv' does not"),
    "huge multi_hop_max_dist": ({"multi_hop_max_dist": 1000000}, "multi_hop_max_dist: 1000000 is out of range"),
    "repeated stage": ({"stages": ["teacher", "teacher"]}, r"\['teacher'\] listed more than once"),
    "model setting of the wrong type": (
        {"student_config": {"model_type": "molformer_gin", "preset": "tiny", "hidden_size": "64"}},
        "student_config.hidden_size: '64' is not an integer",
    ),
    "boolean as a string": ({"use_cpu": "no"}, "use_cpu: 'no' is not true or false"),
    "unknown dataset name": ({"dataset": "qm9_embeded"}, "dataset: 'qm9_embeded' is not a dataset name"),
    "3D teacher on a CSV without conformers": (
        {"dataset": str(REPO / "tests" / "data" / "own_data.csv"), "label_columns": ["logS"]},
        "a 3D model needs 3D coordinates.*conformers",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_fail_before_any_model_is_built(tmp_path, case):
    changes, message = BAD_VALUES[case]
    values = {**yaml.safe_load((CONFIGS / BASE).read_text()), "output_dir": str(tmp_path / "run"), **changes}
    with pytest.raises(ValueError, match=message):  # a ConfigError, or a model config's ValueError
        distill_run.plan_from_cli(["--config", str(write_config(tmp_path, values))])
    assert not (tmp_path / "run").exists()


def test_missing_label_column_is_one_line_with_the_columns(tmp_path):
    values = {
        **yaml.safe_load((CONFIGS / BASE).read_text()),
        "output_dir": str(tmp_path / "run"),
        "dataset": str(REPO / "tests" / "data" / "own_data.csv"),
        "smiles_column": "SMILES",
        "label_columns": ["solubility"],
        "conformers": {"method": "etkdg"},
    }
    result = run_distill_cli(write_config(tmp_path, values), timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert "['solubility'] not found; columns are" in line and "logS" in line


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    values = {**yaml.safe_load((CONFIGS / BASE).read_text()), "output_dir": str(tmp_path / "taken")}
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        distill_run.plan_from_cli(["--config", str(write_config(tmp_path, values))])


def test_yaml_syntax_error_is_one_line_with_the_place(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("stages: [teacher\nlearning_rate: 1\n")
    result = run_distill_cli(path, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "YAML syntax error" in lines[0] and "line " in lines[0]
    assert "Traceback" not in result.stderr


def test_hub_push_with_server_down_fails_at_startup(tmp_path):
    values = {
        **yaml.safe_load((CONFIGS / BASE).read_text()),
        "output_dir": str(tmp_path / "run"),
        "push_to_hub": True,
        "hub_model_id": "tester/student",
    }
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test"}
    result = run_distill_cli(write_config(tmp_path, values), env=env, timeout=120)
    assert result.returncode == 2
    assert "push_to_hub: the hub at http://127.0.0.1:9 cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- two processes


@pytest.mark.parametrize("outcome", ["finished", "bad config"])
def test_the_process_group_is_destroyed_before_exit(tmp_path, monkeypatch, outcome):
    """A gloo group left to interpreter exit can abort a rank whose work is done; `main` tears it down however it
    ends. (The group is faked: a real one in the test process would outlive the test.)"""
    destroyed = []
    monkeypatch.setattr(distill_run.torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distill_run.torch.distributed, "destroy_process_group", lambda: destroyed.append(True))
    monkeypatch.setattr(distill_run, "_run", lambda argv, prog: [] if outcome == "finished" else sys.exit(2))
    if outcome == "finished":
        assert distill_run.main(["--config", "unused.yaml"]) == []
    else:
        with pytest.raises(SystemExit):
            distill_run.main(["--config", "unused.yaml"])
    assert destroyed == [True]


def test_readme_two_process_command_from_an_empty_folder(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on a teacher -> distill -> evaluate chain, starting from
    nothing: rank 1 must never read the teacher rank 0 is still writing."""
    values = {
        **yaml.safe_load((CONFIGS / BASE).read_text()),
        "output_dir": str(tmp_path / "run"),
        "max_train_samples": 32,
        "max_test_samples": 16,
        "max_steps": 2,
        "save_steps": 1,
        "per_device_train_batch_size": 4,
        "disable_tqdm": True,
    }
    result = run_distill_cli(
        write_config(tmp_path, values), launcher=TWO_PROCESSES, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr  # gloo's threads torn down before exit, not at it
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert metrics["metrics"]["test"]["gap_count"] == 16
    for stage in ("teacher", "distill"):
        assert (tmp_path / "run" / stage / STAGE_COMPLETE).is_file()
        assert all((p / CHECKPOINT_COMPLETE).is_file() for p in (tmp_path / "run" / stage).glob("checkpoint-*"))
