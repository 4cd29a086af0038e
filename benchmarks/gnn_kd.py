"""KD-GNN Table 1 on QM9/xTB: PaiNN-big -> PaiNN-small and PaiNN-big -> SchNet with every KD objective.

For each teacher/student config it trains the teacher (or loads a trained one, `--teacher`), then, for every seed,
the student alone and the student with each objective of SWEEP (`energy_forces` + lambda * objective), all through
`DistillationTrainer`, and reports on the test split: energy MAE (meV), force MAE (meV/A), force cosine, EFwT (%),
the share of the student-teacher gap each objective closes, the inference throughput (samples/s) of every model and
each student's speed-up over the teacher.

    .venv/bin/python benchmarks/gnn_kd.py                       # the committed CPU run (results/gnn_kd.{json,md})
    .venv/bin/python benchmarks/gnn_kd.py --student-steps 100 --teacher-steps 100 --objectives n2n   # smoke run

At scale (issue #19: 20k molecules, a teacher trained by distill.py, 3 seeds, checkpoints picked on validation):

    nohup nice -n 5 .venv/bin/python benchmarks/gnn_kd.py --data runs/qm9_xtb_20k.npz \
        --teacher benchmarks/models/qm9_xtb_20k_teacher --seeds 0 1 2 --work-dir runs/potentials/qm9_xtb_20k/gnn_kd \
        --configs configs/potentials/qm9_xtb_20k_painn_small.yaml configs/potentials/qm9_xtb_20k_schnet.yaml &

Rows. Every model trained or tested is a row (pair, model, seed) with its own folder in the work dir, named by a
hash of everything its result depends on (model config, teacher weights for a distilled row, data file, objective and
weight, seed, training arguments, evaluated split). A finished row holds `row.json` and is skipped when the command is
run again; an unfinished one resumes from its last complete checkpoint (`stages.base.train_and_export`: configs that
save checkpoints). The report is rebuilt from the finished rows of the plan each time (`--report-only`: nothing
else), with seed means +- standard deviation and how many of the planned rows are finished. Rows run seed by seed, so
an interrupted sweep has whole seeds of the table first. The report JSON is rewritten after every row and is the
ledger that outlives the machine: on a new clone a row it holds (same folder name, i.e. same settings) is not trained
again, unless it is a trained teacher whose model a student still to train needs. Processes running side by side
(one per core, each with some of the configs) share the work dir but need their own `--output`, since each writes
the rows of its own plan; `--report-only` with every config then writes the whole report from the shared work dir.

The student alone does not depend on the teacher, so `--objectives "student alone"` trains only those rows and
runs while the teacher of `--teacher` is still training (no exported model yet): they are the same rows, with the
same ledger keys, as in the full sweep run later. Their speed-up over the teacher is timed when the teacher is there.

Validation pick. A config with `eval_strategy`, `save_strategy` and `load_best_model_at_end` evaluates the
validation split every `eval_steps` and exports the checkpoint with the lowest task loss (`eval_task_loss`,
a_E L_E + a_F L_F against the labels): the same criterion for every row, not each row's own KD-weighted total.

Teacher cache. A distilled row reads the frozen teacher's targets from `{work_dir}/teacher_cache` (written by the
first row that needs them, keyed by teacher weights, data and objective, and shared by the seeds) instead of running
the teacher on every batch (`teacher_cache.PointCloudTeacherCache`; losses equal the live teacher's). A row's
`train_seconds` does not include writing the cache.

Sizes and budgets come from the YAML configs (CPU-sized versions of the paper's models); --teacher-steps,
--student-steps, --epochs and --scale-width override them. For a seed s every student starts from the same
initialization (torch seed s + 1) and sees the batches in the same order (Trainer seed s), so objectives differ only
by their KD term; the default seed is the config's, which is what the committed toy run used.
"""

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import TrainerCallback, TrainingArguments

