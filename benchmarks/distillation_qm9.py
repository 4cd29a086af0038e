"""Distillation benchmark on QM9 HOMO-LUMO gap (eV): CCMD Tables III/IV, ST-KD Table 4 and D&D shapes, mean ± std.

One command runs every row of a rows file for every seed, with the model sizes, data split and training budget of a
preset (benchmarks/configs/distillation_qm9/{smoke,cpu,paper,cpu_painn}.yaml). The rows file is the preset's `rows`
(default rows.yaml, the 3D Graphormer teacher of the papers; cpu_painn: rows_painn.yaml, a PaiNN teacher), and may
list its own `targets`. A preset with `load_best_model_at_end` makes every row keep its best validation checkpoint on
the table's metric.

    .venv/bin/python benchmarks/distillation_qm9.py --preset cpu --seeds 0 1 2 --chemprop .venv-chemprop/bin/chemprop
    .venv/bin/python benchmarks/distillation_qm9.py --preset paper --seeds 0 1 2 --rows gin gin_lm_la_inv_n
    .venv/bin/python benchmarks/distillation_qm9.py --preset smoke --seeds 0 --rows graphormer_2d   # seconds
    .venv/bin/python benchmarks/distillation_qm9.py --preset cpu_painn --chemprop .venv-chemprop/bin/chemprop

Data: one fixed-seed random split (the preset's `data.split_seed` and `data.sizes`, e.g. 20,000 / 2,000 / 5,000
of full QM9 from qm9pack); the seeds of `--seeds` are training seeds. Teacher and students see the same
heavy-atom tokens in SMILES order; only the teacher's featurizer reads the DFT coordinates (`pos`). D&D rows
fine-tune on downstream datasets (`datasets:` of a row, scaffold splits, `molformer_kd.data.load_downstream`).

Each row + seed is a `distill.py` run (the same config parser, `plan_run` and `run_stages`) in
`{work_dir}/seed{seed}/{row}`; rows that distil from (`teacher`) or start from (`init`) another row run after it,
and that row is trained once per seed. The chemprop row runs chemprop v2's own CLI (`--chemprop`, an executable in
a separate environment) on the same split. Resumable: a row + seed whose record exists is skipped; a training
stage that finished is not retrained; an interrupted one resumes from its last checkpoint (chemprop restarts), and
a row's wall time adds up over the sessions that worked on it.
The results JSON is the ledger that outlives the machine: it is rewritten after every row + seed, and a row + seed
it holds is not retrained on a machine without the run (a new clone), unless a row still to train needs that row's
model (a teacher or an `init`), which is then trained again. Runs of other seeds in the same JSON are kept, so
processes training different seeds can share it. Delete the JSON to start over.
Writes `{results_name}.json` (every number, the resolved config of every run, seeds, wall times, machine),
`{results_name}.md` (the tables) and one learning-curve PNG per table (validation metric and distillation loss
per epoch, from the Trainer's log history).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from datasets import DatasetDict
from filelock import FileLock
from transformers.utils import logging as transformers_logging

from molformer_kd.data import DOWNSTREAM_DATASETS, load_embedded_qm9, load_qm9, per_label_metrics
from molformer_kd.data.downstream import downstream_files
from molformer_kd.distillation.arguments import DataArguments
from molformer_kd.distillation.checkpoints import atomic_write_text, last_complete_checkpoint
from molformer_kd.distillation.config import parse_config
from molformer_kd.distillation.stages import METRICS_FILE, plan_run, run_stages
from molformer_kd.distillation.tasks import load_records

ROOT = Path(__file__).resolve().parents[1]

CONFIG_DIR = ROOT / "benchmarks" / "configs" / "distillation_qm9"
ROWS_FILE = CONFIG_DIR / "rows.yaml"
# kind -> the distill.py stage that trains the row (chemprop: its own CLI, no stage).
ROW_KINDS = {
    "teacher": "teacher",  # supervised 3D teacher (sees DFT coordinates)
    "denoise": "denoise",  # label-free denoising pretraining of a 3D model (D&D stage 1)
    "baseline": "finetune",  # the student trained alone, from scratch
    "finetune": "finetune",  # a student fine-tuned from the model of its `init` row
    "distill": "distill",  # a student distilled from its `teacher` row
    "chemprop": None,
}
ROW_RECORD = "benchmark_row.json"
# The running wall time of a row + seed, saved while it trains (see `wall_clock`).
WALL_FILE = "wall_s.json"
# What the distillation objectives log (their components' first word): summed into a row's distillation curve.
DISTILLATION_LOGS = ("ccmd", "stkd", "dnd", "prediction")
CHEMPROP_METRICS = "chemprop_metrics.json"
# Table shapes of the papers: (title, caption). The teacher is named by its row (the first row of each table).
TABLES = {
    "ccmd_graphormer": (
        "CCMD Table III shape: 3D teacher -> 2D Graphormer student",
        (
            "L_m: global-token L1 (summed over the distilled layers); L_a: atom-token L1 sum; coordinating weight "
            "1/N^2 per molecule; W_search: a constant in its place; joint: one L1 averaged over all tokens, weight W."
        ),
    ),
    "ccmd_gin": (
        "CCMD Table IV shape: 3D teacher -> GIN student (virtual node = global token)",
        "All layers distilled; the GIN's coordinating weight is 1/N (CCMD), 1/N^2 is the transformer's.",
    ),
    "stkd": (
        "ST-KD Table 4 shape: 3D teacher -> SMILES Transformer",
        (
            "Feature KD: MSE of the global tokens of paired layers (weight 0.5); attention KD: MSE of the student's "
            "biased-layer attention biases (head-mixed, softmaxed) against the teacher's attention (weight 2); both "
            "after an initial stage without the task loss."
        ),
    ),
    "dnd": (
        "D&D shape: denoising-pretrained 3D model -> GIN, fine-tuned on downstream tasks (scaffold splits)",
        (
            "Stage 1 denoises noisy QM9 coordinates (no labels); stage 2 distils its node representations (node) or "
            "mean-pooled graph representation (graph) into a GIN on QM9 SMILES (no labels); each downstream column "
            "fine-tunes that GIN, or the same GIN from scratch. Regression: test MAE; BBB: test ROC-AUC."
        ),
    ),
}

# Targets checked on the seed means of the QM9 rows (lower MAE is better), unless the rows file lists its own
# (`targets:`, the same keys):
#   improvement: 1 - mean(row) / mean(reference); gap_closed: (reference - row) / (reference - teacher);
#   best_distilled_ratio: the lowest-MAE QM9 distill row's mean / mean(reference), a win when below the threshold.
TARGET_CHECKS = ("improvement", "gap_closed", "best_distilled_ratio")
TARGETS = (
    {
        "name": "CCMD 2D Graphormer beats its baseline",
        "check": "improvement",
        "row": "graphormer_2d_ccmd",
        "reference": "graphormer_2d",
        "threshold": 0.05,
    },
    {
        "name": "CCMD 2D Graphormer closes the gap to the 3D teacher",
        "check": "gap_closed",
        "row": "graphormer_2d_ccmd",
        "reference": "graphormer_2d",
        "teacher": "teacher_3d",
        "threshold": 0.20,
    },
    {"name": "ST-KD beats ST-BASE", "check": "improvement", "row": "st_kd", "reference": "st_base", "threshold": 0.20},
    {
        "name": "best distilled 2D student beats chemprop v2",
        "check": "best_distilled_ratio",
        "reference": "chemprop",
        "threshold": 1.0,
    },
)

logger = logging.getLogger("distillation_qm9")


# ---------------------------------------------------------------------------------------------- configuration


def read_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping")
    return values


def load_preset(name_or_path: str) -> dict:
    """A preset by name (smoke, cpu, paper) or by path to a YAML file of the same shape."""
    path = Path(name_or_path) if name_or_path.endswith((".yaml", ".yml")) else CONFIG_DIR / f"{name_or_path}.yaml"
    preset = read_yaml(path)
    missing = [key for key in ("results_name", "data", "models", "training") if key not in preset]
    if missing:
        raise ValueError(f"preset {str(path)!r} lacks {missing}")
    preset.setdefault("parameters", {})
    preset.setdefault("teacher_training", {})
    preset["rows_file"] = str(CONFIG_DIR / preset.get("rows", ROWS_FILE.name))
    preset["path"] = str(path)
    return preset


def expand_datasets(rows: list[dict]) -> list[dict]:
    """A row with `datasets: [a, b]` becomes one row per dataset, `{name}_{dataset}`, with `base` and `dataset`."""
    expanded = []
    for row in rows:
        datasets = row.get("datasets")
        if not datasets:
            expanded.append(row)
            continue
        for dataset in datasets:
            copy = {key: value for key, value in row.items() if key != "datasets"}
            expanded.append({**copy, "name": f"{row['name']}_{dataset}", "base": row["name"], "dataset": dataset})
    return expanded


def is_evaluated(row: dict) -> bool:
    """Whether a row has a test metric: pretraining rows (denoising, label-free distillation) have none."""
    if row["kind"] == "denoise":
        return False
    return row["kind"] != "distill" or "task" in row["objectives"]


def load_rows(path=ROWS_FILE, models=None) -> list[dict]:
    """The row definitions, checked and expanded per dataset: unique names, known kinds and tables, dependencies
    (`teacher`, `init`) that are earlier rows."""
    rows = read_yaml(path).get("rows") or []
    if not rows:
        raise ValueError(f"{path}: no rows")
    seen = {}
    for index, row in enumerate(expand_datasets(rows)):
        where = f"{path} row {index} ({row.get('name')!r})"
        required = ("name", "label", "kind", "tables") + (("model",) if row.get("kind") != "chemprop" else ())
        for key in required:
            if key not in row:
                raise ValueError(f"{where}: missing {key!r}")
        if row["name"] in seen:
            raise ValueError(f"{where}: duplicate row name")
        if row["kind"] not in ROW_KINDS:
            raise ValueError(f"{where}: kind {row['kind']!r} is not one of {sorted(ROW_KINDS)}")
        unknown_tables = [t for t in row["tables"] if t not in TABLES]
        if unknown_tables:
            raise ValueError(f"{where}: unknown tables {unknown_tables}; tables are {sorted(TABLES)}")
        if models is not None and "model" in row and row["model"] not in models:
            raise ValueError(f"{where}: model {row['model']!r} is not in the preset's models {sorted(models)}")
        if row.get("budget", "preset") not in ("preset", "defaults") or ("budget" in row and row["kind"] != "chemprop"):
            raise ValueError(f"{where}: budget {row['budget']!r}: a chemprop row's 'preset' or 'defaults'")
        if row["kind"] == "distill" and not row.get("objectives"):
            raise ValueError(f"{where}: a distill row needs objectives")
        for key, kind in (("teacher", "distill"), ("init", "finetune")):
            if row["kind"] == kind and row.get(key) not in seen:
                raise ValueError(f"{where}: {key} {row.get(key)!r} must name an earlier row")
        seen[row["name"]] = row
    return list(seen.values())


def load_targets(path, rows: list[dict]) -> list[dict]:
    """The rows file's `targets:` (default TARGETS), checked against its rows."""
    targets = read_yaml(path).get("targets")
    if targets is None:
        return list(TARGETS)
    names = {row["name"] for row in rows}
    for index, target in enumerate(targets):
        where = f"{path} target {index} ({target.get('name')!r})"
        if target.get("check") not in TARGET_CHECKS:
            raise ValueError(f"{where}: check {target.get('check')!r} is not one of {list(TARGET_CHECKS)}")
        needed = ("name", "reference", "threshold") + (("row",) if target["check"] != "best_distilled_ratio" else ())
        needed += ("teacher",) if target["check"] == "gap_closed" else ()
        for key in needed:
            if key not in target:
                raise ValueError(f"{where}: missing {key!r}")
        mentioned = [target.get("row"), *reference_rows(target), target.get("teacher")]
        unknown = [name for name in mentioned if name is not None and name not in names]
        if unknown:
            raise ValueError(f"{where}: rows {unknown} are not in the rows file")
    return targets


