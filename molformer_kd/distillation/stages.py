"""The stages behind `distill.py`: teacher, denoise, distill, finetune, evaluate.

`plan_run` validates a whole run at start-up (stage names, model configs, objectives and their layer pairs,
checkpoints that must already exist, per-stage TrainingArguments) before any data is loaded; `run_stage` then runs
one stage. Every training stage is a `DistillationTrainer` run (the supervised teacher, the denoiser and the
fine-tuned student are "students" trained with the `task` objective alone), writes its checkpoints under
`{output_dir}/{stage}/checkpoint-*` and its model with `save_pretrained` (safetensors) plus the featurizer or
tokenizer in `{output_dir}/{stage}`, loadable with `from_pretrained`.

What differs between tasks (which data, which head, which batches, which metrics) is a `TaskKind` chosen from the
dataset: `PropertyTask` (molecular property regression or binary classification, graph/SMILES models) or
`energy_forces.EnergyForcesTask` (energies and forces of QM9/xTB conformations, SchNet/PaiNN). The stages themselves
are task-agnostic.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from transformers import (
    AutoConfig,
    AutoModel,
    HfArgumentParser,
    TrainingArguments,
    set_seed,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging

from ..data import load_csv, load_embedded_qm9, load_qm9, load_sdf, per_label_metrics
from ..data.downstream import DOWNSTREAM_DATASETS, load_downstream
from ..data.metrics import per_label_classification_metrics
from ..modeling.auto import AutoModelForDenoising, AutoModelForMolecularPropertyPrediction
from ..modeling.modeling_graphormer import add_coordinate_noise
from ..tokenization.collators import GraphCollator, PairedCollator, collect_labels
from ..tokenization.featurization import MoleculeFeaturizer
from ..tokenization.processors import load_processor
from .arguments import STAGES, DataArguments, DistillationArguments, ModelArguments, StageArguments
from .energy_forces import EnergyForcesTask
from .registry import build_objective
from .trainer import DistillationModel, DistillationTrainer

logger = logging.get_logger(__name__)

TRAINING_STAGES = ("teacher", "denoise", "distill", "finetune")
SMILES_MODEL_TYPES = ("molformer_smiles_transformer",)
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"


# ---------------------------------------------------------------------------------------------- configs and models


def build_config(spec: dict, role: str, **overrides):
    """A new config from `{'model_type': ..., 'preset': optional, **kwargs}`."""
    if not isinstance(spec, dict) or "model_type" not in spec:
        raise ValueError(
            f"{role}_config must be a mapping with a 'model_type' (e.g. molformer_graphormer), got {spec!r}"
        )
    kwargs = dict(spec)
    model_type = kwargs.pop("model_type")
    preset = kwargs.pop("preset", None)
    if model_type not in CONFIG_MAPPING:
        known = sorted(t for t in CONFIG_MAPPING if t.startswith("molformer") or t in ("schnet", "painn"))
        raise ValueError(f"{role}_config: unknown model_type {model_type!r}; molformer_kd model types: {known}")
    config_class = CONFIG_MAPPING[model_type]
    kwargs.update(overrides)
    try:
        return config_class.from_preset(preset, **kwargs) if preset else config_class(**kwargs)
    except TypeError as error:
        raise ValueError(f"{role}_config: {error}") from error


def is_checkpoint_dir(path) -> bool:
    return path is not None and Path(path, "config.json").is_file()


def new_processor(config):
    """A processor for a freshly configured model: the SMILES tokenizer or a graph featurizer matching the config."""
    if config.model_type in SMILES_MODEL_TYPES:
        if getattr(config, "variant", "st_kd") == "st_base":
            from ..tokenization.tokenization_st_base import StBaseTokenizer

            return StBaseTokenizer()
        from ..tokenization.tokenization_smiles import SmilesTokenizer

        return SmilesTokenizer()
    return MoleculeFeaturizer(
        multi_hop_max_dist=getattr(config, "multi_hop_max_dist", 5),
        max_spatial=getattr(config, "max_spatial", 20),
        use_3d=getattr(config, "geometry", "2d") == "3d",
    )


def processor_config_overrides(config, processor) -> dict:
    """Config values a fresh model takes from its processor (SMILES vocabulary size and padding id)."""
    if config.model_type in SMILES_MODEL_TYPES:
        return {"vocab_size": len(processor), "pad_token_id": processor.pad_token_id}
    return {}


# ---------------------------------------------------------------------------------------------- task kinds


class TaskKind(Protocol):
    """What the stages need to know about a task; `PropertyTask` and `EnergyForcesTask` implement it.

    `auto_class` creates and loads the trained models, `teacher_auto_class` loads the distill stage's teacher,
    `task_objective` names the supervised objective. Processors (featurizer/tokenizer) may be None.
    """

    name: str
    description: str
    datasets_hint: str
    auto_class: type
    teacher_auto_class: type
    task_objective: str

    def load_records(self, data_args: DataArguments): ...

    def statistics(self, train_rows) -> dict: ...

    def new_processor(self, config): ...

    def load_processor(self, path): ...

    def collator(self, processor) -> Callable: ...

    def paired_collator(self, teacher_processor, student_processor, with_labels: bool) -> Callable: ...

    def compute_metrics(self, config) -> Callable | None: ...

    def evaluate(self, model, processor, rows, args: TrainingArguments, split: str) -> dict: ...


def load_records_by_name(data_args: DataArguments):
    """The DatasetDict of a property dataset named by `data_args.dataset`, with the label columns checked."""
    name = data_args.dataset
    if name == "qm9_embedded":
        dataset = load_embedded_qm9()
    elif name == "qm9":
        dataset = load_qm9(seed=data_args.split_seed)
    elif name in DOWNSTREAM_DATASETS:
        dataset = load_downstream(name)  # its scaffold split (deterministic: split_seed does not apply)
    elif name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        dataset = load_csv(name, label_columns=data_args.label_columns, seed=data_args.split_seed)
    elif name.endswith((".sdf", ".sdf.gz")):
        dataset = load_sdf(name, label_properties=data_args.label_columns, seed=data_args.split_seed)
    else:
        raise ValueError(
            f"dataset {name!r}: use 'qm9_embedded', 'qm9', {', '.join(map(repr, DOWNSTREAM_DATASETS))}, a "
            ".csv/.tsv/.sdf path (property prediction) or "
            "'qm9_xtb' / a QM9-xTB .npz path (energies and forces)"
        )
    for split, rows in dataset.items():
        missing = [c for c in data_args.label_columns if c not in rows.column_names]
        if missing:
            raise ValueError(
                f"dataset {name!r} split {split!r} has no label columns {missing}; it has {rows.column_names}"
            )
    return dataset


# `DataArguments.problem_type` -> the head's `config.problem_type`, the predictions.csv column suffix and the
# per-label metrics of the model's outputs (values for regression, class-1 probabilities for classification).
HEAD_PROBLEM_TYPES = {"regression": "regression", "classification": "multi_label_classification"}
PREDICTION_SUFFIXES = {"regression": "_pred", "classification": "_prob"}
PER_LABEL_METRICS = {"regression": per_label_metrics, "classification": per_label_classification_metrics}


def check_binary_labels(records, label_columns, dataset_name: str) -> None:
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


def label_statistics(train_rows, label_columns, problem_type: str = "regression") -> dict:
    """Config entries of a property head for `label_columns`.

    Regression: label names and the training mean/std (targets are learned normalized). Classification (binary, one
    sigmoid output per label): the names and `multi_label_classification`; `label_mean`/`label_std` are set to None
    so that a regression checkpoint loaded with these entries (the finetune stage) keeps no stale statistics.
    """
    if problem_type == "classification":
        return {
            "num_labels": len(label_columns),
            "label_names": list(label_columns),
            "label_mean": None,
            "label_std": None,
            "problem_type": HEAD_PROBLEM_TYPES[problem_type],
        }
    if problem_type != "regression":
        raise ValueError(f"problem_type {problem_type!r}: use one of {list(HEAD_PROBLEM_TYPES)}")
    values = np.array([[np.nan if row[c] is None else row[c] for c in label_columns] for row in train_rows], float)
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return {
        "num_labels": len(label_columns),
        "label_names": list(label_columns),
        "label_mean": [float(v) for v in mean],
        "label_std": [float(v) for v in std],
        "problem_type": "regression",
    }


@dataclass
class SingleModelCollator:
    """Records -> `{"student_inputs", "labels"?}` for stages that train or test one model (no teacher).

    Graph models get the padded graph batch (`GraphCollator`), SMILES models their tokenizer's batch.
    `noise_sigma` (denoise stage) perturbs the coordinates (D&D eq. 3) and adds the true noise as `noise`.
    """

    processor: object
    label_columns: list[str] = field(default_factory=list)
    noise_sigma: float | None = None

    def __call__(self, rows):
        if isinstance(self.processor, MoleculeFeaturizer):
            inputs = GraphCollator(self.processor)(rows)
            inputs.pop("labels", None)
        else:
            inputs = dict(self.processor([row["smiles"] for row in rows], padding=True, return_tensors="pt"))
        if self.noise_sigma is not None:
            inputs["pos"], inputs["noise"] = add_coordinate_noise(
                inputs["pos"], inputs["attention_mask"].bool(), self.noise_sigma
            )
        batch = {"student_inputs": inputs}
        if self.label_columns:
            batch["labels"] = collect_labels(rows, self.label_columns)
        return batch


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp(-log(1 + exp(-x))) never overflows, for any sign of x.
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, dtype=np.float64)))


def property_predictions_and_metrics(logits, targets, label_names, problem_type: str = "regression"):
    """(predictions, per-label metrics) of a property head's (B, T) `logits`.

    The predictions are what the model tells a user: values in the original units (regression) or probabilities of
    class 1, the sigmoid of the logits (classification).
    """
    logits = np.asarray(logits, dtype=np.float64)
    predictions = sigmoid(logits) if problem_type == "classification" else logits
    return predictions, PER_LABEL_METRICS[problem_type](predictions, targets, label_names)


def label_metrics(label_names, problem_type: str = "regression"):
    """A Trainer `compute_metrics`: MAE/RMSE (regression) or ROC-AUC/accuracy/log loss (classification) per label."""

    def compute_metrics(eval_prediction):
        logits = eval_prediction.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        return property_predictions_and_metrics(logits, eval_prediction.label_ids, label_names, problem_type)[1]

    return compute_metrics


@dataclass
class PropertyTask:
    """Molecular properties (`label_columns`) with graph or SMILES models and their featurizer/tokenizer.

    `problem_type` "regression" or "classification" (binary labels 0/1, NaN = missing; one sigmoid output per label).
    The distill stage loads the teacher backbone (`AutoModel`): the property objectives read its hidden states.
    """

    label_columns: list[str]
    problem_type: str = "regression"
    name = "property"
    description = "molecular property"
    datasets_hint = "property models need a property dataset ('qm9_embedded', 'qm9', a .csv/.tsv/.sdf path)"
    auto_class = AutoModelForMolecularPropertyPrediction
    teacher_auto_class = AutoModel
    task_objective = "task"

    def load_records(self, data_args: DataArguments):
        records = load_records_by_name(data_args)
        if self.problem_type == "classification":
            check_binary_labels(records, self.label_columns, data_args.dataset)
        return records

    def statistics(self, train_rows) -> dict:
        return label_statistics(train_rows, self.label_columns, self.problem_type)

    def check_model(self, config) -> None:
        """The model must predict this task's labels, with this task's problem type."""
        model_labels = getattr(config, "label_names", None) or self.label_columns
        if list(model_labels) != list(self.label_columns):
            raise ValueError(f"the model predicts {model_labels}, the config asks for {self.label_columns}")
        model_problem_type = getattr(config, "problem_type", None) or "regression"
        if model_problem_type != HEAD_PROBLEM_TYPES[self.problem_type]:
            raise ValueError(
                f"the model is a {model_problem_type!r} model, the config asks for problem_type {self.problem_type!r}"
            )

    def new_processor(self, config):
        """The processor for a freshly configured model; sets the config entries it dictates (SMILES vocabulary)."""
        processor = new_processor(config)
        for key, value in processor_config_overrides(config, processor).items():
            setattr(config, key, value)
        return processor

    def load_processor(self, path):
        return load_processor(path)

    def collator(self, processor):
        return SingleModelCollator(processor, label_columns=self.label_columns)

    def paired_collator(self, teacher_processor, student_processor, with_labels: bool):
        return PairedCollator(
            teacher_processor, student_processor, label_columns=self.label_columns if with_labels else []
        )

    def compute_metrics(self, config):
        if not config.num_labels:
            return None
        self.check_model(config)
        return label_metrics(self.label_columns, self.problem_type)

    def evaluate(self, model, processor, rows, args: TrainingArguments, split: str) -> dict:
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
        predictions, metrics = property_predictions_and_metrics(logits, targets, labels, self.problem_type)
        if args.should_save:
            os.makedirs(args.output_dir, exist_ok=True)
            with open(Path(args.output_dir, PREDICTIONS_FILE), "w", newline="") as handle:
                writer = csv.writer(handle)
                suffix = PREDICTION_SUFFIXES[self.problem_type]
                writer.writerow(["mol_id", "smiles"] + [f"{c}{s}" for c in labels for s in ("", suffix)])
                for index, row in enumerate(rows):
                    values = [
                        f"{v:.6g}" for k in range(len(labels)) for v in (targets[index, k], predictions[index, k])
                    ]
                    writer.writerow([row.get("mol_id", index), row["smiles"], *values])
        results = {"metrics": {split: metrics}}
        if self.problem_type == "regression":  # a parity plot (true vs predicted) only means something for values
            results["parity"] = {
                "y_true": targets[:, 0].tolist(),
                "y_pred": predictions[:, 0].tolist(),
                "label": labels[0],
            }
        return results


def task_kind(data_args: DataArguments) -> TaskKind:
    """The task of a run, chosen by its dataset."""
    if EnergyForcesTask.handles(data_args.dataset):
        if data_args.problem_type != "regression":
            raise ValueError(
                f"problem_type {data_args.problem_type!r}: dataset {data_args.dataset!r} (energies and forces) is "
                "regression only"
            )
        return EnergyForcesTask()
    return PropertyTask(list(data_args.label_columns), data_args.problem_type)


def check_model_fits_task(kind: TaskKind, config, role: str, auto_class=None) -> None:
    """A model of `config` must exist in the task's Auto class (a painn student cannot learn `gap` labels)."""
    auto_class = auto_class or kind.auto_class
    if type(config) not in auto_class._model_mapping:
        raise ValueError(
            f"{role}: model_type {config.model_type!r} has no {kind.description} model ({auto_class.__name__}); "
            f"{kind.datasets_hint}"
        )


