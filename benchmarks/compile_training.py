"""torch.compile for training the issue-#19 potentials: step time and compile time, eager against compiled.

Runs, all through DistillationTrainer on the QM9/xTB conformations shipped with the package (one torch thread):

* `painn_small`: the PaiNN-small student of configs/potentials/qm9_xtb_20k_painn_small.yaml, trained alone;
* `painn_small_n2n_cached`: PaiNN-small distilled with n2n, the teacher's targets read from the teacher cache (what
  most rows of the sweep are; the cache is written once beforehand, as benchmarks/teacher_cache.py does).

Only direct-force models train compiled: the SchNet student's forces are -dE/dx, and training on them differentiates
through a gradient, which torch.compile's AOT autograd does not support (DistillationTrainer refuses it).

Modes:

* `eager`: no compilation;
* `compile`: `torch_compile: true`, which DistillationTrainer compiles (inductor) for dynamic shapes;
* `compile_automatic`: the same with accelerate's own setting (`dynamic=None`: shapes specialised, a dimension made
  dynamic after it changed once), what a plain `transformers.Trainer` does. Once, for `painn_small` only: it differs
  from `compile` in compile time, not in the steady step.

Every (run, mode) trains in a fresh process with an empty inductor cache (nothing compiled carries over) for
WARMUP + STEPS optimizer steps:
`first_steps_s` is the time from the start of training to the end of step WARMUP (compilation included), a step's
time is the median spacing of `on_step_end` after it (collation included). `eager` and `compile` alternate for ROUNDS
rounds, each round starting with the other mode; the speed-up is the ratio within a round (processes seconds apart
share the machine's load), median over rounds. The loss logged at the last step is reported per mode: compiled
kernels sum in another order, so it matches eager closely, not bit for bit.

    .venv/bin/python benchmarks/compile_training.py     # writes benchmarks/results/compile_training.{json,md}
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from molformer_kd.data.xtb import energy_statistics, load_qm9_xtb
from molformer_kd.distillation.registry import build_objective
from molformer_kd.distillation.tasks.energy_forces import build_energy_model
from molformer_kd.tokenization.collators import PointCloudCollator, SingleModelPointCloudCollator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
_spec = importlib.util.spec_from_file_location("teacher_cache", ROOT / "benchmarks" / "teacher_cache.py")
teacher_cache = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(teacher_cache)

STUDENT_CONFIG = "configs/potentials/qm9_xtb_20k_painn_small.yaml"
RUNS = ("painn_small", "painn_small_n2n_cached")
MODES = ("eager", "compile")


def student_spec() -> dict:
    return yaml.safe_load((ROOT / STUDENT_CONFIG).read_text())["student_config"]


def potential_models(kind: str, rows):
    """`teacher_cache.make_trainer`'s `models`: teacher, student, objectives and collator of a `kind` run."""
    statistics_of_rows = energy_statistics(rows)
    student = build_energy_model(student_spec(), statistics_of_rows)
    objectives = {"energy_forces": build_objective("energy_forces", None, student.config)}
    if kind == "student":
        return None, student, objectives, SingleModelPointCloudCollator()
    teacher_spec = {"model_type": "molformer_painn", **teacher_cache.POTENTIAL_TEACHER}
    teacher = build_energy_model(teacher_spec, statistics_of_rows)
    objectives["n2n"] = build_objective("n2n", teacher.config, student.config)
    return teacher.eval(), student, objectives, PointCloudCollator(paired=True)


def kind_of(run: str) -> str:
    return "distill_cached" if run.endswith("_cached") else "student"


def training_rows(steps: int, batch_size: int):
    train = load_qm9_xtb()["train"]
    return train.select(range(min(len(train), steps * batch_size)))


def child(run: str, mode: str, warmup: int, steps: int, batch_size: int, work: Path) -> dict:
    """One (run, mode) training in this process; returns its timings and last logged loss."""
    torch.set_num_threads(1)
    if mode == "compile_automatic":  # accelerate's own dynamo setting, as a plain transformers.Trainer has it
        from transformers import Trainer

        from molformer_kd.distillation.trainer import DistillationTrainer

        DistillationTrainer.create_accelerator_and_postprocess = Trainer.create_accelerator_and_postprocess
    training = {"torch_compile": True} if mode.startswith("compile") else {}
    rows = training_rows(warmup + steps, batch_size)
    trainer, clock, _ = teacher_cache.make_trainer(
        "energy_forces",
        kind_of(run),
        rows,
        work / f"{run}-{mode}",
        work / "cache",
        warmup + steps,
        batch_size,
        models=potential_models,
        **training,
    )
    start = time.perf_counter()
    trainer.train()
    times = clock.times[warmup - 1 :]
    last = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    return {
        "first_steps_s": clock.times[warmup - 1] - start,
        "step_s": statistics.median(b - a for a, b in itertools.pairwise(times)),
        "last_loss": last["loss"],
        "dynamic": trainer.accelerator.state.dynamo_plugin.dynamic if training else None,
    }


def write_teacher_cache(steps: int, batch_size: int, work: Path) -> None:
    """The teacher cache of the n2n run, written once before the timed runs, as a first distill stage would."""
    teacher_cache.make_trainer(
        "energy_forces", "distill_cached", training_rows(steps, batch_size), work / "build", work / "cache", 1,
        batch_size, models=potential_models,
    )  # fmt: skip


