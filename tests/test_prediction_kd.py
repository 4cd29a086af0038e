"""Response KD on unlabeled molecules: the `prediction` objective (hand-computed), the teacher's cached predictions,
the split's `unlabeled` rows, and a distill.py run that uses both."""

import math

import numpy as np
import pytest
import torch
from distill_cli_helpers import FAST, log_history, write_config
from trainer_helpers import assert_trained_alike, live_and_cached_runs
from transformers.utils import ModelOutput

from molformer_kd import distill_command as distill_run
from molformer_kd.data.splits import resplit
from molformer_kd.distillation.arguments import DataArguments
from molformer_kd.distillation.objectives import PredictionObjective, TaskObjective
from molformer_kd.distillation.tasks import label_statistics
from molformer_kd.distillation.tasks.property import load_records_by_name
from molformer_kd.distillation.teacher_cache import TeacherCache, build_teacher_cache, cached_fields
from molformer_kd.distillation.trainer import DistillationModel
from molformer_kd.modeling.configuration_gin import GINConfig
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction
from molformer_kd.tokenization.collators import PairedCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer


def configs(problem_type="regression", labels=("homo", "gap"), teacher_labels=None, **student):
    teacher = GINConfig(num_labels=len(teacher_labels or labels), label_names=list(teacher_labels or labels))
    teacher.problem_type = problem_type
    student = GINConfig(num_labels=len(labels), label_names=list(labels), **student)
    student.problem_type = problem_type
    return teacher, student


def outputs(logits):
    return ModelOutput(logits=torch.tensor(logits))