def select_rows(rows: list[dict], names: list[str] | None) -> list[dict]:
    """The named rows (a row expanded per dataset is named by its base name, too) plus the rows they distil from
    or start from, in file order."""
    by_name = {row["name"]: row for row in rows}
    if not names:
        return list(rows)
    bases = {}
    for row in rows:
        bases.setdefault(row.get("base", row["name"]), []).append(row["name"])
    unknown = [name for name in names if name not in by_name and name not in bases]
    if unknown:
        raise ValueError(f"--rows: unknown rows {unknown}; rows are {list(bases)}")
    wanted = set()
    pending = [member for name in names for member in ([name] if name in by_name else bases[name])]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(by_name[name][key] for key in ("teacher", "init") if by_name[name].get(key))
    return [row for row in rows if row["name"] in wanted]


def resolve(value, parameters: dict):
    """Replace "@name" strings (anywhere in nested lists/dicts) by the preset's parameters[name]."""
    if isinstance(value, str) and value.startswith("@"):
        name = value[1:]
        if name not in parameters:
            raise ValueError(f"row option {value!r}: the preset has no parameter {name!r} ({sorted(parameters)})")
        return parameters[name]
    if isinstance(value, dict):
        return {key: resolve(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, parameters) for item in value]
    return value


# ---------------------------------------------------------------------------------------------- data


