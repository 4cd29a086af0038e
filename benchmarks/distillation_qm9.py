"""Distillation benchmark on QM9 HOMO-LUMO gap (eV): CCMD Tables III/IV and ST-KD Table 4 shapes, mean ± std.

One command runs every row of benchmarks/configs/distillation_qm9/rows.yaml for every seed, with the model sizes,
data split and training budget of a preset (benchmarks/configs/distillation_qm9/{smoke,cpu,paper}.yaml):

    .venv/bin/python benchmarks/distillation_qm9.py --preset cpu --seeds 0 1 2
    .venv/bin/python benchmarks/distillation_qm9.py --preset paper --seeds 0 1 2 --rows gin gin_lm_la_inv_n
    .venv/bin/python benchmarks/distillation_qm9.py --preset smoke --seeds 0 --rows graphormer_2d   # seconds

Data: one fixed-seed random split (the preset's `data.split_seed` and `data.sizes`, e.g. 20,000 / 2,000 / 5,000
of full QM9 from qm9pack); the seeds of `--seeds` are training seeds. Teacher and students see the same
heavy-atom tokens in SMILES order; only the teacher's featurizer reads the DFT coordinates (`pos`).

Each row + seed is a `distill.py` run (the same argument classes, `plan_run` and `run_stage`) in
`{work_dir}/seed{seed}/{row}`; rows that distil from a teacher row run after it, and the teacher is trained once
per seed. Resumable: a row + seed whose `evaluate/metrics.json` exists is skipped; a training stage that finished
is not retrained; an interrupted one resumes from its last checkpoint. Writes `{results_name}.json` (every number,
the resolved config of every run, seeds, wall times, machine), `{results_name}.md` (the tables) and one
learning-curve PNG per table (validation MAE and distillation loss per epoch, from the Trainer's log history).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from datasets import DatasetDict
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging as transformers_logging

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # distill.py (its config parser) lives at the repository root

from distill import parse_config
from molformer_kd.data import load_embedded_qm9, load_qm9
from molformer_kd.distillation.stages import METRICS_FILE, plan_run, run_stage

CONFIG_DIR = ROOT / "benchmarks" / "configs" / "distillation_qm9"
ROWS_FILE = CONFIG_DIR / "rows.yaml"
ROW_KINDS = {"teacher": "teacher", "baseline": "finetune", "distill": "distill"}  # kind -> its training stage
ROW_RECORD = "benchmark_row.json"
# Table shapes of the papers: (title, caption).
TABLES = {
    "ccmd_graphormer": (
        "CCMD Table III shape: 3D Graphormer teacher -> 2D Graphormer student",
        ("L_m: global-token L1 (summed over the distilled layers); L_a: atom-token L1 sum; coordinating weight "
        "1/N^2 per molecule; W_search: a constant in its place; joint: one L1 averaged over all tokens, weight W."),
    ),
    "ccmd_gin": (
        "CCMD Table IV shape: 3D Graphormer teacher -> GIN student (virtual node = global token)",
        "All layers distilled; the GIN's coordinating weight is 1/N (CCMD), 1/N^2 is the transformer's.",
    ),
    "stkd": (
        "ST-KD Table 4 shape: graph teacher -> SMILES Transformer (teacher: the 3D Graphormer row above)",
        ("Feature KD: MSE of the global tokens of paired layers (weight 0.5); attention KD: MSE of the student's "
        "biased-layer attention biases (head-mixed, softmaxed) against the teacher's attention (weight 2); both "
        "after an initial stage without the task loss."),
    ),
}

logger = logging.getLogger("distillation_qm9")


# ---------------------------------------------------------------------------------------------- configuration


def read_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping")  # noqa: TRY004 (a config error)
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
    preset["path"] = str(path)
    return preset


def load_rows(path=ROWS_FILE, models=None) -> list[dict]:
    """The row definitions, checked: unique names, known kinds and tables, teachers that are earlier rows."""
    rows = read_yaml(path).get("rows") or []
    seen = {}
    for index, row in enumerate(rows):
        where = f"{path} row {index} ({row.get('name')!r})"
        for key in ("name", "label", "kind", "model", "tables"):
            if key not in row:
                raise ValueError(f"{where}: missing {key!r}")
        if row["name"] in seen:
            raise ValueError(f"{where}: duplicate row name")
        if row["kind"] not in ROW_KINDS:
            raise ValueError(f"{where}: kind {row['kind']!r} is not one of {sorted(ROW_KINDS)}")
        unknown_tables = [t for t in row["tables"] if t not in TABLES]
        if unknown_tables:
            raise ValueError(f"{where}: unknown tables {unknown_tables}; tables are {sorted(TABLES)}")
        if models is not None and row["model"] not in models:
            raise ValueError(f"{where}: model {row['model']!r} is not in the preset's models {sorted(models)}")
        if row["kind"] == "distill":
            if not row.get("objectives"):
                raise ValueError(f"{where}: a distill row needs objectives")
            if row.get("teacher") not in seen:
                raise ValueError(f"{where}: teacher {row.get('teacher')!r} must name an earlier row")
        seen[row["name"]] = row
    return rows


def select_rows(rows: list[dict], names: list[str] | None) -> list[dict]:
    """The named rows plus the rows they distil from (teachers first), in file order."""
    by_name = {row["name"]: row for row in rows}
    if not names:
        return list(rows)
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"--rows: unknown rows {unknown}; rows are {list(by_name)}")
    wanted = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            if by_name[name].get("teacher"):
                pending.append(by_name[name]["teacher"])
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
        return DatasetDict({name: everything.select(rows) for name, rows in zip(("train", "validation", "test"), parts)})
    if data["source"] == "qm9_embedded":
        embedded = load_embedded_qm9()
        return DatasetDict(
            {
                name: seeded_subset(embedded[name], size, seed + k, f"data.sizes ({name})")
                for k, (name, size) in enumerate(zip(("train", "validation", "test"), sizes))
            }
        )
    raise ValueError(f"data.source {data['source']!r}: use 'qm9' (qm9pack) or 'qm9_embedded'")


def mean_inverse_square_atoms(train) -> float:
    """E[1/N^2] over the training molecules (N heavy atoms): the constant with CCMD's average coordinating weight."""
    counts = np.array([len(pos) for pos in train["pos"]], dtype=float)
    return float(np.mean(1.0 / counts**2))