def load_records(data_args: DataArguments, kind: TaskKind | None = None):
    """The records of the run's task (`kind`, default: chosen from the dataset), cut to the `max_*_samples`."""
    dataset = (kind or task_kind(data_args)).load_records(data_args)
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_test_samples,
    }
    for split, limit in limits.items():
        if limit is not None and split in dataset and len(dataset[split]) > limit:
            dataset[split] = dataset[split].select(range(limit))
    return dataset


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class StagePlan:
    name: str
    output_dir: str
    training_args: TrainingArguments | None = None
    teacher_source: str | None = None  # checkpoint dir of the teacher (distill)
    student_source: str | None = None  # checkpoint dir to start from (distill/finetune) or to test (evaluate)


@dataclass
class RunPlan:
    model_args: ModelArguments
    data_args: DataArguments
    distill_args: DistillationArguments
    stage_args: StageArguments
    training_args: TrainingArguments
    raw_training: dict  # the TrainingArguments keys of the config file, for per-stage arguments
    stages: list[StagePlan]
    kind: TaskKind


def _stage_training_args(raw_training: dict, overrides: dict, stage: str, output_dir: str) -> TrainingArguments:
    values = {"report_to": "none", **raw_training, **overrides, "output_dir": output_dir}
    # The Trainer never pushes by itself: distill.py pushes the final student with its model card.
    values["push_to_hub"] = False
    try:
        (args,) = HfArgumentParser(TrainingArguments).parse_dict(values, allow_extra_keys=False)
    except ValueError as error:
        raise ValueError(f"stage {stage!r}: bad TrainingArguments overrides {sorted(overrides)}: {error}") from error
    args.remove_unused_columns = False
    return args