def seeded_subset(dataset, count: int, seed: int, what: str):
    if count > len(dataset):
        raise ValueError(f"{what}: asked for {count} molecules, only {len(dataset)} available")
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    return dataset.select(np.sort(order))


def load_split(data: dict) -> DatasetDict:
    """The benchmark's fixed-seed split: `data.sizes` molecules drawn at random (seed `data.split_seed`).

    qm9: one permutation of all usable QM9 molecules, cut into train/validation/test (disjoint).
    qm9_embedded: seeded subsets of the embedded set's own train/validation/test splits (disjoint by construction).
    """
    seed = int(data.get("split_seed", 0))
    sizes = [int(size) for size in data["sizes"]]
    if data["source"] == "qm9":
        everything = load_qm9(split=None, limit=data.get("limit"), num_proc=data.get("num_proc"))["train"]
        if sum(sizes) > len(everything):
            raise ValueError(f"data.sizes {sizes} need {sum(sizes)} molecules; QM9 has {len(everything)} usable")
        order = np.random.default_rng(seed).permutation(len(everything))
        bounds = np.cumsum((0, *sizes))
        parts = [np.sort(order[bounds[k] : bounds[k + 1]]) for k in range(3)]
        return DatasetDict(
            {name: everything.select(rows) for name, rows in zip(("train", "validation", "test"), parts)}
        )
    if data["source"] == "qm9_embedded":
        embedded = load_embedded_qm9()
        return DatasetDict(
            {
                name: seeded_subset(embedded[name], size, seed + k, f"data.sizes ({name})")
                for k, (name, size) in enumerate(zip(("train", "validation", "test"), sizes))
            }
        )
    raise ValueError(f"data.source {data['source']!r}: use 'qm9' (qm9pack) or 'qm9_embedded'")


def mean_inverse_atoms(train) -> float:
    """E[1/N] over the training molecules (N heavy atoms): the constant W of `W * L_a / N` whose average equals
    CCMD's coordinating weight, since 1/N^2 * L_a = (1/N) * (L_a / N)."""
    counts = np.array([len(pos) for pos in train["pos"]], dtype=float)
    return float(np.mean(1.0 / counts))


def preset_parameters(preset: dict, records) -> dict:
    parameters = dict(preset["parameters"])
    if parameters.get("ccmd_search_weight") == "auto":
        parameters["ccmd_search_weight"] = mean_inverse_atoms(records["train"])
    return parameters


# ---------------------------------------------------------------------------------------------- one row + seed


@dataclass(frozen=True)
class RowTask:
    """What a row learns and is scored on: the benchmark's QM9 label, or a downstream dataset's."""

    dataset: str
    label_columns: tuple[str, ...]
    problem_type: str  # "regression" | "classification"

    @property
    def metric(self) -> str:
        """The test metric of the tables: MAE for regression (lower is better), ROC-AUC for classification."""
        suffix = "roc_auc" if self.problem_type == "classification" else "mae"
        return f"{self.label_columns[0]}_{suffix}"

    @property
    def greater_is_better(self) -> bool:
        return self.problem_type == "classification"


def row_task(row: dict, preset: dict) -> RowTask:
    if "dataset" in row:
        spec = DOWNSTREAM_DATASETS[row["dataset"]]
        return RowTask(row["dataset"], (spec.label,), spec.task)
    return RowTask(preset["data"]["source"], (preset["data"]["label"],), "regression")


class RecordSource:
    """The records of every task, loaded once: the benchmark's QM9 split and each downstream dataset's split."""

    def __init__(self, qm9_split: DatasetDict):
        self.loaded = {None: qm9_split}

    def __call__(self, row: dict, task: RowTask) -> DatasetDict:
        key = row.get("dataset")
        if key not in self.loaded:
            data_args = DataArguments(
                dataset=key, label_columns=list(task.label_columns), problem_type=task.problem_type
            )
            self.loaded[key] = load_records(data_args)
        return self.loaded[key]


def row_dir(work_dir: Path, row: dict, seed: int) -> Path:
    return work_dir / f"seed{seed}" / row["name"]


def model_dir(work_dir: Path, row: dict, seed: int) -> Path:
    """Where a row's trained model is saved (`{row_dir}/{its training stage}`)."""
    return row_dir(work_dir, row, seed) / ROW_KINDS[row["kind"]]


def training_finished(stage_dir: Path) -> bool:
    return (stage_dir / "config.json").is_file() and (stage_dir / "train_results.json").is_file()