def summarize(measured: dict[str, dict[str, list[dict]]]) -> dict:
    """Per run and mode: median step and time to the first steps; the compile speed-up, paired within rounds."""
    summary = {}
    for run, modes in measured.items():
        summary[run] = {
            mode: {
                "ms_per_step_median": 1e3 * statistics.median(m["step_s"] for m in values),
                "first_steps_s_median": statistics.median(m["first_steps_s"] for m in values),
                "last_loss_round_0": values[0]["last_loss"],
            }
            for mode, values in modes.items()
        }
        summary[run]["speedup_compile_vs_eager"] = statistics.median(
            e["step_s"] / c["step_s"] for e, c in zip(modes["eager"], modes["compile"], strict=True)
        )
    return summary


def spawn(run: str, mode: str, options, work: Path) -> dict:
    command = [sys.executable, __file__, "--child", run, mode, "--work", str(work)]
    command += ["--warmup", str(options.warmup), "--steps", str(options.steps), "--batch-size", str(options.batch_size)]
    # A cold inductor cache for every run: compiled kernels are cached on disk across processes, and a run after
    # another would otherwise time the cache, not the compilation a user's first run pays.
    cache = tempfile.mkdtemp(prefix=f"inductor-{run}-{mode}-", dir=work)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": cache}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{run} / {mode} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"{run} / {mode}: {measured['first_steps_s']:.1f} s to step {options.warmup}, "
        f"{1e3 * measured['step_s']:.1f} ms/step",
        file=sys.stderr,
    )
    return measured


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="steps before the timed ones (compilation)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=2, metavar=("RUN", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        run, mode = options.child
        print(json.dumps(child(run, mode, options.warmup, options.steps, options.batch_size, options.work)))
        return {}

    started = time.perf_counter()
    measured: dict[str, dict[str, list[dict]]] = {run: {} for run in options.runs}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        if "painn_small_n2n_cached" in options.runs:
            write_teacher_cache(options.warmup + options.steps, options.batch_size, work)
        for round_index in range(options.rounds):
            for run in options.runs:
                for mode in MODES[round_index % 2 :] + MODES[: round_index % 2]:
                    measured[run].setdefault(mode, []).append(spawn(run, mode, options, work))
        if "painn_small" in options.runs:
            measured["painn_small"]["compile_automatic"] = [spawn("painn_small", "compile_automatic", options, work)]

    result = {
        "command": "python benchmarks/compile_training.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": {
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": 1,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "setup": {
            "data": "load_qm9_xtb() train rows",
            "rows": (options.warmup + options.steps) * options.batch_size,
            "batch_size": options.batch_size,
            "warmup_steps": options.warmup,
            "timed_steps": options.steps,
            "rounds": options.rounds,
            "student": student_spec(),
            "teacher": {"model_type": "molformer_painn", **teacher_cache.POTENTIAL_TEACHER},
        },
        "measured": measured,
        "summary": summarize(measured),
        "wall_seconds": time.perf_counter() - started,
    }
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "compile_training.json").write_text(json.dumps(result, indent=1) + "\n")
    (options.output / "compile_training.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    setup, summary = result["setup"], result["summary"]
    lines = [
        "# torch.compile for training the potentials: eager against compiled",
        "",
        (
            f"Command: `{result['command'].strip()}` — {result['wall_seconds']:.0f} s on "
            f"{result['environment']['cpu']} (1 torch thread, 2 cores shared with other jobs), "
            f"torch {result['environment']['torch']}."
        ),
        "",
        (
            f"Data: {setup['rows']} QM9/xTB training conformations, batch {setup['batch_size']} (each padded to its "
            f"widest molecule); {setup['timed_steps']} timed steps after {setup['warmup_steps']}, every run a fresh "
            f"process with an empty inductor cache; `eager` and `compile` alternate for {setup['rounds']} rounds "
            "(speed-up: the ratio within a "
            "round, median over rounds). `compile` is `torch_compile: true` as DistillationTrainer sets it up "
            "(inductor, dynamic shapes); `compile (automatic)` is accelerate's own setting, what a plain "
            "`transformers.Trainer` compiles. A step includes collation."
        ),
        "",
        "| run | eager ms / step | compile ms / step | speed-up | time to step "
        f"{setup['warmup_steps']} (s): eager / compile / compile (automatic) | last loss: eager / compile |",
        "|---|---|---|---|---|---|",
    ]
    for run, modes in summary.items():
        automatic = modes.get("compile_automatic")
        first = " / ".join(
            [f"{modes[m]['first_steps_s_median']:.1f}" for m in MODES]
            + [f"{automatic['first_steps_s_median']:.1f}" if automatic else "-"]
        )
        lines.append(
            f"| {run} | {modes['eager']['ms_per_step_median']:.1f} | {modes['compile']['ms_per_step_median']:.1f} | "
            f"**{modes['speedup_compile_vs_eager']:.2f}x** | {first} | "
            f"{modes['eager']['last_loss_round_0']:.4g} / {modes['compile']['last_loss_round_0']:.4g} |"
        )
    if "painn_small" in summary and "compile_automatic" in summary["painn_small"]:
        automatic = summary["painn_small"]["compile_automatic"]
        lines += [
            "",
            (
                f"`compile (automatic)`, PaiNN-small: {automatic['ms_per_step_median']:.1f} ms / step once compiled, "
                f"after {automatic['first_steps_s_median']:.0f} s to step {setup['warmup_steps']} (it recompiles "
                "for new padded widths before it makes them dynamic)."
            ),
        ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
