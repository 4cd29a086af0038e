"""Binary property classification in distill.py: metrics, label checks, regression -> classification fine-tuning."""

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from fixtures_students import save_tiny_gin_student
from transformers import AutoModel

from molformer_kd import distill_command as distill_run
from molformer_kd.data import load_embedded_qm9
from molformer_kd.data.metrics import accuracy, log_loss, per_label_classification_metrics, roc_auc
from molformer_kd.distillation.arguments import DataArguments
from molformer_kd.distillation.tasks import label_statistics, load_records, property_predictions_and_metrics
from molformer_kd.modeling.auto import AutoModelForMolecularPropertyPrediction
from molformer_kd.modeling.configuration_gin import GINConfig
from molformer_kd.modeling.heads import BinaryClassificationPredictor
from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction
from molformer_kd.tokenization.collators import GraphCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------------- metrics


def pairwise_auc(scores, targets):
    """ROC-AUC by its definition: the fraction of (positive, negative) pairs ordered right, ties counting 1/2."""
    positives = [s for s, t in zip(scores, targets) if t == 1]
    negatives = [s for s, t in zip(scores, targets) if t == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_roc_auc_hand_computed_with_a_tie_and_missing_targets():
    # Positives 0.35, 0.8, 0.4 vs negatives 0.1, 0.4: pairs won 1+0, 1+1, 1+0.5 (tie) -> 4.5 of 6.
    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.99]
    targets = [0, 0, 1, 1, 1, np.nan]
    assert roc_auc(scores, targets) == pytest.approx(0.75)


def test_roc_auc_matches_pairwise_definition_with_many_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40) / 4.0  # five distinct values: many ties across the classes
    targets = rng.integers(0, 2, size=40).astype(float)
    targets[[3, 17]] = np.nan
    observed = ~np.isnan(targets)
    assert roc_auc(scores, targets) == pytest.approx(pairwise_auc(scores[observed], targets[observed]), abs=1e-12)


def test_roc_auc_is_nan_when_a_class_is_absent():
    assert math.isnan(roc_auc([0.2, 0.7, 0.5], [1, 1, np.nan]))
    assert math.isnan(roc_auc([0.2, 0.7], [0, 0]))
    assert math.isnan(roc_auc([0.2], [np.nan]))


def test_accuracy_and_log_loss_hand_computed():
    probabilities = [0.9, 0.2, 0.6, 0.5, 0.3]
    targets = [1, 0, 0, 1, np.nan]
    # Predicted classes (p >= 0.5): 1, 0, 1, 1 -> right, right, wrong, right.
    assert accuracy(probabilities, targets) == pytest.approx(3 / 4)
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.5)) / 4
    assert log_loss(probabilities, targets) == pytest.approx(expected, rel=1e-12)
    # A certain, wrong prediction costs -log(1e-15), not infinity.
    assert log_loss([0.0], [1]) == pytest.approx(-math.log(1e-15))


def test_per_label_classification_metrics_keys_and_counts():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.4], [0.4, 0.6]])
    targets = np.array([[1, np.nan], [0, 1], [1, 0], [np.nan, 1]])
    metrics = per_label_classification_metrics(probabilities, targets, ["bbb", "tox"])
    assert set(metrics) == {f"{n}_{m}" for n in ("bbb", "tox") for m in ("roc_auc", "accuracy", "log_loss", "count")}
    assert metrics["bbb_count"] == 3 and metrics["tox_count"] == 3
    assert metrics["bbb_roc_auc"] == pytest.approx(1.0)
    assert metrics["tox_roc_auc"] == pytest.approx(1.0)  # positives 0.8, 0.6 over the negative 0.4
    assert metrics["tox_accuracy"] == pytest.approx(1.0)
    assert metrics["bbb_log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.7)) / 3)


def test_classification_metrics_reject_non_binary_targets():
    with pytest.raises(ValueError, match="binary targets must be 0, 1 or NaN; got 2"):
        roc_auc([0.1, 0.9], [0, 2])


def test_metrics_match_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, size=200).astype(float)
    probabilities = np.round(np.clip(0.3 * targets + rng.uniform(0, 0.7, size=200), 0, 1), 2)  # rounded: ties
    assert roc_auc(probabilities, targets) == pytest.approx(sklearn_metrics.roc_auc_score(targets, probabilities))
    assert log_loss(probabilities, targets) == pytest.approx(sklearn_metrics.log_loss(targets, probabilities))
    assert accuracy(probabilities, targets) == pytest.approx(
        sklearn_metrics.accuracy_score(targets, probabilities >= 0.5)
    )


