"""The molecular property task kind: regression or binary classification of labels, graph or SMILES models.

Datasets by name or path, label statistics for the head, the batches of one model (`SingleModelCollator`) or of a
teacher-student pair (`PairedCollator`), and the test metrics and predictions.csv of the evaluate stage.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from datasets import DatasetDict, concatenate_datasets
from transformers import AutoModel, TrainingArguments
from transformers.utils import logging

from ...data import generate_conformers, load_csv, load_embedded_qm9, load_qm9, load_sdf
from ...data.downstream import DOWNSTREAM_DATASETS, load_downstream
from ...data.splits import resplit
from ...modeling.auto import AutoModelForMolecularPropertyPrediction
from ...modeling.heads import RegressionPredictor, predictor_class
from ...tokenization.collators import PairedCollator, SingleModelCollator
from ...tokenization.featurization import MoleculeFeaturizer
from ...tokenization.point_cloud import PointCloudFeaturizer
from ...tokenization.processors import POINT_CLOUD_MODEL_TYPES, load_processor
from ...tokenization.tokenization_smiles import SmilesTokenizer
from ...tokenization.tokenization_st_base import StBaseTokenizer
from ..arguments import CONFORMER_METHODS, DataArguments
from ..checkpoints import atomic_write_text
from ..trainer import DistillationTrainer
from .base import supervised

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from datasets import Dataset
    from transformers import EvalPrediction, PretrainedConfig, PreTrainedModel

    from ...modeling.heads import PropertyPredictor

logger = logging.get_logger(__name__)

SMILES_MODEL_TYPES = ("molformer_smiles_transformer",)
PREDICTIONS_FILE = "predictions.csv"


Processor = MoleculeFeaturizer | PointCloudFeaturizer | SmilesTokenizer | StBaseTokenizer


def new_processor(config: PretrainedConfig) -> Processor:
    """A processor for a freshly configured model: the SMILES tokenizer, the point-cloud featurizer of a 3D GNN (with
    the hydrogens when its config reads them), or a graph featurizer matching the config."""
    if config.model_type in POINT_CLOUD_MODEL_TYPES:
        return PointCloudFeaturizer(hydrogens=config.hydrogens)
    if config.model_type in SMILES_MODEL_TYPES:
        if getattr(config, "variant", "st_kd") == "st_base":
            return StBaseTokenizer()
        return SmilesTokenizer()
    return MoleculeFeaturizer(
        multi_hop_max_dist=getattr(config, "multi_hop_max_dist", 5),
        max_spatial=getattr(config, "max_spatial", 20),
        use_3d=getattr(config, "reads_coordinates", False),
        # Only Graphormers read the shortest-path encodings; a GIN's featurizer skips their quadratic work.
        graph_encodings=config.model_type == "molformer_graphormer",
    )


def processor_config_overrides(config: PretrainedConfig, processor: Processor) -> dict:
    """Config values a fresh model takes from its processor (SMILES vocabulary size and padding id)."""
    if config.model_type in SMILES_MODEL_TYPES:
        return {"vocab_size": len(processor), "pad_token_id": processor.pad_token_id}
    return {}


CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
SDF_SUFFIXES = (".sdf", ".sdf.gz")
# Datasets by name; their loaders' own splits unless the config asks for another (`DataArguments.split`).
NAMED_DATASETS = {
    "qm9_embedded": lambda data_args: load_embedded_qm9(),
    "qm9": lambda data_args: load_qm9(seed=data_args.split_seed),
    # Downstream sets come with their scaffold split (deterministic: split_seed does not apply).
    **{name: (lambda data_args, name=name: load_downstream(name)) for name in DOWNSTREAM_DATASETS},
}


def is_data_file(name: str) -> bool:
    return name.lower().endswith(CSV_SUFFIXES + SDF_SUFFIXES)


def _read_data_file(path: str, data_args: DataArguments, split_method: str | None):
    if path.lower().endswith(CSV_SUFFIXES):
        extra = [data_args.split["column"]] if (data_args.split or {}).get("kind") == "column" else []
        return load_csv(
            path,
            smiles_column=data_args.smiles_column,
            label_columns=data_args.label_columns,
            id_column=data_args.id_column,
            extra_columns=extra,
            split=split_method,
            seed=data_args.split_seed,
        )
    return load_sdf(path, label_properties=data_args.label_columns, split=split_method, seed=data_args.split_seed)


def add_conformers(records: DatasetDict, options: dict) -> DatasetDict:
    """3D coordinates for the rows without them (one ETKDGv3 conformer each, MMFF94-optimised by default)."""
    optimize = CONFORMER_METHODS[options.get("method", "etkdg+mmff")]
    result = generate_conformers(records, on_failure="drop", seed=int(options.get("seed", 0)), optimize=optimize)
    dropped = sum(len(records[split]) - len(result[split]) for split in records)
    logger.warning(
        "conformers: %d molecule(s) without a conformer dropped (%s)",
        dropped,
        ", ".join(f"{split} {len(result[split])}/{len(records[split])} kept" for split in records),
    )
    return result


def load_records_by_name(data_args: DataArguments) -> DatasetDict:
    """The DatasetDict of a property dataset named by `data_args.dataset` (split, with conformers as configured),
    with the label columns checked."""
    name = data_args.dataset
    if name in NAMED_DATASETS:
        dataset = NAMED_DATASETS[name](data_args)
    elif is_data_file(name):
        files = {"train": name, "validation": data_args.validation_file, "test": data_args.test_file}
        if data_args.validation_file or data_args.test_file:
            dataset = DatasetDict(
                {split: _read_data_file(path, data_args, None)["train"] for split, path in files.items() if path}
            )
        else:
            dataset = _read_data_file(name, data_args, None if data_args.split else "random")
    else:
        raise ValueError(
            f"dataset {name!r}: use {', '.join(map(repr, NAMED_DATASETS))}, a .csv/.tsv/.sdf path (property "
            "prediction) or 'qm9_xtb' / a QM9-xTB .npz path (energies and forces)"
        )
    if data_args.split:
        dataset = resplit(dataset, data_args.split)
    for split, rows in dataset.items():
        missing = [c for c in data_args.label_columns if c not in rows.column_names]
        if missing:
            raise ValueError(
                f"dataset {name!r} split {split!r} has no label columns {missing}; it has {rows.column_names}"
            )
    if "unlabeled" in dataset:
        dataset = with_unlabeled_training_rows(dataset, data_args.label_columns)
    if data_args.conformers:
        dataset = add_conformers(dataset, data_args.conformers)
    return dataset


def with_unlabeled_training_rows(dataset: DatasetDict, label_columns: Sequence[str]) -> DatasetDict:
    """The "unlabeled" rows of a split (`split.unlabeled`) appended to train with every label blanked (NaN, which the
    task loss masks): label-free objectives (`prediction`, CCMD, D&D) reach them, the task loss and the label
    statistics do not."""
    rows = dataset.pop("unlabeled")
    blank = {column: [None] * len(rows) for column in label_columns}
    rows = rows.remove_columns(list(label_columns))
    for column, values in blank.items():
        rows = rows.add_column(column, values, feature=dataset["train"].features[column])
    rows = rows.cast(dataset["train"].features)
    logger.warning("split: %d labeled + %d unlabeled training rows (labels blanked)", len(dataset["train"]), len(rows))
    dataset["train"] = concatenate_datasets([dataset["train"], rows])
    return dataset


def check_binary_labels(records: DatasetDict, label_columns: Sequence[str], dataset_name: str) -> None:
    """Classification labels must be 0, 1 or NaN (missing); the first other value is a ValueError naming its row."""
    for split, rows in records.items():
        for column in label_columns:
            values = np.asarray(list(rows[column]), dtype=np.float64)  # None -> NaN
            bad = np.flatnonzero(~np.isnan(values) & (values != 0) & (values != 1))
            if bad.size:
                row = rows[int(bad[0])]
                where = f"row {row.get('mol_id') or int(bad[0])} ({row['smiles']!r})"
                raise ValueError(
                    f"dataset {dataset_name!r} split {split!r} label column {column!r}: problem_type 'classification' "
                    f"needs labels 0 or 1 (empty = missing), but {where} holds {values[bad[0]]:g}"
                )


def label_statistics(train_rows: Dataset, label_columns: Sequence[str], problem_type: str = "regression") -> dict:
    """Config entries of a property head for `label_columns`.

    Regression: label names and the training mean/std (targets are learned normalized). Classification (binary, one
    sigmoid output per label): the names and `multi_label_classification`; `label_mean`/`label_std` are set to None
    so that a regression checkpoint loaded with these entries (the finetune stage) keeps no stale statistics.
    """
    predictor = predictor_class(problem_type)
    if predictor is not RegressionPredictor:
        return {
            "num_labels": len(label_columns),
            "label_names": list(label_columns),
            "label_mean": None,
            "label_std": None,
            "problem_type": predictor.problem_type,
        }
    values = np.array([[np.nan if row[c] is None else row[c] for c in label_columns] for row in train_rows], float)
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return {
        "num_labels": len(label_columns),
        "label_names": list(label_columns),
        "label_mean": [float(v) for v in mean],
        "label_std": [float(v) for v in std],
        "problem_type": RegressionPredictor.problem_type,
    }


def property_predictions_and_metrics(
    head: PropertyPredictor, logits: np.ndarray, targets: np.ndarray, label_names: Sequence[str] | None = None
) -> tuple[np.ndarray, dict[str, float]]:
    """(predictions, per-label metrics) of a property model's (B, T) `logits`, through its predictor `head`: the
    values a user sees (original units, or class probabilities) and their metrics against `targets`."""
    predictions = head.transform(torch.as_tensor(np.asarray(logits, dtype=np.float64))).numpy()
    return predictions, head.metrics(predictions, targets, label_names)


def label_metrics(
    head: PropertyPredictor, label_names: Sequence[str] | None
) -> Callable[[EvalPrediction], dict[str, float]]:
    """A Trainer `compute_metrics`: the predictor's per-label metrics (MAE/RMSE, or ROC-AUC/accuracy/log loss)."""

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        return property_predictions_and_metrics(head, logits, eval_prediction.label_ids, label_names)[1]

    return compute_metrics


