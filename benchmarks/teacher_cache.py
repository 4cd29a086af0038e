"""Teacher-output cache: what a distillation step costs relative to a student-alone step, with and without the cache.

Two tasks (`--task`), each three DistillationTrainer runs of the same student and batches (one torch thread):

* `student`: the student alone (task objective, the student's batch only);
* `distill`: task + a KD objective, the frozen teacher run on every batch;
* `distill_cached`: the same with `teacher_cache_dir` (teacher outputs read from the Arrow cache, written once before).

`property` (default): embedded QM9, a 3D Graphormer teacher -> 2D Graphormer student, task + CCMD (the teacher's
hidden states are cached). `energy_forces`: the QM9/xTB conformations shipped with the package, the PaiNN teacher
and PaiNN-small student of configs/potentials/ (128 x 4 -> 64 x 3), energy/force task + n2n (the teacher's node
features are cached: `gnn_objectives.TEACHER_TARGETS`).

Each run trains WARMUP + STEPS optimizer steps; a step's time is the median spacing of `on_step_end` after the
warm-up (data loading and collation included). The three runs alternate for ROUNDS rounds, each round starting
with the next run; each round's ratios to
its student-alone step are taken (runs seconds apart share the machine's load) and their median is reported. The
first cached round also checks that its logged losses equal the live run's (the cache must not change training).

    .venv/bin/python benchmarks/teacher_cache.py             # writes benchmarks/results/teacher_cache.{json,md}
    .venv/bin/python benchmarks/teacher_cache.py --task energy_forces   # -> teacher_cache_energy_forces.{json,md}
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import PrinterCallback, TrainerCallback, TrainingArguments

from molformer_kd.data import load_embedded_qm9
from molformer_kd.data.xtb import energy_statistics, load_qm9_xtb
from molformer_kd.distillation.objectives import CCMDObjective, TaskObjective
from molformer_kd.distillation.registry import build_objective
from molformer_kd.distillation.tasks import label_statistics
from molformer_kd.distillation.teacher_cache import cache_bytes_per_molecule, cached_fields
from molformer_kd.distillation.trainer import DistillationModel, DistillationTrainer
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.configuration_painn import PaiNNConfig
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction, GraphormerModel
from molformer_kd.modeling.modeling_painn import PaiNNForEnergyAndForces
from molformer_kd.tokenization.collators import (
    PairedCollator,
    PointCloudCollator,
    SingleModelCollator,
    SingleModelPointCloudCollator,
)
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

RESULTS = Path(__file__).resolve().parent / "results"
# A teacher a few times the student's size (as in CCMD: a 12-layer teacher, smaller students), both CPU-sized.
TEACHER = {"num_hidden_layers": 6, "hidden_size": 128, "num_attention_heads": 8, "ffn_size": 128}
STUDENT = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "ffn_size": 32}
# The energy/force pair of the issue #19 sweep (configs/potentials/qm9_xtb_20k_{teacher,painn_small}.yaml).
POTENTIAL_TEACHER = {"hidden_size": 128, "num_layers": 4, "num_rbf": 20, "cutoff": 5.0, "direct_forces": True}
POTENTIAL_STUDENT = {"hidden_size": 64, "num_layers": 3, "num_rbf": 20, "cutoff": 5.0, "direct_forces": True}
RUNS = ("student", "distill", "distill_cached")


class StepClock(TrainerCallback):
    """perf_counter at the end of every optimizer step."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def property_models(run: str, rows):
    """Teacher, student, objectives and collator of a `property` run."""
    teacher = GraphormerModel(GraphormerConfig.from_preset("tiny", geometry="3d", **TEACHER)).eval()
    student_config = GraphormerConfig.from_preset("tiny", geometry="2d", **STUDENT, **label_statistics(rows, ["gap"]))
    student = GraphormerForMolecularPropertyPrediction(student_config)
    objectives = {"task": TaskObjective()}
    if run == "student":
        return teacher, student, objectives, SingleModelCollator(MoleculeFeaturizer(), label_columns=["gap"])
    objectives["ccmd"] = CCMDObjective(teacher.config, student_config)
    return teacher, student, objectives, PairedCollator(MoleculeFeaturizer(use_3d=True), MoleculeFeaturizer(), ["gap"])