def test_training_metrics_take_the_sigmoid_of_the_logits():
    logits = np.array([[2.0], [-1.0], [0.5], [-3.0], [800.0]])
    targets = np.array([[1.0], [0.0], [0.0], [np.nan], [1.0]])
    head = GINForMolecularPropertyPrediction(
        GINConfig.from_preset("tiny", **label_statistics([], ["bbb"], "classification"))
    ).head
    probabilities, metrics = property_predictions_and_metrics(head, logits, targets, ["bbb"])
    np.testing.assert_allclose(probabilities, torch.sigmoid(torch.tensor(logits)).numpy(), rtol=1e-12)
    observed = ~np.isnan(targets[:, 0])
    bce = F.binary_cross_entropy_with_logits(torch.tensor(logits[observed]), torch.tensor(targets[observed]))
    assert metrics["bbb_log_loss"] == pytest.approx(bce.item(), rel=1e-9)
    assert metrics["bbb_accuracy"] == pytest.approx(3 / 4) and metrics["bbb_count"] == 4


# ------------------------------------------------------------------------------------------------------- head


def test_label_statistics_of_a_classification_head():
    rows = [{"bbb": 1.0}, {"bbb": 0.0}, {"bbb": None}]
    assert label_statistics(rows, ["bbb"], "classification") == {
        "num_labels": 1,
        "label_names": ["bbb"],
        "label_mean": None,
        "label_std": None,
        "problem_type": "multi_label_classification",
    }
    assert label_statistics(rows, ["bbb"])["label_mean"] == [0.5]  # regression stays the default


SMILES = ["CCO", "c1ccccc1O", "CC(=O)N", "C#N"]


def graph_batch(labels=None):
    rows = [{"smiles": s, "pos": None, "bbb": v} for s, v in zip(SMILES, labels or [0.0] * len(SMILES))]
    batch = GraphCollator(MoleculeFeaturizer(), label_columns=["bbb"])(rows)
    return batch if labels else {k: v for k, v in batch.items() if k != "labels"}


@pytest.mark.parametrize("regression_labels", [["gap", "homo"], ["gap"]], ids=["new_head_size", "same_head_size"])
def test_regression_student_becomes_a_clean_classifier(tmp_path, regression_labels):
    """What the finetune stage does with a distilled regression student and classification statistics."""
    distilled = tmp_path / "distill"
    torch.manual_seed(0)
    num = len(regression_labels)
    config = GINConfig.from_preset(
        "tiny", num_labels=num, label_names=regression_labels, label_mean=[6.8] * num, label_std=[1.3] * num
    )
    GINForMolecularPropertyPrediction(config).save_pretrained(distilled)
    statistics = label_statistics([], ["bbb"], "classification")
    model = AutoModelForMolecularPropertyPrediction.from_pretrained(
        distilled, ignore_mismatched_sizes=True, **statistics
    ).eval()
    assert model.config.problem_type == "multi_label_classification"
    assert model.config.label_mean is None and model.config.label_std is None
    assert isinstance(model.head, BinaryClassificationPredictor)

    labels = [1.0, 0.0, float("nan"), 1.0]
    batch = graph_batch(labels)
    with torch.no_grad():
        output = model(**batch)
        raw = model.head(model.base_model(**{k: v for k, v in batch.items() if k != "labels"}).pooler_output)
    torch.testing.assert_close(output.logits, raw)  # classification logits are not de-normalized
    target = torch.tensor(labels)[:, None]
    observed = ~torch.isnan(target)
    torch.testing.assert_close(output.loss, F.binary_cross_entropy_with_logits(raw[observed], target[observed]))

    model.save_pretrained(tmp_path / "finetune")
    saved = json.loads((tmp_path / "finetune" / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification" and saved["label_names"] == ["bbb"]
    assert AutoModel.from_pretrained(tmp_path / "finetune").config.problem_type == "multi_label_classification"
    reloaded = AutoModelForMolecularPropertyPrediction.from_pretrained(tmp_path / "finetune").eval()
    assert reloaded.head.problem_type == "multi_label_classification"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**graph_batch()).logits, output.logits)


# ------------------------------------------------------------------------------------------------------- distill.py


@pytest.fixture(scope="module")
def bbb_rows():
    """80 real QM9 molecules with a binary label (HOMO-LUMO gap above 7 eV), a few of them missing."""
    train = load_embedded_qm9()["train"].select(range(80))
    rows = [[smiles, "1" if gap > 7.0 else "0"] for smiles, gap in zip(train["smiles"], train["gap"])]
    for index in (5, 30, 61):
        rows[index][1] = ""
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["smiles", "bbb"])
        writer.writerows(rows)
    return path