@dataclass
class PropertyTask:
    """Molecular properties (`label_columns`) with graph or SMILES models and their featurizer/tokenizer.

    `problem_type` "regression" or "classification" (binary labels 0/1, NaN = missing; one sigmoid output per label).
    The distill stage loads the teacher backbone (`AutoModel`): the property objectives read its hidden states.
    """

    label_columns: list[str]
    problem_type: str = "regression"
    has_coordinates: bool = True  # whether the rows carry 3D coordinates (a CSV without `conformers` does not)
    name = "property"
    description = "molecular property"
    datasets_hint = "property models need a property dataset ('qm9_embedded', 'qm9', a .csv/.tsv/.sdf path)"
    auto_class = AutoModelForMolecularPropertyPrediction
    teacher_auto_class = AutoModel
    task_objective = "task"
    dataset_names = tuple(NAMED_DATASETS)

    @staticmethod
    def handles(dataset: str) -> bool:
        return True  # the default kind: every dataset that no other kind claims (tasks.TASK_KINDS order)

    @classmethod
    def from_data_args(cls, data_args: DataArguments) -> PropertyTask:
        plain_table = data_args.dataset.lower().endswith(CSV_SUFFIXES)
        return cls(list(data_args.label_columns), data_args.problem_type, not plain_table or bool(data_args.conformers))

    def load_records(self, data_args: DataArguments) -> DatasetDict:
        records = load_records_by_name(data_args)
        if self.problem_type == "classification":
            check_binary_labels(records, self.label_columns, data_args.dataset)
        return records

    def statistics(self, train_rows: Dataset) -> dict:
        return label_statistics(train_rows, self.label_columns, self.problem_type)

    def check_config(self, config: PretrainedConfig, role: str) -> None:
        """A 3D model needs coordinates: a table of SMILES gets them only from `conformers`."""
        point_cloud = config.model_type in POINT_CLOUD_MODEL_TYPES  # all-atom 3D GNNs: coordinates and hydrogens
        reads_coordinates = getattr(config, "reads_coordinates", False) or point_cloud
        if reads_coordinates and not self.has_coordinates:
            raise ValueError(
                f"{role}: a 3D model needs 3D coordinates, and a CSV/TSV dataset has none; add "
                "`conformers: {method: etkdg+mmff}` to generate them, or use an SDF with coordinates"
            )

    def check_model(self, config: PretrainedConfig) -> None:
        """The model must predict this task's labels, with this task's problem type."""
        model_labels = getattr(config, "label_names", None) or self.label_columns
        if list(model_labels) != list(self.label_columns):
            raise ValueError(f"the model predicts {model_labels}, the config asks for {self.label_columns}")
        model_problem_type = getattr(config, "problem_type", None) or "regression"
        if model_problem_type != predictor_class(self.problem_type).problem_type:
            raise ValueError(
                f"the model is a {model_problem_type!r} model, the config asks for problem_type {self.problem_type!r}"
            )

    def new_processor(self, config: PretrainedConfig) -> Processor:
        """The processor for a freshly configured model; sets the config entries it dictates (SMILES vocabulary)."""
        processor = new_processor(config)
        for key, value in processor_config_overrides(config, processor).items():
            setattr(config, key, value)
        return processor

    def load_processor(self, path: str | os.PathLike) -> Processor:
        return load_processor(path)

    def collator(self, processor: Processor) -> SingleModelCollator:
        return SingleModelCollator(processor, label_columns=self.label_columns)

    def denoising_collator(self, processor: Processor, noise_sigma: float) -> SingleModelCollator:
        """Batches of noised coordinates and their noise (D&D stage 1): no labels, the noise is the target."""
        return SingleModelCollator(processor, noise_sigma=noise_sigma)

    def paired_collator(
        self,
        teacher_processor: Processor,
        student_processor: Processor,
        with_labels: bool,
    ) -> PairedCollator:
        return PairedCollator(
            teacher_processor, student_processor, label_columns=self.label_columns if with_labels else []
        )

    def compute_metrics(self, model: PreTrainedModel) -> Callable[[EvalPrediction], dict[str, float]] | None:
        if not model.config.num_labels:
            return None
        self.check_model(model.config)
        return label_metrics(model.head, self.label_columns)

    def evaluate(
        self,
        model: PreTrainedModel,
        processor: Processor,
        rows: Dataset,
        args: TrainingArguments,
        split: str,
    ) -> dict:
        """Per-label metrics (Trainer.predict); writes predictions.csv (values, or class-1 probabilities in
        `<label>_prob` columns); returns the metrics and, for regression, a parity dict of the first label."""
        labels = self.label_columns
        self.check_model(model.config)
        trainer = DistillationTrainer(
            model=supervised(self, model),
            args=args,
            data_collator=self.collator(processor),
            processing_class=processor,
        )
        output = trainer.predict(rows, metric_key_prefix=split)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        targets = output.label_ids
        predictions, metrics = property_predictions_and_metrics(model.head, logits, targets, labels)
        if args.should_save:
            table = io.StringIO()
            writer = csv.writer(table)
            suffix = model.head.prediction_suffix
            writer.writerow(["mol_id", "smiles"] + [f"{c}{s}" for c in labels for s in ("", suffix)])
            for index, row in enumerate(rows):
                values = [f"{v:.6g}" for k in range(len(labels)) for v in (targets[index, k], predictions[index, k])]
                writer.writerow([row.get("mol_id", index), row["smiles"], *values])
            atomic_write_text(Path(args.output_dir, PREDICTIONS_FILE), table.getvalue())
        results = {"metrics": {split: metrics}}
        if isinstance(
            model.head, RegressionPredictor
        ):  # a parity plot (true vs predicted) only means something for values
            results["parity"] = {
                "y_true": targets[:, 0].tolist(),
                "y_pred": predictions[:, 0].tolist(),
                "label": labels[0],
            }
        return results