def plan_run(model_args, data_args, distill_args, stage_args, training_args, raw_training: dict) -> RunPlan:
    """Check the whole run before anything is loaded or trained; raise ValueError naming the bad setting."""
    unknown = [s for s in stage_args.stages if s not in STAGES]
    if unknown or not stage_args.stages:
        raise ValueError(f"unknown stage(s) {unknown or stage_args.stages}; stages are {list(STAGES)}")
    bad_overrides = sorted(set(stage_args.stage_overrides) - set(STAGES))
    if bad_overrides:
        raise ValueError(f"stage_overrides for unknown stage(s) {bad_overrides}; stages are {list(STAGES)}")
    kind = task_kind(data_args)
    root = training_args.output_dir
    stage_dir = {s: os.path.join(root, s) for s in STAGES}
    planned: list[StagePlan] = []
    produced: set[str] = set()  # stage dirs this run writes before the current stage

    def existing_or_produced(path, what, hint):
        if path in produced or is_checkpoint_dir(path):
            return path
        raise ValueError(f"missing {what} checkpoint {path!r} (no config.json there): {hint}")

    def model_config(source, spec, role, auto_class=None):
        """The config of a checkpoint (existing now) or of a new model (`spec`), checked against the task."""
        if source is not None and source not in produced:
            config = AutoConfig.from_pretrained(source)
            role = f"{role} checkpoint {source!r}"
        else:
            config = build_config(spec, role)
            role = f"{role}_config"
        check_model_fits_task(kind, config, role, auto_class)
        return config

    last_student = None
    for stage in stage_args.stages:
        overrides = stage_args.stage_overrides.get(stage, {})
        plan = StagePlan(stage, stage_dir[stage])
        if stage in TRAINING_STAGES:
            plan.training_args = _stage_training_args(raw_training, overrides, stage, stage_dir[stage])
        if stage == "teacher":
            model_config(None, model_args.teacher_config, "teacher")
        elif stage == "denoise":
            config = model_config(None, model_args.teacher_config, "teacher")
            if type(config) not in AutoModelForDenoising._model_mapping:
                raise ValueError(f"stage 'denoise': model_type {config.model_type!r} has no denoising head")
            if getattr(config, "geometry", "3d") != "3d":
                raise ValueError(
                    f"stage 'denoise' denoises 3D coordinates; teacher_config has geometry {config.geometry!r}"
                )
        elif stage == "distill":
            if not distill_args.objectives:
                raise ValueError(f"stage 'distill' needs objectives, e.g. {{'{kind.task_objective}': {{}}, ...}}")
            teacher_dir = model_args.teacher_name_or_path or (
                stage_dir["denoise"] if "denoise" in stage_args.stages else stage_dir["teacher"]
            )
            plan.teacher_source = existing_or_produced(
                teacher_dir, "teacher", "run the teacher (or denoise) stage first or set teacher_name_or_path"
            )
            if model_args.student_name_or_path is not None:
                plan.student_source = existing_or_produced(
                    model_args.student_name_or_path, "student", "fix student_name_or_path"
                )
            elif model_args.student_config is None:
                raise ValueError("stage 'distill' needs student_config (a new student) or student_name_or_path")
            teacher_config = model_config(
                plan.teacher_source, model_args.teacher_config, "teacher", kind.teacher_auto_class
            )
            student_config = model_config(plan.student_source, model_args.student_config, "student")
            build_objectives(distill_args, teacher_config, student_config)
            unknown_weights = sorted(set(distill_args.initial_stage_weights) - set(distill_args.objectives))
            if unknown_weights:
                raise ValueError(f"initial_stage_weights name objectives that are not configured: {unknown_weights}")
            last_student = plan.output_dir
        elif stage == "finetune":
            source = model_args.student_name_or_path if "distill" not in stage_args.stages else stage_dir["distill"]
            if source is None and model_args.student_config is not None:
                # The student trained alone from scratch: the no-distillation baseline of every comparison.
                model_config(None, model_args.student_config, "student")
            else:
                plan.student_source = existing_or_produced(
                    source or stage_dir["distill"], "student", "run the distill stage first or set student_name_or_path"
                )
                if plan.student_source not in produced:
                    model_config(plan.student_source, None, "student")
            last_student = plan.output_dir
        elif stage == "evaluate":
            source = stage_args.evaluate_name_or_path or last_student
            if source is None:
                source = next(
                    (stage_dir[s] for s in ("finetune", "distill", "teacher") if is_checkpoint_dir(stage_dir[s])),
                    stage_dir["finetune"],
                )
            plan.student_source = existing_or_produced(source, "model to evaluate", "set evaluate_name_or_path")
            if plan.student_source not in produced:
                model_config(plan.student_source, None, "model to evaluate")
        if stage in TRAINING_STAGES:
            produced.add(plan.output_dir)
        planned.append(plan)
    return RunPlan(model_args, data_args, distill_args, stage_args, training_args, raw_training, planned, kind)