def write_config(tmp_path, **values) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "report_to": "none", **values}))
    return path


def test_bad_problem_type_fails_at_startup(tmp_path):
    path = write_config(tmp_path, dataset="qm9_embedded", problem_type="binary")
    with pytest.raises(ValueError, match=r"problem_type 'binary': use one of \['regression', 'classification'\]"):
        distill_run.plan_from_cli(["--config", str(path)])
    path = write_config(tmp_path, dataset="qm9_xtb", problem_type="classification")
    with pytest.raises(ValueError, match="regression only"):
        distill_run.plan_from_cli(["--config", str(path)])


def test_non_binary_label_is_rejected_naming_file_column_and_row(tmp_path, monkeypatch, bbb_rows):
    monkeypatch.setenv("MOLFORMER_KD_CACHE", str(tmp_path / "cache"))
    rows = [list(row) for row in bbb_rows]
    rows[12][1] = "0.7"  # data line 12 is file line 14 (after the header)
    dataset = str(write_csv(tmp_path / "bbb.csv", rows))
    with pytest.raises(ValueError) as error:
        load_records(DataArguments(dataset=dataset, label_columns=["bbb"], problem_type="classification"))
    message = str(error.value)
    assert f"dataset {dataset!r}" in message and "label column 'bbb'" in message
    assert f"row bbb.csv:14 ({rows[12][0]!r}) holds 0.7" in message and "needs labels 0 or 1" in message
    # The same file is a valid regression dataset.
    load_records(DataArguments(dataset=dataset, label_columns=["bbb"]))


def test_finetune_and_evaluate_a_distilled_regression_student_as_a_classifier(tmp_path, monkeypatch, bbb_rows):
    monkeypatch.setenv("MOLFORMER_KD_CACHE", str(tmp_path / "cache"))
    save_tiny_gin_student(tmp_path / "distilled")  # a 2-label (gap, homo) regression student with label_mean/std
    path = write_config(
        tmp_path,
        stages=["finetune", "evaluate"],
        student_name_or_path=str(tmp_path / "distilled"),
        dataset=str(write_csv(tmp_path / "bbb.csv", bbb_rows)),
        label_columns=["bbb"],
        problem_type="classification",
        use_cpu=True,
        max_steps=4,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=1e-3,
        eval_strategy="steps",
        eval_steps=4,
        logging_steps=2,
        save_strategy="no",
        disable_tqdm=True,
    )
    distill_run.main(["--config", str(path)])
    run = tmp_path / "run"

    finetuned = json.loads((run / "finetune" / "config.json").read_text())
    assert finetuned["problem_type"] == "multi_label_classification"
    assert finetuned["label_names"] == ["bbb"] and finetuned["label_mean"] is None
    # compute_metrics of the Trainer's periodic evaluation (validation split) reports the classification metrics.
    history = json.loads((run / "finetune" / "trainer_state.json").read_text())["log_history"]
    evaluation = next(entry for entry in history if "eval_bbb_log_loss" in entry)
    assert {"eval_bbb_roc_auc", "eval_bbb_accuracy", "eval_bbb_count"} <= set(evaluation)
    assert "eval_bbb_mae" not in evaluation

    with open(run / "evaluate" / "predictions.csv") as handle:
        predictions = list(csv.DictReader(handle))
    assert list(predictions[0]) == ["mol_id", "smiles", "bbb", "bbb_prob"]
    probabilities = np.array([float(row["bbb_prob"]) for row in predictions])
    targets = np.array([float(row["bbb"]) for row in predictions])
    assert np.all((probabilities > 0) & (probabilities < 1))
    assert {0.0, 1.0} <= set(targets[~np.isnan(targets)])  # both classes in the test split: a finite ROC-AUC

    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["model"] == str(run / "finetune")
    test = metrics["metrics"]["test"]
    assert test["bbb_count"] == int(np.sum(~np.isnan(targets)))
    # metrics.json agrees with an independent computation from the written probabilities.
    observed = ~np.isnan(targets)
    assert test["bbb_roc_auc"] == pytest.approx(pairwise_auc(probabilities[observed], targets[observed]))
    assert test["bbb_accuracy"] == pytest.approx(np.mean((probabilities[observed] >= 0.5) == targets[observed]))
    assert 0 <= test["bbb_log_loss"] < 5