from molformer_kd.data.caching import file_sha256
from molformer_kd.data.metrics import gap_closed
from molformer_kd.data.xtb import QM9_XTB_SMALL, energy_statistics, load_qm9_xtb
from molformer_kd.distillation import gnn_objectives  # noqa: F401  (registers the objectives)
from molformer_kd.distillation.checkpoints import atomic_write_text
from molformer_kd.distillation.registry import build_objective
from molformer_kd.distillation.stages.base import Stage, train_and_export
from molformer_kd.distillation.tasks.energy_forces import (
    build_energy_model,
    evaluate_energy_forces,
    inference_throughput,
)
from molformer_kd.distillation.trainer import DistillationModel
from molformer_kd.modeling.auto import AutoModelForEnergyAndForces
from molformer_kd.tokenization.collators import PointCloudCollator

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("configs/gnn_kd_painn_big_to_painn_small.yaml", "configs/gnn_kd_painn_big_to_schnet.yaml")
# lambda per KD objective and student family. The paper's Table 6 (COLL: vanilla1 1, vanilla2 100, n2n 100,
# v2v 10^4) was tuned on OCP-normalized targets. Ours keep its ordering (v2v >> n2n ~ vanilla2 > vanilla1) and put
# lambda * L_KD at the end of training at roughly the task loss (~11 there). A first run with 10-50x smaller
# weights (vanilla2 1, n2n 10, e2n 10, v2v 100) left lambda * L_KD at 1-7% of the loss and closed only 6-11% of
# the energy gap (PaiNN-small): see benchmarks/results/gnn_kd.md.
SWEEP = {
    "molformer_painn": {"vanilla1": 1.0, "vanilla2": 50.0, "n2n": 100.0, "e2n": 100.0, "v2v": 1000.0},
    "molformer_schnet": {"vanilla1": 1.0, "vanilla2": 50.0, "n2n": 100.0, "e2n": 100.0},
}
ALONE = "student alone"
METRICS = ("energy_mae_meV", "force_mae_meV_per_A", "force_cos", "efwt_percent")
# What a row reports as seed mean +- standard deviation besides METRICS.
MEASURES = ("throughput_samples_per_s", "speedup_vs_teacher", "train_seconds", "global_step", "epochs")
TRAINING_KEYS = (
    "seed",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "max_grad_norm",
    "weight_decay",
    "max_steps",
    "num_train_epochs",
    "logging_steps",
    "eval_strategy",
    "eval_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "load_best_model_at_end",
    "metric_for_best_model",
    "greater_is_better",
    "torch_compile",
)
EVAL_BATCH_SIZE = 64
ROW_FILE = "row.json"


def read_config(path):
    with open(ROOT / path) as handle:
        return yaml.safe_load(handle)


def training_values(config, seed, max_steps=None, epochs=None, eval_steps=None):
    """The config's training settings for one row, with its seed, its budget (steps, or epochs when given) and how
    often it is validated and saved (a checkpoint at every validation, so that the best one can be exported)."""
    values = {key: config[key] for key in TRAINING_KEYS if key in config}
    values["seed"] = seed
    if epochs is not None:
        values["num_train_epochs"] = epochs
        values.pop("max_steps", None)
    elif max_steps is not None:
        values["max_steps"] = max_steps
    # One spelling per budget (steps win, as in the Trainer), so that `--epochs 3` and a config's `num_train_epochs: 3`
    # name the same rows.
    if values.get("max_steps", -1) > 0:
        values.pop("num_train_epochs", None)
    elif "num_train_epochs" in values:
        values["num_train_epochs"] = float(values["num_train_epochs"])
    if eval_steps is not None:
        values["eval_steps"] = values["save_steps"] = eval_steps
    return values


def training_arguments(values, output_dir, device):
    return TrainingArguments(
        output_dir=str(output_dir),
        use_cpu=device == "cpu",
        report_to="none",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        # A row killed mid-training continues from its last complete checkpoint (and the stage's training clock).
        resume_from_checkpoint="latest",
        **values,
    )


