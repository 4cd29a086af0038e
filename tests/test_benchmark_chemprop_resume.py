"""benchmarks/chemprop_qm9.py resumes an interrupted chemprop run (benchmarks/chemprop_resume.py) instead of
restarting it: the command it builds, and (where chemprop's own environment and full QM9 exist) a real run killed
after its first epoch and finished by a second call."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHEMPROP = ROOT / ".venv-chemprop" / "bin" / "chemprop"


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chemprop_resume = load("chemprop_resume")


def test_wrapper_arguments():
    options, rest = chemprop_resume.split_arguments(["--resume-from", "x/last.ckpt", "--", "train", "--epochs", "3"])
    assert options.resume_from == Path("x/last.ckpt") and rest == ["train", "--epochs", "3"]
    options, rest = chemprop_resume.split_arguments(["--", "train"])
    assert options.resume_from is None and rest == ["train"]
    with pytest.raises(SystemExit, match="usage"):
        chemprop_resume.split_arguments(["train"])


def test_resumed_command_runs_the_same_arguments_with_chemprops_python():
    chemprop_qm9 = load("chemprop_qm9")
    command = ["/env/bin/chemprop", "train", "--data-path", "a.csv", "--epochs", "50"]
    resumed = chemprop_qm9.resumed_command(command, Path("/run/last.ckpt"))
    assert resumed[:5] == [
        "/env/bin/python",
        str(ROOT / "benchmarks" / "chemprop_resume.py"),
        "--resume-from",
        "/run/last.ckpt",
        "--",
    ]
    assert resumed[5:] == command[1:]


def _ready() -> str | None:
    if not CHEMPROP.is_file():
        return "no chemprop environment (make pretrained builds .venv-chemprop)"
    if importlib.util.find_spec("qm9pack") is None:
        return "no full QM9 (qm9pack extra)"
    return None


@pytest.mark.skipif(_ready() is not None, reason=str(_ready()))
def test_an_interrupted_chemprop_run_resumes_where_it_stopped(tmp_path):
    epochs = 4
    argv = [sys.executable, str(ROOT / "benchmarks" / "chemprop_qm9.py"), "--epochs", str(epochs)]
    argv += ["--max-train", "2000", "--max-validation", "100", "--max-test", "100"]
    argv += ["--work-dir", str(tmp_path), "--results-dir", str(tmp_path), "--results-name", "smoke"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    progress = tmp_path / "train_progress.json"
    first = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while not (progress.is_file() and json.loads(progress.read_text())["epoch_end_s"]):
            assert first.poll() is None and time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the harness and chemprop train under it, as a session end would
        first.wait()
    done_before = len(json.loads(progress.read_text())["epoch_end_s"])
    assert done_before < epochs

    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    budget = json.loads((tmp_path / "smoke.json").read_text())["budget"]
    assert budget["train_resumes"] == 1
    assert budget["epochs_run"] == epochs and len(budget["epoch_end_s"]) == epochs
    assert budget["epoch_end_s"] == sorted(budget["epoch_end_s"])
    assert "Restored all states from the checkpoint" in (tmp_path / "chemprop_train.log").read_text()