def preset_parameters(preset: dict, records) -> dict:
    parameters = dict(preset["parameters"])
    if parameters.get("ccmd_search_weight") == "auto":
        parameters["ccmd_search_weight"] = mean_inverse_square_atoms(records["train"])
    return parameters


# ---------------------------------------------------------------------------------------------- one row + seed


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
    data = preset["data"]
    config = {
        "output_dir": str(directory),
        "dataset": data["source"],
        "label_columns": [data["label"]],
        "split_seed": int(data.get("split_seed", 0)),
        **preset["training"],
        "seed": seed,
        "stage_overrides": {},
    }
    model = preset["models"][row["model"]]
    if row["kind"] == "teacher":
        config["teacher_config"] = model
        config["stage_overrides"]["teacher"] = dict(preset["teacher_training"])
    else:
        config["student_config"] = model
    if row["kind"] == "distill":
        config["teacher_name_or_path"] = str(model_dir(work_dir, rows_by_name[row["teacher"]], seed))
        config["objectives"] = resolve(row["objectives"], parameters)
        for key in ("initial_stage_epochs", "initial_stage_weights"):
            if key in row:
                config[key] = resolve(row[key], parameters)
    config["evaluate_name_or_path"] = str(stage_dir)  # the teacher row evaluates its teacher, too
    if training_finished(stage_dir):
        config["stages"] = ["evaluate"]
    else:
        config["stages"] = [stage, "evaluate"]
        checkpoint = get_last_checkpoint(str(stage_dir)) if stage_dir.is_dir() else None
        if checkpoint:
            config["stage_overrides"].setdefault(stage, {})["resume_from_checkpoint"] = checkpoint
    return config


def learning_curve(stage_dir: Path, label: str) -> dict:
    """Per epoch from trainer_state.json: validation MAE, training task loss, summed distillation components."""
    state_file = stage_dir / "trainer_state.json"
    if not state_file.is_file():
        return {}
    history = json.loads(state_file.read_text())["log_history"]
    key = f"eval_{label}_mae"
    validation = {round(entry["epoch"]): entry[key] for entry in history if key in entry}
    task, distillation = {}, {}
    for entry in history:
        if "loss" not in entry or "epoch" not in entry:
            continue
        epoch = max(math.ceil(entry["epoch"] - 1e-9), 1)  # logs in (e-1, e] belong to epoch e
        components = {name: value for name, value in entry.items() if name.split("_")[0] in ("ccmd", "stkd", "dnd")}
        if "task" in entry:
            task.setdefault(epoch, []).append(entry["task"])
        if components:
            distillation.setdefault(epoch, []).append(sum(components.values()))
    epochs = sorted(set(validation) | set(task) | set(distillation))
    # Lists aligned with `epoch` (None where an epoch has no value), so the curve survives a JSON round trip.
    return {
        "epoch": epochs,
        "validation_mae": [validation.get(e) for e in epochs],
        "train_task_loss": [float(np.mean(task[e])) if e in task else None for e in epochs],
        "train_distillation_loss": [float(np.mean(distillation[e])) if e in distillation else None for e in epochs],
    }