def energy_forces_models(run: str, rows):
    """Teacher, student, objectives and collator of an `energy_forces` run."""
    statistics_of_rows = energy_statistics(rows)
    teacher = PaiNNForEnergyAndForces(PaiNNConfig(**POTENTIAL_TEACHER, **statistics_of_rows)).eval()
    student = PaiNNForEnergyAndForces(PaiNNConfig(**POTENTIAL_STUDENT, **statistics_of_rows))
    objectives = {"energy_forces": build_objective("energy_forces", None, student.config)}
    if run == "student":
        return teacher, student, objectives, SingleModelPointCloudCollator()
    objectives["n2n"] = build_objective("n2n", teacher.config, student.config)
    return teacher, student, objectives, PointCloudCollator(paired=True)


TASKS = {
    "property": {"models": property_models, "kd": ("task", "ccmd_global", "ccmd_local"), "results": "teacher_cache"},
    "energy_forces": {
        "models": energy_forces_models,
        "kd": ("task_energy", "task_forces", "n2n"),
        "results": "teacher_cache_energy_forces",
    },
}


def make_trainer(
    task: str, run: str, rows, output_dir: Path, cache_dir: Path, steps: int, batch_size: int, models=None, **training
):
    """A DistillationTrainer of `run`: the task's models (or those of `models(run, rows)`), `training` added to its
    TrainingArguments."""
    torch.manual_seed(0)
    teacher, student, objectives, collator = (models or TASKS[task]["models"])(run, rows)
    args = TrainingArguments(
        output_dir=str(output_dir),
        use_cpu=True,
        seed=0,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **training,
    )
    clock = StepClock()
    trainer = DistillationTrainer(
        model=DistillationModel(student, objectives),
        args=args,
        teacher=None if run == "student" else teacher,
        data_collator=collator,
        train_dataset=rows,
        callbacks=[clock],
        teacher_cache_dir=cache_dir if run == "distill_cached" else None,
    )
    trainer.remove_callback(PrinterCallback)  # the log lines of every step would drown the progress lines
    return trainer, clock, teacher


