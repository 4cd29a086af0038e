"""The finetune stage's task head: drawn afresh for other labels or another problem type, kept for the same task.

HF `from_pretrained(..., ignore_mismatched_sizes=True)` re-initialises only weights whose shape changed, so a 1-label
head trained on `gap` would silently start a 1-label fine-tuning on another quantity from the old head's weights.
"""

import csv
import logging
import math
from pathlib import Path

import pytest
import torch
import yaml

from molformer_kd import distill_command as distill_run
from molformer_kd.data import load_embedded_qm9
from molformer_kd.distillation.tasks import load_records, new_processor
from molformer_kd.modeling.auto import AutoModelForMolecularPropertyPrediction
from molformer_kd.modeling.configuration_gin import GINConfig
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction

REPO = Path(__file__).resolve().parents[1]

FAMILIES = {
    "gin": (GINConfig, GINForMolecularPropertyPrediction),
    "graphormer": (GraphormerConfig, GraphormerForMolecularPropertyPrediction),
}
TRAINED_HEAD_VALUE = 0.5  # every head weight of the checkpoint: far from any fresh draw of either family


def save_gap_checkpoint(directory, family: str):
    """A tiny 1-label `gap` regression model whose head looks trained (all weights 0.5), with its featurizer."""
    config_class, model_class = FAMILIES[family]
    torch.manual_seed(0)
    config = config_class.from_preset(
        "tiny", num_labels=1, label_names=["gap"], label_mean=[6.8], label_std=[1.3], problem_type="regression"
    )
    model = model_class(config)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.fill_(TRAINED_HEAD_VALUE)
    model.save_pretrained(directory)
    new_processor(config).save_pretrained(directory)
    return {name: tensor.clone() for name, tensor in model.named_parameters()}


def split_head(parameters: dict):
    head = {k: v for k, v in parameters.items() if k.startswith("head.")}
    backbone = {k: v for k, v in parameters.items() if not k.startswith("head.")}
    assert head and backbone
    return head, backbone