def build_objectives(distill_args: DistillationArguments, teacher_config, student_config):
    """Objective modules and weights from `{name: {'weight': w, **options}}` (validated here, at start-up)."""
    objectives, weights = {}, {}
    for name, options in distill_args.objectives.items():
        options = dict(options or {})
        weights[name] = float(options.pop("weight", 1.0))
        objectives[name] = build_objective(name, teacher_config, student_config, **options)
    return objectives, weights


# ---------------------------------------------------------------------------------------------- running stages


def _train(
    plan: StagePlan,
    model: DistillationModel,
    records,
    collator,
    processor,
    compute_metrics=None,
    teacher=None,
    **trainer_kwargs,
):
    args = plan.training_args
    trainer = DistillationTrainer(
        model=model,
        args=args,
        teacher=teacher,
        data_collator=collator,
        train_dataset=records["train"],
        eval_dataset=records.get("validation") if args.eval_strategy != "no" else None,
        processing_class=processor,
        compute_metrics=compute_metrics,
        **trainer_kwargs,
    )
    resume = args.resume_from_checkpoint
    if resume in ("latest", "last", "true", "True"):
        resume = get_last_checkpoint(args.output_dir)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_student(plan.output_dir)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    return trainer


def new_model(kind: TaskKind, spec: dict, role: str, statistics: dict, auto_class=None):
    """A freshly initialised model of the task (or of `auto_class`) and its new processor (None for point clouds)."""
    config = build_config(spec, role, **statistics)
    processor = kind.new_processor(config)
    return (auto_class or kind.auto_class).from_config(config), processor