def run_config(row: dict, preset: dict, parameters: dict, seed: int, work_dir: Path, rows_by_name: dict) -> dict:
    """The flat distill.py config of one row + seed (stages chosen for resuming)."""
    directory = row_dir(work_dir, row, seed)
    stage = ROW_KINDS[row["kind"]]
    stage_dir = directory / stage
    task = row_task(row, preset)
    training = dict(preset["training"])
    if "dataset" in row:
        training.update(preset.get("downstream_training", {}))
    config = {
        "output_dir": str(directory),
        "dataset": task.dataset,
        "label_columns": list(task.label_columns),
        "problem_type": task.problem_type,
        "split_seed": int(preset["data"].get("split_seed", 0)),
        **training,
        "seed": seed,
        "stage_overrides": {},
    }
    if training.get("load_best_model_at_end"):
        # Every row keeps its best validation checkpoint, on the table's own metric; pretraining rows (no labels)
        # on their validation loss.
        evaluated = is_evaluated(row)
        config["metric_for_best_model"] = task.metric if evaluated else "loss"
        config["greater_is_better"] = task.greater_is_better if evaluated else False
    model = preset["models"][row["model"]]
    if row["kind"] in ("teacher", "denoise"):
        config["teacher_config"] = model
        config["stage_overrides"][stage] = dict(preset["teacher_training"])
    else:
        config["student_config"] = model
    if row["kind"] == "distill":
        config["teacher_name_or_path"] = str(model_dir(work_dir, rows_by_name[row["teacher"]], seed))
        config["objectives"] = resolve(row["objectives"], parameters)
        if config.get("teacher_cache"):  # one cache per seed's teacher, shared by the rows that read the same outputs
            config["teacher_cache_dir"] = str(work_dir / f"seed{seed}" / "teacher_cache")
        for key in ("initial_stage_epochs", "initial_stage_weights"):
            if key in row:
                config[key] = resolve(row[key], parameters)
    if row["kind"] == "finetune":
        config["student_name_or_path"] = str(model_dir(work_dir, rows_by_name[row["init"]], seed))
    evaluate = ["evaluate"] if is_evaluated(row) else []
    if evaluate:
        config["evaluate_name_or_path"] = str(stage_dir)  # the teacher row evaluates its teacher, too
    if training_finished(stage_dir):
        config["stages"] = evaluate
    else:
        config["stages"] = [stage, *evaluate]
        if last_complete_checkpoint(stage_dir):
            config["stage_overrides"].setdefault(stage, {})["resume_from_checkpoint"] = "latest"
    return config


def learning_curve(stage_dir: Path, metric: str) -> dict:
    """Per epoch from trainer_state.json: validation `metric`, training task loss, summed distillation components."""
    state_file = stage_dir / "trainer_state.json"
    if not state_file.is_file():
        return {}
    history = json.loads(state_file.read_text())["log_history"]
    key = f"eval_{metric}"
    validation = {round(entry["epoch"]): entry[key] for entry in history if key in entry}
    task, distillation = {}, {}
    for entry in history:
        if "loss" not in entry or "epoch" not in entry:
            continue
        epoch = max(math.ceil(entry["epoch"] - 1e-9), 1)  # logs in (e-1, e] belong to epoch e
        components = {name: value for name, value in entry.items() if name.split("_")[0] in DISTILLATION_LOGS}
        if "task" in entry:
            task.setdefault(epoch, []).append(entry["task"])
        if components:
            distillation.setdefault(epoch, []).append(sum(components.values()))
    epochs = sorted(set(validation) | set(task) | set(distillation))
    # Lists aligned with `epoch` (None where an epoch has no value), so the curve survives a JSON round trip.
    return {
        "epoch": epochs,
        "validation_metric": [validation.get(e) for e in epochs],
        "train_task_loss": [float(np.mean(task[e])) if e in task else None for e in epochs],
        "train_distillation_loss": [float(np.mean(distillation[e])) if e in distillation else None for e in epochs],
    }


def saved_test_metrics(directory: Path) -> dict | None:
    """The test metrics a finished row left: distill.py's evaluate/metrics.json or the chemprop row's file."""
    for path in (directory / "evaluate" / METRICS_FILE, directory / CHEMPROP_METRICS):
        if path.is_file():
            return json.loads(path.read_text())["metrics"]["test"]
    return None


def run_distill_py(config: dict, records) -> None:
    run_stages(plan_run(parse_config(config)), records)


def split_to_csv(rows, path: Path, columns: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["smiles", *columns])
        for record in rows:
            writer.writerow([record["smiles"], *(record[column] for column in columns)])


def chemprop_config(row: dict, preset: dict, seed: int, directory: Path, task: RowTask) -> dict:
    """chemprop v2 CLI arguments: its default D-MPNN and optimizer, our split, and our epoch budget or, for a row
    with `budget: defaults`, chemprop's own (50 epochs)."""
    if task.problem_type != "regression":
        raise ValueError(f"the chemprop row runs regression only, not {task.problem_type!r} ({task.dataset})")
    epochs = preset["training"].get("num_train_epochs")
    if row.get("budget") == "defaults":
        epochs = None
    elif epochs is None:
        raise ValueError("the chemprop row needs the preset's training.num_train_epochs (its budget rule)")
    return {
        "dataset": task.dataset,
        "label_columns": list(task.label_columns),
        "epochs": None if epochs is None else int(epochs),
        "pytorch_seed": seed,
        "output_dir": str(directory / "chemprop"),
    }


def chemprop_train_command(
    chemprop: str,
    paths,
    labels,
    output_dir,
    epochs: int | None = None,
    pytorch_seed: int | None = None,
    metrics=(),
    accelerator: str | None = None,
) -> list[str]:
    """`chemprop train` on our train/validation/test CSVs, in that order (three files: chemprop takes them as its
    split as they are); chemprop's defaults for everything not given (its default: 50 epochs). `accelerator` None
    runs on the CPU unless this process sees CUDA."""
    command = [
        chemprop,
        "train",
        "--data-path",
        *map(str, paths),
        "--smiles-columns",
        "smiles",
        "--target-columns",
        *labels,
        "--task-type",
        "regression",
    ]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    if pytorch_seed is not None:
        command += ["--pytorch-seed", str(pytorch_seed)]
    command += ["--num-workers", "0"]
    if metrics:
        command += ["--metrics", *metrics]
    command += ["--output-dir", str(output_dir)]
    if accelerator is None:
        accelerator = "auto" if torch.cuda.is_available() else "cpu"
    if accelerator != "auto":
        command += ["--accelerator", accelerator, "--devices", "1"]
    return command


def score_chemprop_predictions(predictions_file: Path, test_records, labels) -> dict:
    """Per-label MAE/RMSE (original units) of a chemprop predictions CSV whose rows follow `test_records`."""
    with open(predictions_file, newline="") as handle:
        predictions = [[float(row[label]) for label in labels] for row in csv.DictReader(handle)]
    if len(predictions) != len(test_records):
        raise RuntimeError(f"{predictions_file}: {len(predictions)} predictions for {len(test_records)} test molecules")
    targets = [[record[label] for label in labels] for record in test_records]
    return per_label_metrics(np.array(predictions), np.array(targets, dtype=float), labels)