class TaskLossMetric(TrainerCallback):
    """Adds `eval_task_loss`, the sum of the `eval_task_*` components (a_E L_E + a_F L_F against the validation
    labels), to every evaluation's metrics before the Trainer compares them for `load_best_model_at_end`: distilled
    and undistilled students keep their checkpoint by this same number, not by their own KD-weighted total."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics["eval_task_loss"] = sum(value for key, value in metrics.items() if key.startswith("eval_task_"))


class RowTraining(Stage):
    """The training of one row in its folder, for `train_and_export` (resume, validation pick, atomic export)."""

    name = "row"

    def __init__(self, output_dir, training_args):
        super().__init__(str(output_dir))
        self.training_args = training_args


def scaled(spec, factor):
    spec = dict(spec)
    for key in ("hidden_size", "num_filters"):
        if key in spec and factor != 1.0:
            spec[key] = max(2, round(spec[key] * factor / 2) * 2)
    return spec


def describe(spec):
    keys = ("model_type", "hidden_size", "num_filters", "num_layers", "num_rbf", "cutoff", "direct_forces")
    return {key: spec[key] for key in keys if key in spec}


def fingerprint(settings):
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def checkpoint_fingerprint(directory):
    """Hash of a trained model's config and weights: rows distilled from it are redone if it changes."""
    digest = hashlib.sha256()
    for path in [Path(directory) / "config.json", *sorted(Path(directory).glob("*.safetensors"))]:
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()[:16]


@dataclass
class Row:
    """One model of the sweep: `kind` is "trained teacher", "loaded teacher" (tested only) or "student"; `settings`
    is what its result depends on, hashed into `folder`. `spec` is the config of a model trained here, `checkpoint`
    the folder of a loaded one."""

    kind: str
    model: str
    seed: int | None
    settings: dict
    folder: Path
    spec: dict | None = None
    checkpoint: Path | None = None
    teacher: "Row | None" = None
    kd_weight: float | None = None
    ledger_entry: dict | None = None  # the row's result in a report written earlier, maybe on another machine

    @property
    def result_path(self):
        return self.folder / ROW_FILE

    @property
    def ledger_key(self):
        """The folder's name and its parent's: settings-hashed, the same on every machine whatever the work dir."""
        return f"{self.folder.parent.name}/{self.folder.name}"

    def result(self):
        if self.result_path.is_file():
            return json.loads(self.result_path.read_text())["entry"]
        return self.ledger_entry

    @property
    def model_dir(self):
        """Where the row's model is loaded from: the given checkpoint, or the export in its folder."""
        return self.checkpoint or self.folder

    def config(self):
        """The model's config: its spec, or the checkpoint's config.json (empty while not trained yet)."""
        path = self.model_dir / "config.json"
        return self.spec or (json.loads(path.read_text()) if path.is_file() else {})


@dataclass
class Pair:
    config: str
    teacher: Row
    student_spec: dict
    rows: list = field(default_factory=list)

    def student_budget(self):
        training = self.rows[0].settings["training"]
        if training.get("max_steps", -1) > 0:
            return f"{training['max_steps']} steps"
        return f"{training.get('num_train_epochs')} epochs"


def ledger_entries(output) -> dict[str, dict]:
    """Row results of the report JSON at `output` (written earlier, on this machine or another), by ledger key."""
    path = Path(output).with_suffix(".json")
    if not path.is_file():
        return {}
    entries = {}
    for pair in json.loads(path.read_text()).get("pairs", []):
        for entry in [*pair.get("models", []), *pair.get("rows", [])]:
            if entry.get("folder"):
                folder = Path(entry["folder"])
                entries[f"{folder.parent.name}/{folder.name}"] = entry
    return entries


