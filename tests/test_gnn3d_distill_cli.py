"""distill.py on the energy/force task (KD-GNN): SchNet/PaiNN teachers and students through the shared stages."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from distill_cli_helpers import run_distill_cli
from safetensors import safe_open

from molformer_kd import distill_command as distill_run
from molformer_kd.data.xtb import load_qm9_xtb
from molformer_kd.distillation.arguments import DataArguments
from molformer_kd.distillation.tasks import load_records
from molformer_kd.distillation.tasks.energy_forces import EnergyForcesTask, evaluate_energy_forces
from molformer_kd.modeling.auto import AutoModelForEnergyAndForces
from molformer_kd.tokenization.collators import PointCloudCollator

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

TINY = "gnn_kd_painn_to_painn_tiny.yaml"
METRIC_NAMES = {"energy_mae_meV", "force_mae_meV_per_A", "force_cos", "efwt_percent"}


def write_config(tmp_path, base=TINY, **changes) -> Path:
    values = yaml.safe_load((CONFIGS / base).read_text()) if base else {}
    values.update({"output_dir": str(tmp_path / "run"), "disable_tqdm": True, **changes})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def train_logs(stage_dir):
    history = json.loads((Path(stage_dir) / "trainer_state.json").read_text())["log_history"]
    return [entry for entry in history if "loss" in entry]


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("gnn_kd_*.yaml")))
def test_gnn_configs_plan_the_energy_force_task(tmp_path, config):
    run = distill_run.plan_from_cli(["--config", str(write_config(tmp_path, config))])
    assert isinstance(run.kind, EnergyForcesTask)
    assert [stage.name for stage in run.stages] == yaml.safe_load((CONFIGS / config).read_text())["stages"]


def test_tiny_painn_config_end_to_end_in_a_subprocess(tmp_path):
    """teacher -> distill (energy_forces + n2n) -> evaluate: metrics.json holds the KD-GNN metrics of the student."""
    path = write_config(tmp_path)
    result = run_distill_cli(
        path, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    teacher = AutoModelForEnergyAndForces.from_pretrained(run / "teacher")
    student = AutoModelForEnergyAndForces.from_pretrained(run / "distill")
    assert (teacher.config.model_type, teacher.config.hidden_size) == ("molformer_painn", 32)
    assert (student.config.model_type, student.config.hidden_size) == ("molformer_painn", 16)
    # Both models carry the training set's energy statistics (per-element reference energies of H, C, N, O, F).
    assert student.config.atom_reference_energies == teacher.config.atom_reference_energies
    assert all(student.config.atom_reference_energies[z] != 0 for z in (1, 6, 7, 8))
    # The training geometries' elements travel with the checkpoint (the ASE calculator refuses others).
    assert set(student.config.applicability_domain["elements"]) <= {"C", "N", "O", "F"}
    # The export holds the student alone: n2n's projection (16 -> 32) stays in the training module.
    with safe_open(run / "distill" / "model.safetensors", "pt") as weights:
        assert set(weights.keys()) == set(student.state_dict())
    # The distill stage read the teacher's n2n targets from its cache (the config's teacher_cache: true).
    assert len(list((run / "teacher_cache").glob("teacher-*.arrow"))) == 1
    logs = train_logs(run / "distill")
    assert len(logs) == 8 and all({"task_energy", "task_forces", "n2n"} <= set(entry) for entry in logs)
    assert all(
        {"task_energy", "task_forces"} <= set(entry) and "n2n" not in entry for entry in train_logs(run / "teacher")
    )

    summary = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert summary["model"] == str(run / "distill") and summary["split"] == "test"
    metrics = summary["metrics"]["test"]
    assert set(metrics) == METRIC_NAMES and all(math.isfinite(value) for value in metrics.values())
    # The same numbers from the saved student, recomputed here on the run's 32 test rows (max_test_samples: a seeded
    # draw with split_seed 0).
    test_rows = load_records(DataArguments(dataset="qm9_xtb", max_test_samples=32))["test"]
    assert evaluate_energy_forces(student, test_rows) == pytest.approx(metrics, rel=1e-5)


def test_autograd_force_teacher_vanilla_kd_then_finetune(tmp_path):
    """A SchNet teacher (forces = -dE/dx, run under no_grad by the trainer) gives its energies and forces to
    vanilla1/vanilla2; the distilled SchNet is then fine-tuned on the labels and evaluated."""
    small = {"model_type": "molformer_schnet", "hidden_size": 16, "num_filters": 16, "num_layers": 2, "num_rbf": 12}
    path = write_config(
        tmp_path,
        stages=["teacher", "distill", "finetune", "evaluate"],
        teacher_config={**small, "force_loss_weight": 10.0},
        student_config={**small, "hidden_size": 8, "num_filters": 8, "force_loss_weight": 10.0},
        objectives={"vanilla1": {"weight": 1.0}, "vanilla2": {"weight": 10.0}},
        max_train_samples=32,
        max_test_samples=16,
        max_eval_samples=8,
        max_steps=4,
        logging_steps=2,
        stage_overrides={"finetune": {"eval_strategy": "steps", "eval_steps": 4}},
    )
    summaries = distill_run.main(["--config", str(path)])
    run = tmp_path / "run"
    logs = train_logs(run / "distill")
    assert logs and all({"vanilla1_energy", "vanilla1_forces", "vanilla2"} <= set(entry) for entry in logs)
    assert all("task_energy" not in entry for entry in logs)  # label-free distillation
    # The saved teacher, run the way DistillationTrainer runs it (torch.no_grad), still gives -dE/dx.
    teacher = AutoModelForEnergyAndForces.from_pretrained(run / "teacher").eval()
    batch = PointCloudCollator()(load_qm9_xtb(split_seed=0)["test"].select(range(4)))
    inputs = {key: batch[key] for key in ("atomic_numbers", "pos", "atom_mask")}
    with torch.no_grad():
        frozen = teacher(**inputs)
    pos = inputs["pos"].clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(teacher(**{**inputs, "pos": pos}).energy.sum(), pos)
    assert frozen.forces.abs().max() > 0
    assert torch.allclose(frozen.forces, -gradient * inputs["atom_mask"][..., None], atol=1e-6)
    assert all("task_forces" in entry for entry in train_logs(run / "finetune"))
    history = json.loads((run / "finetune" / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if {"eval_loss", "eval_task_energy", "eval_task_forces"} <= set(entry)]
    assert summaries[-1]["model"] == str(run / "finetune")
    assert set(summaries[-1]["metrics"]["test"]) == METRIC_NAMES
    finetuned = AutoModelForEnergyAndForces.from_pretrained(run / "finetune")
    assert (finetuned.config.model_type, finetuned.config.hidden_size) == ("molformer_schnet", 8)


@pytest.mark.parametrize(
    "changes,message",
    [
        # A PaiNN is a property model too now (all-atom teacher), but the energy/force objectives need energy models.
        (
            {"dataset": "qm9_embedded"},
            "objective 'energy_forces' belongs to the 'energy_forces' task kind, but this run's task kind is 'prop",
        ),
        (
            {"dataset": "qm9_embedded", "objectives": {"task": {}, "n2n": {}}},
            "objective 'n2n' belongs to the 'energy_forces' task kind.*its objectives are .*'ccmd'",
        ),
        (
            {"objectives": {"energy_forces": {}, "ccmd": {}}},
            "objective 'ccmd' belongs to the 'property' task kind, but this run's task kind is 'energy_forces'",
        ),
        (
            {"student_config": {"model_type": "molformer_gin", "preset": "tiny"}},
            "student_config: model_type 'molformer_gin' has no energy/force model",
        ),
        ({"stages": ["denoise"]}, "stage 'denoise': model_type 'molformer_painn' has no denoising head"),
        ({"objectives": {"v2v": {"source": "vectors"}}, "student_config": {"model_type": "molformer_schnet"}}, "v2v"),
    ],
)
def test_models_that_do_not_fit_the_task_fail_at_startup(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        distill_run.plan_from_cli(["--config", str(write_config(tmp_path, **changes))])
