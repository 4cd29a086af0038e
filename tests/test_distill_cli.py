"""distill.py: start-up validation, tiny end-to-end stage chains, 2-process DDP vs 1 process, push to a local hub."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from distill_cli_helpers import CONFIGS, FAST, TWO_PROCESSES, log_history, run_distill_cli, write_config
from transformers import CONFIG_MAPPING, AutoConfig, AutoModel

from molformer_kd import distill_command as distill_run
from molformer_kd.modeling.auto import AutoModelForMolecularPropertyPrediction
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["fixtures_hub"]


def plan(path):
    return distill_run.plan_from_cli(["--config", str(path)])


# Every example config: property (ccmd_, stkd_, dnd_) and energy/force (gnn_kd_) distillation. configs/demo/ is
# `make demo`'s chain, whose later parts read the checkpoints of the earlier ones.
EXAMPLE_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("config", EXAMPLE_CONFIGS)
def test_example_configs_validate(tmp_path, config):
    # The full-size configs train in bf16 on a GPU; TrainingArguments refuses bf16 on a CPU-only machine.
    cpu = {"bf16": False, "use_cpu": True} if not torch.cuda.is_available() else {}
    run = plan(write_config(tmp_path, config, **cpu))
    assert [stage.name for stage in run.stages] == yaml.safe_load((CONFIGS / config).read_text())["stages"]


BAD_CONFIGS = {
    "unknown objective": ({"objectives": {"task": {}, "ccmdx": {}}}, "unknown objective 'ccmdx'"),
    "bad objective option": ({"objectives": {"ccmd": {"variant": "fancy"}}}, "variant must be one of"),
    "unknown option": ({"objectives": {"ccmd": {"temperature": 2}}}, "bad options"),
    "unknown stage": ({"stages": ["teacher", "distil"]}, "unknown stage"),
    "unknown key": ({"learning_rat": 0.1}, "not used by the HfArgumentParser"),
    "bad stage override": ({"stage_overrides": {"distill": {"learning_rat": 0.1}}}, "bad TrainingArguments overrides"),
    "missing teacher": (
        {"stages": ["distill"], "teacher_name_or_path": "/nonexistent/teacher"},
        "missing teacher checkpoint '/nonexistent/teacher'",
    ),
    "unknown model type": ({"student_config": {"model_type": "graphormer2"}}, "unknown model_type 'graphormer2'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configs_fail_at_startup(tmp_path, case):
    changes, message = BAD_CONFIGS[case]
    with pytest.raises(ValueError, match=message):
        plan(write_config(tmp_path, "ccmd_graphormer3d_to_graphormer2d_tiny.yaml", **changes))


@pytest.mark.parametrize(
    "objectives,message",
    [
        ({"stkd_feature": {"pairs": [[4, 1]]}}, "needs teacher layer 4"),
        ({"stkd_attention": {"pairs": [[3, 2]]}}, "needs student layer 2"),
        ({"stkd_attention": {"pairs": [[3, 0]]}}, "biased layer"),
    ],
)
def test_stkd_pairs_beyond_layer_counts_fail_at_startup(tmp_path, objectives, message):
    with pytest.raises(ValueError, match=message):
        plan(write_config(tmp_path, "stkd_graphormer_to_smiles_transformer_tiny.yaml", objectives=objectives))


def test_bad_config_exits_before_loading_anything(tmp_path):
    path = write_config(
        tmp_path,
        "ccmd_graphormer3d_to_gin_tiny.yaml",
        stages=["distill"],
        teacher_name_or_path=str(tmp_path / "no_teacher"),
    )
    result = run_distill_cli(path, timeout=120)
    assert result.returncode == 2
    assert "missing teacher checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_ccmd_gin_chain_teacher_distill_finetune_evaluate(tmp_path):
    path = write_config(
        tmp_path, "ccmd_graphormer3d_to_gin_tiny.yaml", stages=["teacher", "distill", "finetune", "evaluate"], **FAST
    )
    distill_run.main(["--config", str(path)])
    run = tmp_path / "run"
    for stage in ("teacher", "distill", "finetune"):
        model = AutoModelForMolecularPropertyPrediction.from_pretrained(run / stage)
        assert (run / stage / "model.safetensors").is_file()
        assert MoleculeFeaturizer.from_pretrained(run / stage).use_3d == (stage == "teacher")
        assert model.config.label_names == ["gap"]
    distill_logs = [e for e in log_history(run / "distill") if "loss" in e]
    assert len(distill_logs) == 3 and all({"task", "ccmd_global", "ccmd_local"} <= set(e) for e in distill_logs)
    # The exported student holds no CCMD projection (GIN width 32 == teacher width 32 here anyway) and no teacher.
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["model"] == str(run / "finetune")
    assert metrics["metrics"]["test"]["gap_count"] == 24
    assert 0 < metrics["metrics"]["test"]["gap_mae"] < 10


def test_dnd_chain_denoise_distill_finetune(tmp_path):
    path = write_config(
        tmp_path,
        "dnd_graphormer3d_to_gin_tiny.yaml",
        stages=["denoise", "distill", "finetune"],
        objectives={"dnd": {"mode": "graph"}},
        **FAST,
    )
    distill_run.main(["--config", str(path)])
    run = tmp_path / "run"
    assert all("task" in e for e in log_history(run / "denoise") if "loss" in e)
    distill_logs = [e for e in log_history(run / "distill") if "loss" in e]
    assert distill_logs and all("dnd_graph" in e and "task" not in e for e in distill_logs)
    # The distilled GIN backbone is what fine-tuning starts from.
    distilled = AutoModel.from_pretrained(run / "distill")
    assert distilled.config.model_type == "molformer_gin"
    assert (run / "finetune" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "teacher",
    [
        {"model_type": "molformer_painn", "hidden_size": 16, "num_layers": 2, "num_rbf": 8, "hydrogens": False},
        {"model_type": "molformer_painn", "hidden_size": 16, "num_layers": 2, "num_rbf": 8, "hydrogens": True},
        {"model_type": "molformer_schnet", "hidden_size": 16, "num_filters": 12, "num_layers": 2, "hydrogens": True},
    ],
    ids=["painn_heavy_atoms", "painn_all_atoms", "schnet_all_atoms"],
)
def test_dnd_chain_with_a_3d_gnn_denoiser(tmp_path, teacher):
    """Any 3D model with a denoising head is a D&D teacher: a PaiNN or SchNet denoises the QM9 coordinates (every
    atom, or the heavy atoms only), then a GIN distils its heavy-atom representations."""
    path = write_config(
        tmp_path,
        "dnd_graphormer3d_to_gin_tiny.yaml",
        stages=["denoise", "distill"],
        teacher_config=teacher,
        objectives={"dnd": {"mode": "node"}},
        **FAST,
    )
    distill_run.main(["--config", str(path)])
    run = tmp_path / "run"
    denoise_logs = [e for e in log_history(run / "denoise") if "loss" in e]
    assert denoise_logs and all(math.isfinite(e["loss"]) and e["loss"] > 0 for e in denoise_logs)
    assert AutoConfig.from_pretrained(run / "denoise").model_type == teacher["model_type"]
    distill_logs = [e for e in log_history(run / "distill") if "loss" in e]
    assert distill_logs and all(e["dnd_node"] > 0 for e in distill_logs)
    assert AutoModel.from_pretrained(run / "distill").config.model_type == "molformer_gin"


def test_stkd_chain_graph_teacher_to_smiles_student_with_initial_stage(tmp_path):
    fast = {**FAST, "max_steps": 4}
    path = write_config(
        tmp_path,
        "stkd_graphormer_to_smiles_transformer_tiny.yaml",
        stages=["teacher", "distill"],
        initial_stage_epochs=0.25,
        **fast,
    )  # 48 rows / batch 8 = 6 steps per epoch
    distill_run.main(["--config", str(path)])
    logs = [e for e in log_history(tmp_path / "run" / "distill") if "loss" in e]
    assert len(logs) == 4 and all({"task", "stkd_feature", "stkd_attention"} <= set(e) for e in logs)
    for entry in logs[:2]:  # epoch < 0.25: initial stage weights (task 0, alpha 1, beta 4)
        assert entry["loss"] == pytest.approx(entry["stkd_feature"] + 4 * entry["stkd_attention"], rel=1e-4)
    for entry in logs[2:]:  # then the configured weights (task 1, alpha 0.5, beta 2)
        expected = entry["task"] + 0.5 * entry["stkd_feature"] + 2 * entry["stkd_attention"]
        assert entry["loss"] == pytest.approx(expected, rel=1e-4)
    student = AutoModelForMolecularPropertyPrediction.from_pretrained(tmp_path / "run" / "distill")
    assert student.config.model_type == "molformer_smiles_transformer"


def test_two_processes_match_one_process(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` (gloo, CPU) with batch 4 per process logs the same losses as
    one process with batch 8: same data order, molecule-weighted loss, DDP-averaged gradients."""
    teacher_dir = tmp_path / "teacher"
    torch.manual_seed(0)
    GraphormerForMolecularPropertyPrediction(
        GraphormerConfig.from_preset("tiny", geometry="3d", num_labels=1)
    ).save_pretrained(teacher_dir)
    MoleculeFeaturizer(use_3d=True, max_spatial=32).save_pretrained(teacher_dir)
    common = {
        "stages": ["distill"],
        "teacher_name_or_path": str(teacher_dir),
        "max_train_samples": 64,
        "learning_rate": 1e-2,
        "lr_scheduler_type": "constant",
        "max_steps": 6,
        "logging_steps": 1,
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
    one = write_config(
        tmp_path,
        "ccmd_graphormer3d_to_graphormer2d_tiny.yaml",
        name="one.yaml",
        per_device_train_batch_size=8,
        **common,
    )
    two = write_config(
        tmp_path,
        "ccmd_graphormer3d_to_graphormer2d_tiny.yaml",
        name="two.yaml",
        per_device_train_batch_size=4,
        **common,
    )
    two_values = yaml.safe_load(two.read_text())
    two_values["output_dir"] = str(tmp_path / "run_two")
    two.write_text(yaml.safe_dump(two_values))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = run_distill_cli(two, launcher=TWO_PROCESSES, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    distill_run.main(["--config", str(one)])
    single = [e for e in log_history(tmp_path / "run" / "distill") if "loss" in e]
    double = [e for e in log_history(tmp_path / "run_two" / "distill") if "loss" in e]
    assert len(single) == len(double) == 6
    for a, b in zip(single, double):
        for key in ("loss", "task", "ccmd_global", "ccmd_local"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (key, single, double)


def test_push_student_to_local_hub(tmp_path, hub_env, hub_python):
    from fixtures_students import save_tiny_gin_student

    student_dir = tmp_path / "student"
    save_tiny_gin_student(student_dir)
    path = write_config(
        tmp_path,
        None,
        stages=["evaluate"],
        evaluate_name_or_path=str(student_dir),
        label_columns=["gap", "homo"],
        max_test_samples=16,
        use_cpu=True,
        push_to_hub=True,
        hub_model_id="tester/tiny-gin-student",
        report_to="none",
        disable_tqdm=True,
    )
    result = run_distill_cli(path, env=hub_env)
    assert result.returncode == 0, result.stderr[-3000:]
    listing = hub_python(
        """
        import sys
        from huggingface_hub import HfApi, hf_hub_download
        print(sorted(HfApi().list_repo_files(sys.argv[1])))
        print(open(hf_hub_download(sys.argv[1], "README.md")).read())
        """,
        args=["tester/tiny-gin-student"],
    ).stdout
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert name in listing
    assert "gap_mae" in listing
    # The card's usage snippet loads the repo it was pushed to, not the name of the local stage folder.
    assert 'model="tester/tiny-gin-student"' in listing


# The sets of runs `make pretrained` trains (PRETRAINED_SET): configs/<set>/*.yaml, the students reading the set's own
# teacher. Each must pass start-up validation here, not hours into a rebuild.
PRETRAINED_SET_CONFIGS = sorted(f"{path.parent.name}/{path.name}" for path in CONFIGS.glob("pretrained*/*.yaml"))


@pytest.mark.parametrize("config", PRETRAINED_SET_CONFIGS)
def test_pretrained_set_configs_validate(tmp_path, config):
    set_dir = CONFIGS / Path(config).parent
    teacher = yaml.safe_load((set_dir / "qm9_teacher.yaml").read_text())
    assert teacher["stages"][0] == "teacher"
    values = yaml.safe_load((CONFIGS / config).read_text())
    # The same labeled rows; a student may add unlabeled ones (`unlabeled` takes the rows after them).
    labeled_split = {key: value for key, value in values["split"].items() if key != "unlabeled"}
    assert labeled_split == teacher["split"] and values["label_columns"] == teacher["label_columns"]
    changes = {}
    if "teacher_name_or_path" in values:
        # A teacher one of the set's own configs trains (qm9_teacher.yaml, or another teacher of the set), as a config:
        # validation reads its layer count and width, not its weights.
        teachers = {}
        for path in set_dir.glob("*.yaml"):
            other = yaml.safe_load(path.read_text())
            if other["stages"][0] == "teacher":
                teachers[f"{other['output_dir']}/teacher"] = other["teacher_config"]
        assert values["teacher_name_or_path"] in teachers
        config_values = dict(teachers[values["teacher_name_or_path"]])
        config_class = CONFIG_MAPPING[config_values.pop("model_type")]
        config_class(**config_values, num_labels=len(teacher["label_columns"])).save_pretrained(tmp_path / "t")
        changes["teacher_name_or_path"] = str(tmp_path / "t")
    run = plan(write_config(tmp_path, config, **changes))
    assert [stage.name for stage in run.stages] == values["stages"]