def logged_losses(trainer, task: str) -> list[dict]:
    keys = ("loss", *TASKS[task]["kd"])
    return [{k: v for k, v in e.items() if k in keys} for e in trainer.state.log_history if "loss" in e]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="property")
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    total_steps = options.warmup + options.steps
    if options.task == "property":
        rows = load_embedded_qm9()["train"].select(range(options.batch_size * total_steps))
    else:
        train = load_qm9_xtb()["train"]
        rows = train.select(range(min(len(train), options.batch_size * total_steps)))

    per_step: dict[str, list[float]] = {run: [] for run in RUNS}
    losses: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        cache_dir = work / "cache"
        # The cache is written once, as a run's first distill stage would; its cost is reported, not in the steps.
        build_start = time.perf_counter()
        trainer, _, teacher = make_trainer(
            options.task, "distill_cached", rows, work / "build", cache_dir, 1, options.batch_size
        )
        build_seconds = time.perf_counter() - build_start
        cache_bytes = sum(p.stat().st_size for p in cache_dir.glob("*.arrow"))
        del trainer
        for round_index in range(options.rounds):
            # Each round starts with another run: load drifting within a round hits every run alike over the rounds.
            for run in RUNS[round_index % len(RUNS) :] + RUNS[: round_index % len(RUNS)]:
                trainer, clock, _ = make_trainer(
                    options.task, run, rows, work / run, cache_dir, total_steps, options.batch_size
                )
                trainer.train()
                times = clock.times[options.warmup - 1 :]
                # The median spacing: a step slowed by another job on the shared cores does not count.
                per_step[run].append(statistics.median(b - a for a, b in itertools.pairwise(times)))
                if round_index == 0:
                    losses[run] = logged_losses(trainer, options.task)
                print(f"round {round_index} {run}: {1e3 * per_step[run][-1]:.1f} ms/step", file=sys.stderr)

    equal_losses = all(
        abs(a[k] - b[k]) <= 1e-5 * max(abs(b[k]), 1e-6)
        for a, b in zip(losses["distill_cached"], losses["distill"], strict=True)
        for k in b
    )
    median = {run: statistics.median(values) for run, values in per_step.items()}
    if options.task == "property":
        fields = cached_fields({"hidden_states"})
        mean_tokens = 1 + sum(len(p) for p in rows["pos"]) / len(rows)
        estimate = cache_bytes_per_molecule(
            round(mean_tokens),
            TEACHER["hidden_size"],
            TEACHER["num_hidden_layers"],
            TEACHER["num_attention_heads"],
            fields,
        )
        teacher_setup = {"model": "3D Graphormer", **TEACHER}
        student_setup, objectives, data = {"model": "2D Graphormer", **STUDENT}, "task + ccmd (all layers)", "QM9"
    else:  # n2n: the teacher's node features, 4 bytes x width per atom
        mean_atoms = sum(len(z) for z in rows["atomic_numbers"]) / len(rows)
        estimate = 4 * mean_atoms * POTENTIAL_TEACHER["hidden_size"]
        teacher_setup = {"model": "PaiNN", **POTENTIAL_TEACHER}
        student_setup, objectives, data = {"model": "PaiNN", **POTENTIAL_STUDENT}, "energy_forces + n2n", "QM9/xTB"
    result = {
        "command": "python benchmarks/teacher_cache.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": {
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "setup": {
            "task": options.task,
            "data": "load_embedded_qm9() train rows" if options.task == "property" else "load_qm9_xtb() train rows",
            "data_name": data,
            "rows": len(rows),
            "batch_size": options.batch_size,
            "timed_steps": options.steps,
            "warmup_steps": options.warmup,
            "rounds": options.rounds,
            "teacher": {**teacher_setup, "parameters": sum(p.numel() for p in teacher.parameters())},
            "student": student_setup,
            "objectives": objectives,
        },
        "ms_per_step_median": {run: 1e3 * value for run, value in median.items()},
        "ms_per_step_rounds": {run: [1e3 * v for v in values] for run, values in per_step.items()},
        # Ratios within a round (runs seconds apart share the machine's load), then the median over rounds.
        "ratio_to_student": {run: paired_ratio(per_step[run], per_step["student"]) for run in RUNS},
        "speedup_cached_vs_live": paired_ratio(per_step["distill"], per_step["distill_cached"]),
        "cache": {
            "build_seconds": build_seconds,
            "build_in_cached_steps": build_seconds / median["distill_cached"],
            "file_bytes": cache_bytes,
            "bytes_per_molecule": cache_bytes / len(rows),
            "estimated_bytes_per_molecule": estimate,
        },
        "cached_losses_equal_live": equal_losses,
        "wall_seconds": time.perf_counter() - started,
    }
    options.output.mkdir(parents=True, exist_ok=True)
    name = TASKS[options.task]["results"]
    (options.output / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (options.output / f"{name}.md").write_text(markdown(result))
    return result


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def describe(model: dict) -> str:
    layers = model.get("num_hidden_layers", model.get("num_layers"))
    return f"{layers} layers x {model['hidden_size']}"


def markdown(result: dict) -> str:
    setup, ratio, ms = result["setup"], result["ratio_to_student"], result["ms_per_step_median"]
    cache = result["cache"]
    lines = [
        "# Teacher-output cache: distillation step time relative to the student alone",
        "",
        (
            f"Command: `{result['command'].strip()}` — {result['wall_seconds']:.0f} s on "
            f"{result['environment']['cpu']} "
            f"({result['environment']['torch_threads']} torch thread, 2 cores shared with other jobs)."
        ),
        "",
        (
            f"Data: {setup['rows']} {setup['data_name']} training rows, batch {setup['batch_size']}; "
            f"{setup['timed_steps']} timed steps after {setup['warmup_steps']} warm-up steps, {setup['rounds']} "
            "rounds alternating the three runs, each round starting with another (median step spacing per run; "
            "ratios within a round, median over "
            f"rounds). Teacher: {setup['teacher']['model']} "
            f"{describe(setup['teacher'])} ({setup['teacher']['parameters']} parameters); student: "
            f"{setup['student']['model']} {describe(setup['student'])}; objectives {setup['objectives']}. "
            "A step includes collation."
        ),
        "",
        "| run | ms / step (median over rounds) | ratio to student alone |",
        "|---|---|---|",
        *(f"| {run} | {ms[run]:.1f} | {ratio[run]:.2f} |" for run in RUNS),
        "",
        (
            f"Cached vs live distillation step: **{result['speedup_cached_vs_live']:.2f}x** faster. Writing the cache "
            f"(one pass of the teacher over the {setup['rows']} rows) took {cache['build_seconds']:.1f} s, "
            f"{cache['build_in_cached_steps']:.0f} cached steps' worth; the file holds "
            f"{cache['bytes_per_molecule'] / 1024:.1f} KiB per molecule (estimate: "
            f"{cache['estimated_bytes_per_molecule'] / 1024:.1f} KiB). Logged losses cached == live: "
            f"{result['cached_losses_equal_live']}."
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