def attach_ledger(teachers, pairs, entries: dict) -> None:
    """Give every planned row its ledger entry, but not a trained teacher whose model is not here while one of its
    students still has to train (it trains again, with the same settings and seed)."""
    for row in teachers + [row for pair in pairs for row in pair.rows]:
        row.ledger_entry = entries.get(row.ledger_key)
    for teacher in teachers:
        students = [row for pair in pairs if pair.teacher is teacher for row in pair.rows]
        needed = any(row.result() is None for row in students)
        if teacher.kind == "trained teacher" and needed and not (teacher.model_dir / "config.json").is_file():
            teacher.ledger_entry = None


def plan(options):
    """Every row of the sweep (teachers first, then students seed by seed), with nothing trained or loaded."""
    work = Path(options.work_dir)
    data_key = file_sha256(options.data)
    teachers, pairs = {}, []
    for config_path in options.configs:
        config = read_config(config_path)
        student_spec = scaled(config["student_config"], options.scale_width)
        if options.teacher is not None and not (options.teacher / "config.json").is_file():
            # distill.py exports the teacher (best validation checkpoint) only when its stage has finished.
            if options.objectives != [ALONE]:
                raise SystemExit(
                    f"--teacher {options.teacher}: no exported model there (config.json); still training? "
                    f'Only `--objectives "{ALONE}"` runs without it.'
                )
            pending = work / "teachers" / "pending"
            teacher = Row("pending teacher", "teacher", None, {}, pending, checkpoint=options.teacher)
        elif options.teacher is not None:
            settings = {"weights": checkpoint_fingerprint(options.teacher), "data": data_key, "split": options.split}
            teacher = Row("loaded teacher", "teacher", None, settings, work, checkpoint=options.teacher)
        elif config.get("teacher_config"):
            teacher_steps = options.teacher_steps or config.get("stage_overrides", {}).get("teacher", {}).get(
                "max_steps", config.get("max_steps")
            )
            spec = scaled(config["teacher_config"], options.scale_width)
            settings = {
                "model_config": spec,
                "data": data_key,
                "split": options.split,
                "training": training_values(config, config["seed"], max_steps=teacher_steps),
            }
            teacher = Row("trained teacher", "teacher", config["seed"], settings, work, spec=spec)
        else:
            raise SystemExit(f"{config_path} has no teacher_config: give a trained teacher with --teacher DIR")
        key = None
        if teacher.kind != "pending teacher":
            key = fingerprint(teacher.settings)
            teacher.folder = work / "teachers" / f"teacher-{key}"
            teacher = teachers.setdefault(key, teacher)
        sweep = {ALONE: None}
        sweep.update(
            {
                name: weight
                for name, weight in SWEEP[student_spec["model_type"]].items()
                if options.objectives is None or name in options.objectives
            }
        )
        pair = Pair(config_path, teacher, student_spec)
        for seed in options.seeds or [config["seed"]]:
            for name, weight in sweep.items():
                settings = {
                    "model": name,
                    "kd_weight": weight,
                    "model_config": student_spec,
                    **({} if weight is None else {"teacher": key}),  # the student alone does not depend on the teacher
                    "data": data_key,
                    "split": options.split,
                    "training": training_values(
                        config, seed, options.student_steps, options.epochs, options.eval_steps
                    ),
                }
                folder = work / Path(config_path).stem / f"{name.replace(' ', '_')}-seed{seed}-{fingerprint(settings)}"
                pair.rows.append(
                    Row("student", name, seed, settings, folder, spec=student_spec, teacher=teacher, kd_weight=weight)
                )
        pairs.append(pair)
    teachers = list(teachers.values())
    attach_ledger(teachers, pairs, ledger_entries(options.output))
    return teachers, pairs