def test_prediction_objective_hand_computed():
    """Regression: the mean over labels of |y_s - y_t| / sigma (squared for an MSE student), then over molecules;
    classification: T^2 BCE against the teacher's sigmoid, or T^2 cross-entropy against its softmax."""
    teacher_logits = [[1.0, 2.0], [0.0, -1.0]]
    student_logits = [[1.5, 1.0], [0.0, 1.0]]
    l1 = PredictionObjective(*configs(label_std=[0.5, 2.0]))
    loss = l1(outputs(teacher_logits), outputs(student_logits), {})["prediction"]
    # molecule 1: (0.5/0.5 + 1/2) / 2 = 0.75; molecule 2: (0 + 2/2) / 2 = 0.5
    assert loss.item() == pytest.approx((0.75 + 0.5) / 2)
    mse = PredictionObjective(*configs(label_std=[0.5, 2.0], regression_loss="mse"))
    loss = mse(outputs(teacher_logits), outputs(student_logits), {})["prediction"]
    assert loss.item() == pytest.approx(((1.0 + 0.25) / 2 + (0 + 1.0) / 2) / 2)

    def bce(z, p):
        return -(p * math.log(1 / (1 + math.exp(-z))) + (1 - p) * math.log(1 - 1 / (1 + math.exp(-z))))

    def sigmoid(z):
        return 1 / (1 + math.exp(-z))

    binary = PredictionObjective(*configs("multi_label_classification"), temperature=2.0)
    loss = binary(outputs(teacher_logits), outputs(student_logits), {})["prediction"]
    per_molecule = [
        sum(bce(s / 2, sigmoid(t / 2)) for s, t in zip(srow, trow)) / 2
        for srow, trow in zip(student_logits, teacher_logits)
    ]
    assert loss.item() == pytest.approx(4 * sum(per_molecule) / 2, rel=1e-6)

    multiclass = PredictionObjective(*configs("single_label_classification"))
    loss = multiclass(outputs(teacher_logits), outputs(student_logits), {})["prediction"]
    expected = []
    for srow, trow in zip(student_logits, teacher_logits):
        p = [math.exp(t) / sum(math.exp(u) for u in trow) for t in trow]
        log_q = [s - math.log(sum(math.exp(u) for u in srow)) for s in srow]
        expected.append(-sum(a * b for a, b in zip(p, log_q)))
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_prediction_objective_refusals():
    with pytest.raises(ValueError, match="teacher predicts labels"):
        PredictionObjective(*configs(teacher_labels=("gap", "homo")))
    with pytest.raises(ValueError, match="teacher predicts 'regression'"):
        teacher, student = configs("multi_label_classification")
        teacher.problem_type = "regression"
        PredictionObjective(teacher, student)
    with pytest.raises(ValueError, match="temperature applies to classification"):
        PredictionObjective(*configs(), temperature=2.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        PredictionObjective(*configs("multi_label_classification"), temperature=0.0)
    with pytest.raises(ValueError, match="needs the teacher's logits|returned no logits|logits"):
        PredictionObjective(*configs())(ModelOutput(), outputs([[0.0, 0.0]]), {})


@pytest.fixture(scope="module")
def rows(embedded_qm9):
    return embedded_qm9["train"].select(range(12))


def teacher_model(rows, seed=0):
    torch.manual_seed(seed)
    config = GraphormerConfig.from_preset(
        "tiny", geometry="3d", num_hidden_layers=2, **label_statistics(rows, ["homo", "gap"])
    )
    return GraphormerForMolecularPropertyPrediction(config).eval()


def paired_collator():
    return PairedCollator(MoleculeFeaturizer(use_3d=True), MoleculeFeaturizer(), label_columns=["homo", "gap"])


def test_cached_predictions_equal_the_live_teacher(rows, tmp_path):
    """The teacher's predictions written in batches of 5 and read back in another order: equal to a live forward."""
    teacher = teacher_model(rows)
    collator = paired_collator()
    fields = cached_fields({"logits"})
    assert fields == ("last_hidden_state", "logits")
    path = tmp_path / "cache.arrow"
    build_teacher_cache(path, rows, collator, lambda batch: teacher(**batch["teacher_inputs"]), fields, 5)
    order = [9, 3, 0, 11, 4]
    cached = TeacherCache([path]).padded(order)
    with torch.no_grad():
        live = teacher(**collator([rows[i] for i in order])["teacher_inputs"])
    assert cached["logits"].shape == (5, 2)
    torch.testing.assert_close(cached["logits"], live.logits)


def test_cached_prediction_kd_trains_like_the_live_teacher(embedded_qm9, tmp_path):
    train, validation = embedded_qm9["train"].select(range(12)), embedded_qm9["validation"].select(range(6))

    def build():
        teacher = teacher_model(train)
        torch.manual_seed(1)
        student_config = GINConfig.from_preset("tiny", norm="layer", **label_statistics(train, ["homo", "gap"]))
        student = GINForMolecularPropertyPrediction(student_config)
        objectives = {"task": TaskObjective(), "prediction": PredictionObjective(teacher.config, student_config)}
        model = DistillationModel(student, objectives, {"task": 1.0, "prediction": 0.5})
        return model, teacher, paired_collator()

    live, cached = live_and_cached_runs(tmp_path, build, train, validation)
    assert isinstance(cached.teacher_cache, TeacherCache)
    assert_trained_alike(cached, live, "eval_prediction")


def test_unlabeled_rows_follow_the_labeled_splits(embedded_qm9):
    """`unlabeled` leaves train/validation/test as they are and takes the next rows of the same permutation."""
    plain = resplit(embedded_qm9, {"kind": "random", "seed": 3, "sizes": [300, 50, 50]})
    extra = resplit(embedded_qm9, {"kind": "random", "seed": 3, "sizes": [300, 50, 50], "unlabeled": 120})
    for name in ("train", "validation", "test"):
        assert extra[name]["mol_id"] == plain[name]["mol_id"]
    used = {m for name in plain for m in plain[name]["mol_id"]}
    assert len(extra["unlabeled"]) == 120 and not used & set(extra["unlabeled"]["mol_id"])
    total = sum(len(embedded_qm9[name]) for name in embedded_qm9)
    rest = resplit(embedded_qm9, {"kind": "random", "seed": 3, "sizes": [300, 50, 50], "unlabeled": "rest"})
    assert len(rest["unlabeled"]) == total - 400
    with pytest.raises(ValueError, match="only .* are outside"):
        resplit(embedded_qm9, {"kind": "random", "sizes": [300, 50, 50], "unlabeled": total})
    with pytest.raises(ValueError, match="give a count of rows or 'rest'"):
        resplit(embedded_qm9, {"kind": "random", "sizes": [300, 50, 50], "unlabeled": "all"})
    with pytest.raises(ValueError, match="do not apply to kind 'scaffold'"):
        resplit(embedded_qm9, {"kind": "scaffold", "unlabeled": 10})


def test_unlabeled_rows_join_training_without_labels():
    """The property task appends them to train with every label missing: the label statistics are the labeled
    rows' own, and the rows reach the training set."""
    split = {"kind": "random", "seed": 0, "sizes": [200, 50, 50]}
    labeled = load_records_by_name(DataArguments(dataset="qm9_embedded", label_columns=["gap"], split=split))
    records = load_records_by_name(
        DataArguments(dataset="qm9_embedded", label_columns=["gap"], split={**split, "unlabeled": 80})
    )
    assert set(records) == {"train", "validation", "test"} and len(records["train"]) == 280
    assert records["train"]["gap"][:200] == labeled["train"]["gap"]
    assert all(value is None for value in records["train"]["gap"][200:])
    assert np.isfinite(records["train"].with_format("numpy")["gap"][:200]).all()
    ours, theirs = label_statistics(records["train"], ["gap"]), label_statistics(labeled["train"], ["gap"])
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == (pytest.approx(value, rel=1e-12) if key in ("label_mean", "label_std") else value), key


def test_distill_cli_prediction_kd_on_unlabeled_rows(tmp_path):
    """distill.py: a PaiNN teacher trained on the labeled rows, then a GIN taught by the task loss and the teacher's
    cached predictions on labeled and unlabeled rows; both components are logged."""
    fast = {key: value for key, value in FAST.items() if key != "max_train_samples"}
    config = write_config(tmp_path, "prediction_kd_painn_to_gin_tiny.yaml", **fast)
    distill_run.main(["--config", str(config)])
    logs = [e for e in log_history(tmp_path / "run" / "distill") if "loss" in e]
    assert len(logs) == 3 and all({"task", "prediction"} <= set(e) for e in logs)
    assert len(list((tmp_path / "run" / "teacher_cache").glob("teacher-*.arrow"))) == 1


def test_prediction_kd_refuses_a_teacher_without_a_trained_head(rows, tmp_path, capsys):
    backbone = teacher_model(rows).base_model
    backbone.save_pretrained(tmp_path / "teacher")
    MoleculeFeaturizer(use_3d=True).save_pretrained(tmp_path / "teacher")
    config = write_config(
        tmp_path,
        "prediction_kd_painn_to_gin_tiny.yaml",
        stages=["distill"],
        teacher_name_or_path=str(tmp_path / "teacher"),
        label_columns=["homo", "gap"],
        **FAST,
    )
    with pytest.raises(SystemExit):
        distill_run.main(["--config", str(config)])
    assert "no trained prediction head" in capsys.readouterr().err


def test_prediction_kd_refuses_the_denoising_teacher_at_start_up(tmp_path):
    """D&D's stage-1 teacher learns noise, not the labels: reading its predictions is refused before any data loads."""
    config = write_config(
        tmp_path,
        "dnd_graphormer3d_to_gin_tiny.yaml",
        stages=["denoise", "distill"],
        objectives={"task": {}, "prediction": {}},
    )
    with pytest.raises(ValueError, match="has no trained prediction head"):
        distill_run.plan_from_cli(["--config", str(config)])
