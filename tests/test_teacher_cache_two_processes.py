"""`teacher_cache: true` under `accelerate launch` with 2 processes (gloo, CPU): the main process writes the cache,
the other reads it after the barrier, and the logged losses equal one process with the live teacher."""

import os

import pytest
import torch
import yaml
from distill_cli_helpers import TWO_PROCESSES, log_history, run_distill_cli, write_config

from molformer_kd import distill_command as distill_run
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction
from molformer_kd.tokenization.featurization import MoleculeFeaturizer


def test_two_processes_with_cache_match_one_process_without(tmp_path):
    teacher_dir = tmp_path / "teacher"
    torch.manual_seed(0)
    GraphormerForMolecularPropertyPrediction(
        GraphormerConfig.from_preset("tiny", geometry="3d", num_labels=1)
    ).save_pretrained(teacher_dir)
    MoleculeFeaturizer(use_3d=True).save_pretrained(teacher_dir)
    common = {
        "stages": ["distill"],
        "teacher_name_or_path": str(teacher_dir),
        "max_train_samples": 64,
        "max_eval_samples": 16,
        "learning_rate": 1e-2,
        "lr_scheduler_type": "constant",
        "max_steps": 4,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": 2,
        "save_strategy": "no",
        "disable_tqdm": True,
        "student_config": {
            "model_type": "molformer_graphormer",
            "preset": "tiny",
            "geometry": "2d",
            "hidden_size": 16,
            "num_attention_heads": 2,
            "ffn_size": 16,
        },
    }
    base = "ccmd_graphormer3d_to_graphormer2d_tiny.yaml"
    one = write_config(tmp_path, base, name="one.yaml", per_device_train_batch_size=8, **common)
    two = write_config(
        tmp_path,
        base,
        name="two.yaml",
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        teacher_cache=True,
        **common,
    )
    two_values = yaml.safe_load(two.read_text())
    two_values["output_dir"] = str(tmp_path / "run_two")
    two.write_text(yaml.safe_dump(two_values))
    result = run_distill_cli(two, launcher=TWO_PROCESSES, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-20000:]
    distill_run.main(["--config", str(one)])

    # One cache file (and its description) per split, written once; no temporary file left behind.
    cache_dir = tmp_path / "run_two" / "teacher_cache"
    names = sorted(p.name for p in cache_dir.iterdir())
    assert len(names) == 4 and not [n for n in names if n.startswith(".")]
    single = [e for e in log_history(tmp_path / "run" / "distill") if "loss" in e or "eval_loss" in e]
    double = [e for e in log_history(tmp_path / "run_two" / "distill") if "loss" in e or "eval_loss" in e]
    assert len(single) == len(double) == 6  # 4 training logs, 2 evaluations
    for a, b in zip(single, double):
        for key in ("loss", "task", "ccmd_global", "ccmd_local", "eval_loss", "eval_ccmd_local"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (key, single, double)