class Sweep:
    """Runs the unfinished rows of a plan; the data and the teachers are loaded when a row first needs them."""

    def __init__(self, options):
        self.options = options
        self.data = None
        self.teachers = {}

    def load_data(self):
        if self.data is None:
            self.data = load_qm9_xtb(self.options.data)
            self.statistics = energy_statistics(self.data["train"])
            test_set = self.data[self.options.split]
            self.throughput_rows = test_set.select(range(min(self.options.throughput_samples, len(test_set))))

    def teacher(self, row):
        if row.folder not in self.teachers:
            model = AutoModelForEnergyAndForces.from_pretrained(row.model_dir).to(self.options.device)
            self.teachers[row.folder] = model.eval()
        return self.teachers[row.folder]

    def run(self, row):
        if row.result() is not None:
            return
        self.load_data()
        entry = self.test(self.teacher(row), "teacher") if row.kind == "loaded teacher" else self.train(row)
        atomic_write_text(row.result_path, json.dumps({"settings": row.settings, "entry": entry}, indent=1))
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()}), flush=True)

    def train(self, row):
        device = self.options.device
        # Students of seed s start from torch seed s + 1, a trained teacher from its config seed (the toy run's).
        model = build_energy_model(row.spec, self.statistics, seed=row.seed + (row.kind == "student")).to(device)
        teacher = self.teacher(row.teacher) if row.kd_weight is not None else None
        objectives = {"energy_forces": build_objective("energy_forces", None, model.config)}
        weights = {"energy_forces": 1.0}
        if teacher is not None:
            objectives[row.model] = build_objective(row.model, teacher.config, model.config).to(device)
            weights[row.model] = row.kd_weight
        stage = RowTraining(row.folder, training_arguments(row.settings["training"], row.folder, device))
        trainer = train_and_export(
            stage,
            DistillationModel(model, objectives, weights),
            self.data,
            PointCloudCollator(paired=True),
            None,
            teacher=teacher,
            callbacks=[TaskLossMetric()],
            teacher_cache_dir=Path(self.options.work_dir) / "teacher_cache" if teacher is not None else None,
        )
        timed_against = row.teacher if row.teacher is not None and row.teacher.kind != "pending teacher" else None
        entry = self.test(model, row.model, self.teacher(timed_against) if timed_against is not None else None)
        logged = [log for log in trainer.state.log_history if "loss" in log]
        entry.update(
            kd_weight=row.kd_weight,
            train_seconds=stage.train_wall_s,
            global_step=trainer.state.global_step,
            epochs=trainer.state.epoch,
            best_checkpoint=stage.best_checkpoint,
            last_logged_train_loss={
                k: v for k, v in (logged[-1] if logged else {}).items() if k not in ("epoch", "step")
            },
        )
        return entry

    def test(self, model, name, teacher=None):
        model.to(self.options.device)
        entry = {"model": name, **evaluate_energy_forces(model, self.data[self.options.split], EVAL_BATCH_SIZE)}
        entry["throughput_samples_per_s"] = inference_throughput(model, self.throughput_rows, EVAL_BATCH_SIZE)
        if teacher is not None:
            # Timed right after the student on the same rows: the ratio holds on a machine whose load changes over
            # the hours of a sweep, the absolute numbers less so.
            entry["teacher_throughput_samples_per_s"] = inference_throughput(
                teacher, self.throughput_rows, EVAL_BATCH_SIZE
            )
            entry["speedup_vs_teacher"] = entry["throughput_samples_per_s"] / entry["teacher_throughput_samples_per_s"]
        entry["parameters"] = sum(p.numel() for p in model.parameters())
        entry["machine"] = machine(self.options.device)
        return entry