def run_row(row, preset, parameters, seed, work_dir, rows_by_name, records) -> dict:
    """Train (or resume) and evaluate one row + seed; returns its record (also saved beside the run)."""
    directory = row_dir(work_dir, row, seed)
    metrics_file = directory / "evaluate" / METRICS_FILE
    record_file = directory / ROW_RECORD
    label = preset["data"]["label"]
    if metrics_file.is_file() and record_file.is_file():
        return {**json.loads(record_file.read_text()), "skipped": True}
    config = run_config(row, preset, parameters, seed, work_dir, rows_by_name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    if not metrics_file.is_file():
        run = plan_run(*parse_config(config))
        for plan in run.stages:
            run_stage(run, plan, records)
    wall = time.perf_counter() - start
    previous = json.loads(record_file.read_text()) if record_file.is_file() else {}
    evaluation = json.loads(metrics_file.read_text())
    record = {
        "row": row["name"],
        "seed": seed,
        "test_mae": evaluation["metrics"]["test"][f"{label}_mae"],
        "test_rmse": evaluation["metrics"]["test"][f"{label}_rmse"],
        "test_count": evaluation["metrics"]["test"][f"{label}_count"],
        # Wall time of all sessions that worked on this row + seed (a resumed run adds to the earlier ones).
        "wall_s": previous.get("wall_s", 0.0) + wall,
        "config": config,
        "learning_curve": learning_curve(model_dir(work_dir, row, seed), label),
    }
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
    """Per row: test MAE mean and sample std (ddof=1) over its seeds, with the per-seed values."""
    summary = {}
    for row in rows:
        mine = sorted((r for r in records if r["row"] == row["name"]), key=lambda r: r["seed"])
        maes = np.array([r["test_mae"] for r in mine], dtype=float)
        summary[row["name"]] = {
            "label": row["label"],
            "tables": row["tables"],
            "kind": row["kind"],
            "seeds": [r["seed"] for r in mine],
            "test_mae": maes.tolist(),
            "test_mae_mean": float(maes.mean()) if len(maes) else None,
            "test_mae_std": float(maes.std(ddof=1)) if len(maes) > 1 else None,
            "wall_s_mean": float(np.mean([r["wall_s"] for r in mine])) if mine else None,
        }
    return summary


def format_mae(entry: dict) -> str:
    if entry["test_mae_mean"] is None:
        return "not run"
    if entry["test_mae_std"] is None:
        return f"{entry['test_mae_mean']:.4f}"
    return f"{entry['test_mae_mean']:.4f} ± {entry['test_mae_std']:.4f}"


def markdown(preset: dict, summary: dict, split_sizes: dict, seeds: list[int], info: dict, parameters: dict) -> str:
    lines = [
        f"# Distillation on QM9 HOMO-LUMO gap: preset `{Path(preset['path']).stem}`",
        "",
        f"{preset.get('description', '')}. Test MAE in eV, mean ± sample std over seeds {seeds} "
        f"(training seeds; one fixed split, seed {preset['data'].get('split_seed', 0)}: "
        + ", ".join(f"{name} {count}" for name, count in split_sizes.items())
        + f" molecules of {preset['data']['source']}). Every student has the same training budget "
        f"({preset['training'].get('num_train_epochs', preset['training'].get('max_steps'))} "
        f"{'epochs' if 'num_train_epochs' in preset['training'] else 'steps'}); "
        "only the teacher sees DFT coordinates.",
        "",
        f"Machine: {info['processor']}, {info['cpu_count']} CPUs, torch {info['torch']}"
        + (f", {info['cuda_device']}" if info["cuda_device"] else "")
        + f"; commit {info['git_commit']}. Command: `{info['command']}`.",
        "",
        "Parameters: " + ", ".join(f"{k} = {v}" for k, v in parameters.items()) + ".",
    ]
    for table, (title, caption) in TABLES.items():
        members = [(name, entry) for name, entry in summary.items() if table in entry["tables"]]
        if not members:
            continue
        lines += ["", f"## {title}", "", caption, "", "| Method | test MAE (eV) | per seed | wall (min / seed) |",
                  "|---|---|---|---|"]
        for name, entry in members:
            per_seed = ", ".join(f"{v:.4f}" for v in entry["test_mae"]) or "-"
            wall = f"{entry['wall_s_mean'] / 60:.1f}" if entry["wall_s_mean"] is not None else "-"
            lines.append(f"| {entry['label']} (`{name}`) | {format_mae(entry)} | {per_seed} | {wall} |")
        lines += ["", f"Learning curves: `{preset['results_name']}_{table}.png`."]
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, title: str, rows: list[dict], records: list[dict]) -> None:
    """Validation MAE and distillation loss per epoch, seed mean, one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, row in enumerate(rows):  # one colour per row in both panels
        curves = [r["learning_curve"] for r in records if r["row"] == row["name"] and r.get("learning_curve")]
        for axis, key in ((left, "validation_mae"), (right, "train_distillation_loss")):
            by_epoch = {}
            for curve in curves:
                for epoch, value in zip(curve["epoch"], curve[key]):
                    if value is not None:
                        by_epoch.setdefault(epoch, []).append(value)
            if by_epoch:
                epochs = sorted(by_epoch)
                axis.plot(epochs, [np.mean(by_epoch[e]) for e in epochs], marker="o", color=f"C{index % 10}", label=row["label"])
    left.set(xlabel="epoch", ylabel="validation MAE (eV)", title="task")
    right.set(xlabel="epoch", ylabel="sum of distillation components (unweighted)", title="distillation loss")
    for axis in (left, right):
        if axis.lines:
            axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu", help="smoke, cpu, paper, or a preset YAML path")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--rows", nargs="+", help="only these rows (and the teachers they distil from)")
    parser.add_argument("--work-dir", type=Path, help="training runs (default runs/distillation_qm9/{preset})")
    parser.add_argument(
        "--results-dir", type=Path, help="where the JSON/MD/PNGs go (default benchmarks/results; smoke: --work-dir)"
    )
    parser.add_argument("--rows-file", type=Path, default=ROWS_FILE, help="row definitions (YAML)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    options = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    transformers_logging.set_verbosity_warning()
    preset = load_preset(options.preset)
    preset_name = Path(preset["path"]).stem
    work_dir = options.work_dir or ROOT / "runs" / "distillation_qm9" / preset_name
    results_dir = options.results_dir or (work_dir if preset_name == "smoke" else ROOT / "benchmarks" / "results")
    all_rows = load_rows(options.rows_file, preset["models"])
    rows = select_rows(all_rows, options.rows)
    rows_by_name = {row["name"]: row for row in all_rows}

    records = load_split(preset["data"])
    parameters = preset_parameters(preset, records)
    split_sizes = {name: len(split) for name, split in records.items()}
    logger.info("split %s; rows %s; seeds %s", split_sizes, [r["name"] for r in rows], options.seeds)

    jobs = [(seed, row) for seed in options.seeds for row in rows]
    results, started, trained = [], time.perf_counter(), 0
    for index, (seed, row) in enumerate(jobs, start=1):
        print(f"[{index}/{len(jobs)}] seed {seed} {row['name']} ({row['label']}) ...", flush=True)
        record = run_row(row, preset, parameters, seed, work_dir, rows_by_name, records)
        results.append(record)
        if not record.get("skipped"):
            trained += 1
        elapsed = time.perf_counter() - started
        eta = f"{elapsed / trained * (len(jobs) - index) / 60:.1f} min" if trained else "-"
        status = "done earlier (skipped)" if record.get("skipped") else f"{record['wall_s']:.0f} s"
        print(
            f"[{index}/{len(jobs)}] seed {seed} {row['name']}: test MAE {record['test_mae']:.4f} eV, {status}; "
            f"elapsed {elapsed / 60:.1f} min, ETA {eta}",
            flush=True,
        )

    summary = summarize(rows, results)
    info = {**machine(), "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}
    results_dir.mkdir(parents=True, exist_ok=True)
    name = preset["results_name"]
    report = {
        "preset": preset_name,
        "preset_config": {k: v for k, v in preset.items() if k != "path"},
        "parameters": parameters,
        "split_sizes": split_sizes,
        "seeds": options.seeds,
        "machine": info,
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k != "skipped"} for r in results],
    }
    (results_dir / f"{name}.json").write_text(json.dumps(report, indent=2))
    (results_dir / f"{name}.md").write_text(markdown(preset, summary, split_sizes, options.seeds, info, parameters))
    for table, (title, _) in TABLES.items():
        members = [row for row in rows if table in row["tables"]]
        if members:
            plot_curves(results_dir / f"{name}_{table}.png", title, members, results)
    print(f"wrote {results_dir / name}.json, .md and learning curves", flush=True)
    return report


if __name__ == "__main__":
    main()