def supervised(kind: TaskKind, model) -> DistillationModel:
    """`model` trained with the task's own supervised objective alone (teacher, denoise and finetune stages)."""
    return DistillationModel(model, {kind.task_objective: build_objective(kind.task_objective, None, model.config)})


def predicts_same_task(checkpoint_config, statistics: dict) -> bool:
    """Whether a checkpoint's head already predicts the labels and problem type in `statistics` (the task's head
    config entries). A task whose entries name neither (energies and forces) always keeps its head."""
    checkpoint_task = {
        "label_names": list(getattr(checkpoint_config, "label_names", None) or []),
        # A head reads a missing problem_type as regression (heads.py).
        "problem_type": getattr(checkpoint_config, "problem_type", None) or "regression",
    }
    return all(statistics[key] == value for key, value in checkpoint_task.items() if key in statistics)


def run_stage(run: RunPlan, plan: StagePlan, records) -> dict:
    """Run one planned stage; returns a summary (paths, metrics) for the model card."""
    model_args, distill_args, kind = run.model_args, run.distill_args, run.kind
    if plan.training_args is not None:
        set_seed(plan.training_args.seed)
    if plan.name == "teacher":
        model, processor = new_model(kind, model_args.teacher_config, "teacher", kind.statistics(records["train"]))
        collator = kind.collator(processor)
        _train(plan, supervised(kind, model), records, collator, processor, kind.compute_metrics(model.config))
        return {"stage": plan.name, "output_dir": plan.output_dir}
    if plan.name == "denoise":  # graph models only (plan_run checks the denoising head)
        model, processor = new_model(
            kind, model_args.teacher_config, "teacher", kind.statistics(records["train"]), AutoModelForDenoising
        )
        collator = SingleModelCollator(processor, noise_sigma=distill_args.noise_sigma)
        _train(plan, supervised(kind, model), records, collator, processor)
        return {"stage": plan.name, "output_dir": plan.output_dir}
    if plan.name == "distill":
        teacher = kind.teacher_auto_class.from_pretrained(plan.teacher_source)
        teacher_processor = kind.load_processor(plan.teacher_source)
        if plan.student_source is not None:
            student = kind.auto_class.from_pretrained(plan.student_source)
            processor = kind.load_processor(plan.student_source)
        else:
            student, processor = new_model(
                kind, model_args.student_config, "student", kind.statistics(records["train"])
            )
        objectives, weights = build_objectives(distill_args, teacher.config, student.config)
        with_labels = kind.task_objective in objectives
        _train(
            plan,
            DistillationModel(student, objectives, weights),
            records,
            kind.paired_collator(teacher_processor, processor, with_labels),
            processor,
            kind.compute_metrics(student.config) if with_labels else None,
            teacher=teacher,
            initial_stage_epochs=distill_args.initial_stage_epochs,
            initial_stage_weights=distill_args.initial_stage_weights,
        )
        return {
            "stage": "distill",
            "output_dir": plan.output_dir,
            "teacher": plan.teacher_source,
            "objectives": distill_args.objectives,
        }
    if plan.name == "finetune":
        statistics = kind.statistics(records["train"])
        if plan.student_source is None:
            student, processor = new_model(kind, model_args.student_config, "student", statistics)
        else:
            # The head takes this dataset's statistics. HF re-initialises only weights whose shape changed, so a head
            # that learned other labels (or the same names as another problem type) is drawn afresh here.
            checkpoint_config = AutoConfig.from_pretrained(plan.student_source)
            student = kind.auto_class.from_pretrained(plan.student_source, ignore_mismatched_sizes=True, **statistics)
            processor = kind.load_processor(plan.student_source)
            if predicts_same_task(checkpoint_config, statistics):
                logger.info("finetune: %s already predicts these labels; its task head is kept", plan.student_source)
            else:
                student.reset_task_head()
                logger.info(
                    "finetune: %s predicted %s (%s); new task head for %s (%s), backbone kept",
                    plan.student_source,
                    getattr(checkpoint_config, "label_names", None),
                    getattr(checkpoint_config, "problem_type", None) or "regression",
                    statistics.get("label_names"),
                    statistics.get("problem_type"),
                )
        collator = kind.collator(processor)
        _train(plan, supervised(kind, student), records, collator, processor, kind.compute_metrics(student.config))
        initialized_from = plan.student_source or "scratch (student_config)"
        return {"stage": "finetune", "output_dir": plan.output_dir, "initialized_from": initialized_from}
    if plan.name == "evaluate":
        return evaluate_model(run, plan, records)
    raise ValueError(f"unknown stage {plan.name!r}")