def machine(device):
    return {
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def rows_by_seed(pairs):
    """The student rows in running order: every pair and objective of the first seed, then of the next one."""
    seeds = sorted({row.seed for pair in pairs for row in pair.rows})
    return [row for seed in seeds for pair in pairs for row in pair.rows if row.seed == seed]


def summarize(entries):
    """Seed mean and standard deviation of every reported number of one model's finished rows."""
    summary = {key: entries[0].get(key) for key in ("model", "kd_weight", "parameters")}
    summary["seeds"] = len(entries)
    for name in METRICS + MEASURES:
        values = [entry[name] for entry in entries if entry.get(name) is not None]
        if values:
            summary[name] = statistics.fmean(values)
            summary[f"{name}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    return summary


def report(options, teachers, pairs):
    """The results of the finished rows of the plan (JSON-ready): per pair, the teacher, then every model's seed
    summary with the gap it closes (of the seed means) against the student alone."""
    rows = teachers + [row for pair in pairs for row in pair.rows]
    results = {
        "settings": dict(vars(options)),
        "rows_finished": sum(row.result() is not None for row in rows),
        "rows_planned": len(rows),
        "pairs": [],
    }
    for pair in pairs:
        teacher = pair.teacher.result()
        finished = {}
        for row in pair.rows:
            entry = row.result()
            if entry is not None:
                finished.setdefault(row.model, []).append({**entry, "seed": row.seed, "folder": str(row.folder)})
        summaries = [summarize(entries) for entries in finished.values()]
        alone = next((summary for summary in summaries if summary["model"] == ALONE), None)
        for summary in summaries:
            if summary["kd_weight"] is not None and alone is not None and teacher is not None:
                summary["gap_closed"] = {
                    metric: gap_closed(alone[metric], summary[metric], teacher[metric]) for metric in METRICS
                }
        results["pairs"].append(
            {
                "config": pair.config,
                "teacher": {**describe(pair.teacher.config()), "source": str(pair.teacher.model_dir)},
                "student": describe(pair.student_spec),
                "student_budget": pair.student_budget(),
                "rows_finished": sum(len(entries) for entries in finished.values()),
                "rows_planned": len(pair.rows),
                "models": ([{**teacher, "seeds": 1, "folder": str(pair.teacher.folder)}] if teacher is not None else [])
                + summaries,
                "rows": [entry for entries in finished.values() for entry in entries],
            }
        )
    return results


def percent(value):
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def cell(summary, metric, fmt):
    """Seed mean (+- standard deviation over seeds), with the gap it closes in brackets for distilled students."""
    if summary.get(metric) is None:
        return ""
    text = format(summary[metric], fmt)
    if summary.get(f"{metric}_sd") is not None:
        text += f" ± {format(summary[f'{metric}_sd'], fmt)}"
    gaps = summary.get("gap_closed", {})
    return f"{text} ({percent(gaps[metric])})" if metric in gaps else text


def markdown(results):
    settings = results["settings"]
    trained = [row for pair in results["pairs"] for row in pair["rows"]]
    hours = sum(row.get("train_seconds") or 0.0 for row in trained) / 3600
    lines = [
        "# KD for 3D GNNs (KD-GNN Table 1 layout) on QM9 conformations labelled with GFN2-xTB",
        "",
        f"Command: `{settings['command']}`.",
        "",
        (
            f"Rows finished / planned: {results['rows_finished']} / {results['rows_planned']} (teachers included); "
            f"student training summed over the finished rows: {hours:.2f} h on "
            f"{trained[0]['machine']['device'] if trained else settings['device']} "
            f"({settings['threads']} torch thread(s), cores shared with other jobs)."
        ),
        "",
        (
            f"Data: `{settings['data']}`, split by molecule 80/10/10, metrics on the {settings['split']} split; "
            f"throughput on its first {settings['throughput_samples']} conformations (batches of {EVAL_BATCH_SIZE}), "
            "speed-up = student / teacher throughput timed back to back. Cells: mean ± standard deviation over the "
            "seeds finished. Gap closed = (student - distilled) / (student - teacher), per metric, of the seed means. "
            "Models are CPU-sized versions of the paper's (see the configs): compare rows, not papers."
        ),
        "",
    ]
    for pair in results["pairs"]:
        lines += [
            f"## {pair['teacher'].get('model_type', 'teacher (not exported yet)')} {pair['teacher']} -> "
            f"{pair['student']['model_type']} {pair['student']}",
            "",
            (
                f"Config `{pair['config']}`; students {pair['student_budget']}; rows finished / planned: "
                f"{pair['rows_finished']} / {pair['rows_planned']}. Steps, epochs and training minutes are per row; "
                "with a validation pick the exported checkpoint is the row's `best_checkpoint` in the JSON."
            ),
            "",
            "| model | lambda | seeds | energy MAE meV | force MAE meV/A | force cos | EFwT % | throughput samples/s "
            "| speed-up | params | steps | epochs | train min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for summary in pair["models"]:
            weight = summary.get("kd_weight")
            minutes = {
                key.replace("train_seconds", "train_minutes"): None if value is None else value / 60
                for key, value in summary.items()
                if key.startswith("train_seconds")
            }
            lines.append(
                f"| {summary['model']} | {'' if weight is None else weight} | {summary['seeds']} | "
                f"{cell(summary, 'energy_mae_meV', '.1f')} | {cell(summary, 'force_mae_meV_per_A', '.1f')} | "
                f"{cell(summary, 'force_cos', '.3f')} | {cell(summary, 'efwt_percent', '.2f')} | "
                f"{cell(summary, 'throughput_samples_per_s', '.0f')} | {cell(summary, 'speedup_vs_teacher', '.2f')} | "
                f"{summary['parameters']} | {cell(summary, 'global_step', '.0f')} | {cell(summary, 'epochs', '.2f')} | "
                f"{cell(minutes, 'train_minutes', '.1f')} |"
            )
        lines.append("")
    return "\n".join(lines)


def parse_options(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument(
        "--objectives",
        nargs="+",
        default=None,
        choices=[ALONE, *sorted({name for weights in SWEEP.values() for name in weights})],
        help=f'subset of the SWEEP objectives; the student alone always runs (`--objectives "{ALONE}"`: only it)',
    )
    parser.add_argument("--data", type=Path, default=QM9_XTB_SMALL, help="QM9/xTB .npz (default: the shipped sample)")
    parser.add_argument("--teacher", type=Path, default=None, help="a trained teacher checkpoint instead of training")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="student seeds (default: the config's)")
    parser.add_argument("--teacher-steps", type=int, default=None)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--student-steps", type=int, default=None)
    budget.add_argument("--epochs", type=float, default=None, help="student epochs (instead of steps)")
    parser.add_argument("--eval-steps", type=int, default=None, help="validate and save students every K steps")
    parser.add_argument("--scale-width", type=float, default=1.0, help="multiply hidden sizes of every model")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--throughput-samples", type=int, default=2048, help="rows of the split timed per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work-dir", default="/tmp/molformer_kd_gnn_kd")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the finished rows")
    parser.add_argument(
        "--output",
        default=None,
        help="writes OUTPUT.json and OUTPUT.md (default: benchmarks/results/gnn_kd, or gnn_kd_<data name> for --data)",
    )
    options = parser.parse_args(argv)
    options.command = "python benchmarks/gnn_kd.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if options.output is None:
        name = "gnn_kd" if options.data == QM9_XTB_SMALL else f"gnn_kd_{options.data.stem}"
        options.output = str(ROOT / "benchmarks" / "results" / name)
    return options


def main():
    options = parse_options()
    torch.set_num_threads(options.threads)
    teachers, pairs = plan(options)
    if not options.report_only:
        sweep = Sweep(options)
        for row in teachers + rows_by_seed(pairs):
            if row.result() is None:
                sweep.run(row)
                write_report(options, teachers, pairs)  # the ledger after every row
    print(markdown(write_report(options, teachers, pairs)))


def write_report(options, teachers, pairs) -> dict:
    results = report(options, teachers, pairs)
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output.with_suffix(".json"), json.dumps(results, indent=2, default=str))
    atomic_write_text(output.with_suffix(".md"), markdown(results))
    return results


if __name__ == "__main__":
    main()