def run_chemprop(chemprop: str, config: dict, directory: Path, records) -> None:
    """Train chemprop's default model with its CLI on our train/validation/test split, score its test predictions.

    chemprop tests the checkpoint with the best validation loss (its default); the MAE is computed here, on the
    original units, from its test_predictions.csv, in the order of our test split.
    """
    labels = config["label_columns"]
    paths = [directory / f"{split}.csv" for split in ("train", "validation", "test")]
    for split, path in zip(("train", "validation", "test"), paths):
        split_to_csv(records[split], path, labels)
    command = chemprop_train_command(
        chemprop,
        paths,
        labels,
        config["output_dir"],
        epochs=config["epochs"],
        pytorch_seed=config["pytorch_seed"],
        metrics=("mae", "rmse"),
    )
    with open(directory / "chemprop.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"chemprop train failed (exit {result.returncode}); see {directory / 'chemprop.log'}")
    predictions_file = Path(config["output_dir"]) / "model_0" / "test_predictions.csv"
    metrics = score_chemprop_predictions(predictions_file, records["test"], labels)
    (directory / CHEMPROP_METRICS).write_text(json.dumps({"metrics": {"test": metrics}}, indent=2))


def row_record(row, seed, work_dir, task: RowTask, config: dict, wall_s: float) -> dict:
    """A row + seed's record, always rebuilt from the files the run left (metrics, trainer state)."""
    evaluated = is_evaluated(row)
    metrics = saved_test_metrics(row_dir(work_dir, row, seed)) if evaluated else None
    chemprop = row["kind"] == "chemprop"
    return {
        "row": row["name"],
        "seed": seed,
        "evaluated": evaluated,
        "metric": task.metric if evaluated else None,
        "test_value": metrics[task.metric] if metrics else None,
        "test_metrics": metrics,
        # Wall time of all sessions that worked on this row + seed (a resumed run adds to the earlier ones).
        "wall_s": wall_s,
        "config": config,
        "learning_curve": {} if chemprop else learning_curve(model_dir(work_dir, row, seed), task.metric),
    }


def finished_row(row, preset, seed, work_dir) -> dict | None:
    """The record of a row + seed that finished earlier, or None."""
    directory = row_dir(work_dir, row, seed)
    record_file = directory / ROW_RECORD
    if not record_file.is_file() or (is_evaluated(row) and saved_test_metrics(directory) is None):
        return None
    previous = json.loads(record_file.read_text())
    record = row_record(row, seed, work_dir, row_task(row, preset), previous["config"], previous["wall_s"])
    return {**record, "skipped": True}


def training_order(rows: list[dict]) -> list[dict]:
    """`rows` with each row that trains from another row's model (`teacher`, `init`) right after that row: a
    teacher's model is needed for the shortest stretch, so a session that ends between rows leaves the fewest rows
    that make a new clone train it again."""
    ordered = []

    def add(row):
        if row not in ordered:
            ordered.append(row)
            for consumer in rows:
                if row["name"] in (consumer.get("teacher"), consumer.get("init")):
                    add(consumer)

    for row in rows:
        if not row.get("teacher") and not row.get("init"):
            add(row)
    return ordered


def ledger_runs(report_file: Path) -> dict[tuple[str, int], dict]:
    """The row + seed records of a results JSON written earlier (on this machine or another), by (row, seed)."""
    if not report_file.is_file():
        return {}
    return {(run["row"], run["seed"]): run for run in json.loads(report_file.read_text()).get("runs", [])}


def restorable_runs(jobs, ledger: dict, preset: dict, work_dir: Path, rows_by_name: dict) -> dict:
    """The ledger records that may stand for row + seeds without a run here: all of them but the rows whose model a
    row still to train needs (its `teacher` or `init`) and that this machine does not have."""
    restorable = dict(ledger)
    dropped = True
    while dropped:  # a dropped row trains, so the rows it needs may have to train too
        dropped = False
        for seed, row in jobs:
            if (row["name"], seed) in restorable or finished_row(row, preset, seed, work_dir) is not None:
                continue
            for needed in (row.get("teacher"), row.get("init")):
                key = (needed, seed)
                if key in restorable and not training_finished(model_dir(work_dir, rows_by_name[needed], seed)):
                    del restorable[key]
                    dropped = True
    return restorable


def check_downstream_data(jobs) -> None:
    """Stop before any training when a downstream dataset of a row still to train is not installed (its install hint),
    not hours later when a D&D chain reaches its first fine-tuning."""
    for name in dict.fromkeys(row["dataset"] for _, row in jobs if "dataset" in row):
        try:
            downstream_files(name)
        except (ImportError, FileNotFoundError) as error:
            raise SystemExit(f"distillation_qm9: {error}") from None


@contextlib.contextmanager
def wall_clock(directory: Path, interval_s: float = 30.0):
    """Yields a function giving the seconds spent on this row + seed in every session so far. The running total is
    saved every `interval_s` seconds and on the way out, so a run killed at a session's end keeps (all but the last
    interval of) the time it spent, and the session that resumes it adds to that."""
    file = directory / WALL_FILE
    earlier = json.loads(file.read_text())["wall_s"] if file.is_file() else 0.0
    start = time.perf_counter()

    def total() -> float:
        return earlier + time.perf_counter() - start

    def save() -> None:
        atomic_write_text(file, json.dumps({"wall_s": total()}))

    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(interval_s):
            save()

    thread = threading.Thread(target=heartbeat, name="wall-clock", daemon=True)
    thread.start()
    try:
        yield total
    finally:
        stop.set()
        thread.join()
        save()


def run_row(row, preset, parameters, seed, work_dir, rows_by_name, records_for, chemprop=None) -> dict | None:
    """Train (or resume) and evaluate one row + seed; returns its record (also saved beside the run).

    Returns None for a chemprop row when no chemprop executable was given.
    """
    directory = row_dir(work_dir, row, seed)
    record_file = directory / ROW_RECORD
    task = row_task(row, preset)
    finished = finished_row(row, preset, seed, work_dir)
    if finished is not None:
        return finished
    if row["kind"] == "chemprop" and chemprop is None:
        return None
    records = records_for(row, task)
    directory.mkdir(parents=True, exist_ok=True)
    with wall_clock(directory) as wall:
        if row["kind"] == "chemprop":
            config = chemprop_config(row, preset, seed, directory, task)
            (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            run_chemprop(chemprop, config, directory, records)
        else:
            config = run_config(row, preset, parameters, seed, work_dir, rows_by_name)
            (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            if config["stages"]:
                run_distill_py(config, records)
    record = row_record(row, seed, work_dir, task, config, wall())
    record_file.write_text(json.dumps(record, indent=2))
    return record


# ---------------------------------------------------------------------------------------------- reporting


def machine() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "git_commit": commit,
    }


def summarize(rows: list[dict], records: list[dict]) -> dict:
    """Per row: the test metric's mean and sample std (ddof=1) over its seeds, with the per-seed values."""
    summary = {}
    for row in rows:
        mine = sorted((r for r in records if r["row"] == row["name"]), key=lambda r: r["seed"])
        values = np.array([r["test_value"] for r in mine if r["test_value"] is not None], dtype=float)
        summary[row["name"]] = {
            "label": row["label"],
            "tables": row["tables"],
            "kind": row["kind"],
            "base": row.get("base", row["name"]),
            "dataset": row.get("dataset"),
            "metric": mine[0]["metric"] if mine else None,
            "seeds": [r["seed"] for r in mine],
            "test_values": values.tolist(),
            "test_mean": float(values.mean()) if len(values) else None,
            "test_std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "wall_s_mean": float(np.mean([r["wall_s"] for r in mine])) if mine else None,
        }
    return summary


def reference_rows(target: dict) -> list[str]:
    """A target's reference rows: one name, or a list whose best (lowest-MAE) row is the reference."""
    reference = target.get("reference")
    return list(reference) if isinstance(reference, list) else [reference] if reference else []


def per_seed(entry: dict | None) -> dict[int, float]:
    """A summary row's test values by seed (rows without a test metric have none)."""
    if not entry or not entry.get("test_values"):
        return {}
    return dict(zip(entry["seeds"], entry["test_values"], strict=True))


def check_targets(summary: dict, targets=TARGETS) -> list[dict]:
    """`targets` on seed means of `summary`, each over the seeds that all of its rows share (while a sweep is under
    way, rows have different seeds done); a target whose rows share no seed is reported as not measured.

    A list of references (e.g. every 2D model trained alone) is compared by its best member. `best_distilled_ratio`
    compares the best QM9 distilled row, among all of them, with the reference."""
    checks = []
    for target in targets:
        if target["check"] == "best_distilled_ratio":
            rows = [
                name
                for name, entry in summary.items()
                if entry["kind"] == "distill" and entry["dataset"] is None and per_seed(entry)
            ]
        else:
            rows = [target["row"]]
        involved = [*rows, *reference_rows(target), *([target["teacher"]] if target.get("teacher") else [])]
        values = {name: per_seed(summary.get(name)) for name in involved}
        seeds = sorted(set.intersection(*(set(v) for v in values.values()))) if rows and values else []
        means = {name: float(np.mean([v[seed] for seed in seeds])) for name, v in values.items()} if seeds else {}
        row_name, reference_name, value, seeds_better = (rows[0] if len(rows) == 1 else None), None, None, None
        if means:
            reference_name = min(reference_rows(target), key=means.get)
            row_name = min(rows, key=means.get)
            row, reference = means[row_name], means[reference_name]
            # A gain on the means can be one lucky seed: how many of the seeds the row is better on by itself.
            seeds_better = sum(values[row_name][seed] < values[reference_name][seed] for seed in seeds)
            if target["check"] == "improvement":
                value = 1 - row / reference
            elif target["check"] == "gap_closed":
                value = (reference - row) / (reference - means[target["teacher"]])
            else:
                value = row / reference
        met = (
            None
            if value is None
            else (
                value < target["threshold"]
                if target["check"] == "best_distilled_ratio"
                else value >= target["threshold"]
            )
        )
        picked = {"reference": reference_name} if reference_name and len(reference_rows(target)) > 1 else {}
        checks.append(
            {
                **target,
                **picked,
                "row": row_name,
                "seeds": seeds,
                "seeds_better": seeds_better,
                "value": value,
                "met": met,
            }
        )
    return checks


def targets_table(checks: list[dict]) -> list[str]:
    lines = [
        "| Target | rows | seeds | row better on | measured | threshold | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for check in checks:
        reference = check["reference"]
        if isinstance(reference, list):  # not all measured yet: no best one
            reference = "best of " + ", ".join(reference)
        rows = " vs ".join(f"`{name}`" for name in (check["row"], reference, check.get("teacher")) if name)
        if check["check"] == "best_distilled_ratio":
            measured = "not measured" if check["value"] is None else f"MAE ratio {check['value']:.3f}"
            threshold = f"< {check['threshold']:.2f}"
        else:
            measured = "not measured" if check["value"] is None else f"{check['value']:.1%}"
            threshold = f">= {check['threshold']:.0%}"
        met = {True: "yes", False: "no", None: "-"}[check["met"]]
        seeds = ", ".join(map(str, check["seeds"])) or "-"
        better = "-" if check["seeds_better"] is None else f"{check['seeds_better']} of {len(check['seeds'])} seeds"
        lines.append(
            f"| {check['name']} ({check['check']}) | {rows} | {seeds} | {better} | {measured} | {threshold} | {met} |"
        )
    return lines


def format_value(entry: dict, pretrained: str = "pretraining") -> str:
    if not entry["seeds"]:
        return "not run"
    if entry["test_mean"] is None:
        return pretrained
    if entry["test_std"] is None:
        return f"{entry['test_mean']:.4f}"
    return f"{entry['test_mean']:.4f} ± {entry['test_std']:.4f}"


def format_wall(entry: dict) -> str:
    return f"{entry['wall_s_mean'] / 60:.1f}" if entry["wall_s_mean"] is not None else "-"


def method_table(members: list[tuple[str, dict]]) -> list[str]:
    """One line per row: test metric mean ± std, per-seed values, wall time."""
    lines = ["| Method | test MAE (eV) | per seed | wall (min / seed) |", "|---|---|---|---|"]
    for name, entry in members:
        values = ", ".join(f"s{seed} {value:.4f}" for seed, value in per_seed(entry).items()) or "-"
        value = format_value(entry, "pretraining (no test metric)")
        lines.append(f"| {entry['label']} (`{name}`) | {value} | {values} | {format_wall(entry)} |")
    return lines


def dataset_table(members: list[tuple[str, dict]]) -> list[str]:
    """Methods down, datasets across (rows expanded per dataset share a base name); pretraining rows first."""
    datasets = list(dict.fromkeys(entry["dataset"] for _, entry in members if entry["dataset"]))
    columns = " | ".join(f"{name} {metric_title(name)}" for name in datasets)
    lines = [f"| Method | {columns} | wall (min / seed) |", "|---|" + "---|" * (len(datasets) + 1)]
    for name, entry in members:
        if entry["dataset"] is None:
            lines.append(
                f"| {entry['label']} (`{name}`) | {' | '.join('-' for _ in datasets)} | {format_wall(entry)} |"
            )
    bases = list(dict.fromkeys(entry["base"] for _, entry in members if entry["dataset"]))
    for base in bases:
        cells = {entry["dataset"]: entry for _, entry in members if entry["base"] == base and entry["dataset"]}
        label = next(iter(cells.values()))["label"]
        walls = [cell["wall_s_mean"] for cell in cells.values() if cell["wall_s_mean"] is not None]
        wall = f"{sum(walls) / 60:.1f}" if walls else "-"
        values = " | ".join(format_value(cells[d]) if d in cells else "not run" for d in datasets)
        lines.append(f"| {label} (`{base}`) | {values} | {wall} |")
    return lines


def metric_title(dataset: str) -> str:
    """The column title of a downstream dataset: its task's metric (RowTask.metric), whether or not a row ran."""
    spec = DOWNSTREAM_DATASETS[dataset]
    return "ROC-AUC" if spec.task == "classification" else f"MAE ({spec.unit})"


def teacher_budget(preset: dict) -> str:
    """The teacher and denoiser rows' budget when the preset gives them their own (`teacher_training`)."""
    training = preset.get("teacher_training", {})
    for key, unit in (("num_train_epochs", "epochs"), ("max_steps", "steps")):
        if key in training:
            return f", the 3D teacher and denoiser rows {training[key]} {unit}"
    return ""


def markdown(
    preset: dict,
    summary: dict,
    split_sizes: dict,
    seeds: list[int],
    info: dict,
    parameters: dict,
    targets=TARGETS,
    discussion: str | None = None,
) -> str:
    """The report's tables; `discussion` (the rows file's, markdown) follows the targets."""
    budget = preset["training"].get("num_train_epochs", preset["training"].get("max_steps"))
    unit = "epochs" if "num_train_epochs" in preset["training"] else "steps"
    lines = [
        f"# Distillation on QM9 HOMO-LUMO gap: preset `{Path(preset['path']).stem}`",
        "",
        f"{preset.get('description', '')}. Test MAE in eV, mean ± sample std over seeds {seeds} "
        f"(training seeds; one fixed split, seed {preset['data'].get('split_seed', 0)}: "
        + ", ".join(f"{name} {count}" for name, count in split_sizes.items())
        + f" molecules of {preset['data']['source']}). Every student has the same training budget "
        f"({budget} {unit}){teacher_budget(preset)}; chemprop rows marked `budget: defaults` train at chemprop's own "
        "defaults; only the teacher sees DFT coordinates.",
        "",
        f"Machine: {info['processor']}, {info['cpu_count']} CPUs, torch {info['torch']}"
        + (f", {info['cuda_device']}" if info["cuda_device"] else "")
        + f"; commit {info['git_commit']}. Command: `{info['command']}`.",
        "",
        "Parameters: " + ", ".join(f"{k} = {v}" for k, v in parameters.items()) + ".",
    ]
    lines += [
        "",
        "## Targets",
        "",
        (
            "On the seed means over the seeds that all of a target's rows have finished: improvement = 1 - row / "
            "reference; gap closed = (reference - row) / (reference - teacher); chemprop: MAE ratio of the best QM9 "
            "distilled row. Row better on: the seeds on which the row's own test MAE is below the reference's."
        ),
        "",
    ]
    lines += targets_table(check_targets(summary, targets))
    if discussion:
        lines += ["", "### Reading the targets", "", discussion.strip()]
    for table, (title, caption) in TABLES.items():
        members = [(name, entry) for name, entry in summary.items() if table in entry["tables"]]
        if not members:
            continue
        lines += ["", f"## {title}", "", caption, ""]
        lines += dataset_table(members) if any(entry["dataset"] for _, entry in members) else method_table(members)
        lines += ["", f"Learning curves: `{preset['results_name']}_{table}.png`."]
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, title: str, rows: list[dict], records: list[dict]) -> None:
    """Validation metric and distillation loss per epoch, seed mean, one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, row in enumerate(rows):  # one colour per row in both panels
        curves = [r["learning_curve"] for r in records if r["row"] == row["name"] and r.get("learning_curve")]
        for axis, key in ((left, "validation_metric"), (right, "train_distillation_loss")):
            by_epoch = {}
            for curve in curves:
                for epoch, value in zip(curve["epoch"], curve[key]):
                    if value is not None:
                        by_epoch.setdefault(epoch, []).append(value)
            if by_epoch:
                epochs = sorted(by_epoch)
                label = row["label"] + (f" ({row['dataset']})" if row.get("dataset") else "")
                axis.plot(
                    epochs, [np.mean(by_epoch[e]) for e in epochs], marker="o", color=f"C{index % 10}", label=label
                )
    left.set(xlabel="epoch", ylabel="validation MAE (eV) / ROC-AUC", title="task")
    right.set(xlabel="epoch", ylabel="sum of distillation components (unweighted)", title="distillation loss")
    for axis in (left, right):
        if axis.lines:
            axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------- main


@dataclass(frozen=True)
class ReportContext:
    """What a report says besides the records: the preset, its rows and targets, the split, the command."""

    preset: dict
    preset_name: str
    rows: list
    all_rows: list
    targets: list
    parameters: dict
    split_sizes: dict
    rows_file: Path
    argv: list | None


def write_report(results_dir: Path, context: ReportContext, results: list[dict]) -> dict:
    """Write the JSON, the tables and the learning curves of `results` and of the ledger's other row + seeds.

    The JSON on disk is read again just before it is replaced, under a lock, so that another process training other
    seeds into the same results keeps its rows."""
    results_dir.mkdir(parents=True, exist_ok=True)
    report_file = results_dir / f"{context.preset['results_name']}.json"
    with FileLock(f"{report_file}.lock"):
        return merge_and_write_report(report_file, context, results)


def merge_and_write_report(report_file: Path, context: ReportContext, results: list[dict]) -> dict:
    results_dir, name = report_file.parent, report_file.stem
    mine = {(r["row"], r["seed"]) for r in results}
    order = {row["name"]: index for index, row in enumerate(context.all_rows)}
    others = [r for key, r in ledger_runs(report_file).items() if key not in mine and r["row"] in order]
    runs = sorted([*others, *results], key=lambda r: (r["seed"], order[r["row"]]))
    named = {r["row"] for r in runs} | {row["name"] for row in context.rows}
    rows = [row for row in context.all_rows if row["name"] in named]
    seeds = sorted({r["seed"] for r in runs})
    summary = summarize(rows, runs)
    argv = context.argv if context.argv is not None else sys.argv[1:]
    info = {**machine(), "command": " ".join([Path(sys.argv[0]).name, *argv])}
    rows_file = context.rows_file
    report = {
        "preset": context.preset_name,
        "preset_config": {k: v for k, v in context.preset.items() if k not in ("path", "rows_file")},
        "parameters": context.parameters,
        "split_sizes": context.split_sizes,
        "seeds": seeds,
        "machine": info,
        "summary": summary,
        "rows_file": str(rows_file.relative_to(ROOT) if rows_file.is_relative_to(ROOT) else rows_file),
        "targets": check_targets(summary, context.targets),
        "runs": [{k: v for k, v in r.items() if k != "skipped"} for r in runs],
    }
    atomic_write_text(report_file, json.dumps(report, indent=2))
    tables = markdown(
        context.preset,
        summary,
        context.split_sizes,
        seeds,
        info,
        context.parameters,
        context.targets,
        read_yaml(context.rows_file).get("discussion"),
    )
    atomic_write_text(results_dir / f"{name}.md", tables)
    for table, (title, _) in TABLES.items():
        members = [row for row in rows if table in row["tables"]]
        if members:
            plot_curves(results_dir / f"{name}_{table}.png", title, members, runs)
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu", help="smoke, cpu, paper, or a preset YAML path")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--rows", nargs="+", help="only these rows (and the rows they distil or start from)")
    parser.add_argument("--work-dir", type=Path, help="training runs (default runs/distillation_qm9/{preset})")
    parser.add_argument(
        "--results-dir", type=Path, help="where the JSON/MD/PNGs go (default benchmarks/results; smoke: --work-dir)"
    )
    parser.add_argument("--rows-file", type=Path, help="row definitions (YAML; default the preset's `rows`)")
    parser.add_argument(
        "--chemprop",
        default=os.environ.get("MOLFORMER_KD_CHEMPROP"),
        help="chemprop v2 executable of a separate environment (default $MOLFORMER_KD_CHEMPROP); "
        "without it the chemprop row is left out",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="train nothing: write the tables of the row + seeds done so far"
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    options = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    transformers_logging.set_verbosity_warning()
    preset = load_preset(options.preset)
    preset_name = Path(preset["path"]).stem
    work_dir = options.work_dir or ROOT / "runs" / "distillation_qm9" / preset_name
    results_dir = options.results_dir or (work_dir if preset_name == "smoke" else ROOT / "benchmarks" / "results")
    rows_file = options.rows_file or Path(preset["rows_file"])
    all_rows = load_rows(rows_file, preset["models"])
    targets = load_targets(rows_file, all_rows)
    rows = select_rows(all_rows, options.rows)
    rows_by_name = {row["name"]: row for row in all_rows}

    records = load_split(preset["data"])
    parameters = preset_parameters(preset, records)
    split_sizes = {name: len(split) for name, split in records.items()}
    logger.info("split %s; rows %s; seeds %s", split_sizes, [r["name"] for r in rows], options.seeds)

    records_for = RecordSource(records)
    jobs = [(seed, row) for seed in options.seeds for row in training_order(rows)]
    report_file = results_dir / f"{preset['results_name']}.json"
    restorable = restorable_runs(jobs, ledger_runs(report_file), preset, work_dir, rows_by_name)
    context = ReportContext(preset, preset_name, rows, all_rows, targets, parameters, split_sizes, rows_file, argv)
    if not options.report_only:
        check_downstream_data(
            [
                (seed, row)
                for seed, row in jobs
                if (row["name"], seed) not in restorable and finished_row(row, preset, seed, work_dir) is None
            ]
        )
    results, started, trained = [], time.perf_counter(), 0
    for index, (seed, row) in enumerate(jobs, start=1):
        record = finished_row(row, preset, seed, work_dir)
        if record is None and (row["name"], seed) in restorable:
            record = {**restorable[(row["name"], seed)], "skipped": True}
        if record is None and not options.report_only:
            print(f"[{index}/{len(jobs)}] seed {seed} {row['name']} ({row['label']}) ...", flush=True)
            record = run_row(row, preset, parameters, seed, work_dir, rows_by_name, records_for, options.chemprop)
            if record is None:
                print(f"[{index}/{len(jobs)}] {row['name']}: left out (no --chemprop executable)", flush=True)
                continue
            trained += 1
            results.append(record)
            write_report(results_dir, context, results)  # the ledger after every row + seed
        elif record is not None:
            results.append(record)
        if record is None or options.report_only:
            continue
        elapsed = time.perf_counter() - started
        eta = f"{elapsed / trained * (len(jobs) - index) / 60:.1f} min" if trained else "-"
        status = "done earlier (skipped)" if record.get("skipped") else f"{record['wall_s']:.0f} s"
        score = f"test {record['metric']} {record['test_value']:.4f}" if record["evaluated"] else "pretrained"
        print(
            f"[{index}/{len(jobs)}] seed {seed} {row['name']}: {score}, {status}; "
            f"elapsed {elapsed / 60:.1f} min, ETA {eta}",
            flush=True,
        )
    report = write_report(results_dir, context, results)
    print(f"wrote {report_file}, .md and learning curves", flush=True)
    return report


if __name__ == "__main__":
    main()