def evaluate_model(run: RunPlan, plan: StagePlan, records) -> dict:
    """The task's test metrics of a saved model; writes metrics.json (and the task's other files) into the stage dir.

    The summary adds what the model card shows: `parity` (true vs predicted first label) where the task has one.
    """
    split = run.stage_args.evaluate_split
    if split not in records:
        raise ValueError(f"evaluate: the dataset has no split {split!r}; it has {list(records)}")
    # The evaluate stage only predicts: periodic evaluation settings of the training stages do not apply to it.
    overrides = {"eval_strategy": "no", **run.stage_args.stage_overrides.get("evaluate", {})}
    args = _stage_training_args(run.raw_training, overrides, "evaluate", plan.output_dir)
    model = run.kind.auto_class.from_pretrained(plan.student_source)
    processor = run.kind.load_processor(plan.student_source)
    try:
        results = run.kind.evaluate(model, processor, records[split], args, split)
    except ValueError as error:
        raise ValueError(f"evaluate {plan.student_source}: {error}") from error
    summary = {"stage": "evaluate", "model": plan.student_source, "split": split, "metrics": results["metrics"]}
    if args.should_save:
        os.makedirs(plan.output_dir, exist_ok=True)
        Path(plan.output_dir, METRICS_FILE).write_text(json.dumps(summary, indent=2))
    return {**summary, **results}