# ------------------------------------------------------------------------------------------------------- the mixin


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_reset_task_head_redraws_a_loaded_head_with_the_family_init(tmp_path, family):
    """After `from_pretrained` (which flags loaded weights as initialised) the head is drawn exactly as the family's
    `_init_weights` draws it (GIN: Glorot uniform; Graphormer: normal(0, initializer_range)), zero biases."""
    checkpoint = save_gap_checkpoint(tmp_path, family)
    model = AutoModelForMolecularPropertyPrediction.from_pretrained(tmp_path)
    dense, out_proj = model.head.dense.weight, model.head.out_proj.weight

    torch.manual_seed(7)
    model.reset_task_head()
    # nn.Module.apply visits dense, then out_proj: the same two draws from the same seed, made independently here.
    torch.manual_seed(7)
    if family == "gin":
        expected = [torch.nn.init.xavier_uniform_(torch.empty(w.shape)) for w in (dense, out_proj)]
    else:
        std = model.config.initializer_range
        expected = [torch.nn.init.normal_(torch.empty(w.shape), 0.0, std) for w in (dense, out_proj)]
    torch.testing.assert_close(model.head.dense.weight, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(model.head.out_proj.weight, expected[1], rtol=0, atol=0)
    assert not model.head.dense.bias.any() and not model.head.out_proj.bias.any()
    _, backbone = split_head(checkpoint)
    for name, tensor in model.named_parameters():
        if name in backbone:
            torch.testing.assert_close(tensor, backbone[name], rtol=0, atol=0, msg=name)


# ------------------------------------------------------------------------------------------------------- distill.py


@pytest.fixture(scope="module")
def qm9_csv(tmp_path_factory):
    """60 real QM9 molecules: their gap and homo (eV) and a binary `gap` label (gap above 7 eV) in a second file."""
    train = load_embedded_qm9()["train"].select(range(60))
    directory = tmp_path_factory.mktemp("data")
    values, binary = directory / "qm9.csv", directory / "qm9_binary.csv"
    with open(values, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["smiles", "gap", "homo"])
        writer.writerows(zip(train["smiles"], train["gap"], train["homo"]))
    with open(binary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["smiles", "gap"])
        writer.writerows((s, int(g > 7.0)) for s, g in zip(train["smiles"], train["gap"]))
    return {"regression": values, "classification": binary}


def finetune(tmp_path, checkpoint_dir, dataset, label, problem_type):
    """The student the finetune stage of this config starts training from (planned and built as distill.py does)."""
    config = {
        "output_dir": str(tmp_path / "run"),
        "stages": ["finetune"],
        "student_name_or_path": str(checkpoint_dir),
        "dataset": str(dataset),
        "label_columns": [label],
        "problem_type": problem_type,
        "use_cpu": True,
        "max_steps": 1,
        "per_device_train_batch_size": 16,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run = distill_run.plan_from_cli(["--config", str(path)])
    (stage,) = run.stages
    assert stage.summary() == {
        "stage": "finetune",
        "output_dir": str(tmp_path / "run" / "finetune"),
        "initialized_from": str(checkpoint_dir),
    }
    model, _ = stage.build_student(run, load_records(run.data_args, run.kind))
    return model, {name: tensor.detach() for name, tensor in model.named_parameters()}


CASES = [
    # (family, label, problem_type, new head?)
    ("gin", "homo", "regression", True),  # same head shape (1 output), another quantity
    ("gin", "gap", "classification", True),  # same name and shape, another problem type
    ("gin", "gap", "regression", False),  # the same task: training goes on from the trained head
    ("graphormer", "homo", "regression", True),
    ("graphormer", "gap", "regression", False),
]


@pytest.mark.parametrize("family,label,problem_type,new_head", CASES, ids=[f"{f}-{lab}-{p}" for f, lab, p, _ in CASES])
def test_finetune_stage_task_head(tmp_path, monkeypatch, caplog, qm9_csv, family, label, problem_type, new_head):
    monkeypatch.setenv("MOLFORMER_KD_CACHE", str(tmp_path / "cache"))
    checkpoint_dir = tmp_path / "distilled"
    checkpoint_head, checkpoint_backbone = split_head(save_gap_checkpoint(checkpoint_dir, family))
    with caplog.at_level(logging.INFO, logger="molformer_kd.distillation.stages.finetune"):
        model, parameters = finetune(tmp_path, checkpoint_dir, qm9_csv[problem_type], label, problem_type)
    head, backbone = split_head(parameters)
    messages = [r.getMessage() for r in caplog.records if r.name == "molformer_kd.distillation.stages.finetune"]

    assert model.config.label_names == [label]
    assert sorted(backbone) == sorted(checkpoint_backbone)
    for name, tensor in backbone.items():  # the backbone is always the checkpoint's
        torch.testing.assert_close(tensor, checkpoint_backbone[name], rtol=0, atol=0, msg=name)
    if not new_head:
        for name, tensor in head.items():
            torch.testing.assert_close(tensor, checkpoint_head[name], rtol=0, atol=0, msg=name)
        assert messages == [f"finetune: {checkpoint_dir} already predicts these labels; its task head is kept"]
        return

    head_problem_type = "regression" if problem_type == "regression" else "multi_label_classification"
    expected = (
        f"finetune: {checkpoint_dir} predicted ['gap'] (regression); new task head for ['{label}'] "
        f"({head_problem_type}), backbone kept"
    )
    assert messages == [expected]
    assert not head["head.dense.bias"].any() and not head["head.out_proj.bias"].any()
    for name in ("head.dense.weight", "head.out_proj.weight"):
        weight = head[name]
        assert not torch.isclose(weight, torch.tensor(TRAINED_HEAD_VALUE)).any(), name
        fan_out, fan_in = weight.shape
        if family == "gin":  # Glorot uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
            assert weight.abs().max() <= math.sqrt(6.0 / (fan_in + fan_out)), name
        else:  # normal(0, 0.02): every |w| of a 32x32 or 1x32 draw is far below 0.5
            assert weight.abs().max() < 6 * model.config.initializer_range, name
    if family == "graphormer":  # the 32x32 draw has the std of normal(0, 0.02) (standard error ~0.0004)
        assert head["head.dense.weight"].std().item() == pytest.approx(model.config.initializer_range, rel=0.1)
