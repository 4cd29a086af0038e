"""Measure the seed and thread-count spread of the statistics that the suite's threshold tests assert on.

Each threshold test in tests/ that trains a model keeps its training in a helper that takes a seed and returns the
numbers it asserts on; this script calls those helpers for many seeds and intra-op thread counts, one configuration
after another in this process, and prints min / median / max of every ratio, so that the thresholds (and the measured
numbers quoted in the tests' comments) can be checked on any machine:

    export PYTHONPATH=tests   # the test modules (and their fixtures) import as pytest imports them
    OMP_NUM_THREADS=1 python scripts/measure_test_spread.py                        # seeds 0-9, threads 1 and 2
    OMP_NUM_THREADS=1 python scripts/measure_test_spread.py --seeds 0-19 --threads 1 --tests gin graphormer
    python scripts/measure_test_spread.py --json spread.json                      # also write every run
    python scripts/measure_test_spread.py --summarize one.json two.json           # pool earlier runs

Measured statistics (all training MAEs on the 64 QM9 HOMO-LUMO gaps the tests fit, in eV):
    initial/final         how far the fit dropped the error of the untrained model (depends on the random init)
    mean_predictor/final  how far below the error of always predicting the mean it ends (seed-independent reference)

Run it on an otherwise idle machine if you also want the timings to mean something; the ratios do not depend on load.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _graphormer(seed):
    import test_modeling_graphormer_training as module

    with tempfile.TemporaryDirectory() as cache_dir:
        return module.overfit_tiny_graphormer(seed=seed, cache_dir=cache_dir)


def _gin(seed):
    import test_modeling_gin as module

    return module.overfit_tiny_gin(seed=seed)


def _smiles_transformer(variant):
    def run(seed):
        import test_modeling_smiles_transformer as module

        settings = {name: (lr, steps) for name, lr, steps in module.OVERFIT_SETTINGS}
        learning_rate, steps = settings[variant]
        return module.overfit_tiny_smiles_transformer(variant, learning_rate, steps, seed=seed)

    return run


# name -> (test it sizes, seed -> (initial, mean_predictor, final))
MEASUREMENTS = {
    "graphormer": (
        "tests/test_modeling_graphormer_training.py::test_tiny_graphormer_overfits_64_qm9_molecules",
        _graphormer,
    ),
    "gin": ("tests/test_modeling_gin.py::test_tiny_gin_overfits_64_qm9_molecules", _gin),
    "st_kd": (
        "tests/test_modeling_smiles_transformer.py::test_tiny_model_overfits_64_qm9_molecules[st_kd-...]",
        _smiles_transformer("st_kd"),
    ),
    "st_base": (
        "tests/test_modeling_smiles_transformer.py::test_tiny_model_overfits_64_qm9_molecules[st_base-...]",
        _smiles_transformer("st_base"),
    ),
}


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-")
            seeds.extend(range(int(low), int(high) + 1))
        else:
            seeds.append(int(part))
    return seeds


def summarize(runs: list[dict], key: str) -> str:
    """min / median / max, and the geometric mean and sd of log10: the ratios spread on a log scale, so a threshold
    sits `(log10(threshold) - mean) / sd` standard deviations from the typical run."""
    values = [run[key] for run in runs]
    worst = min(runs, key=lambda run: run[key])
    logs = [math.log10(value) for value in values]
    spread = statistics.stdev(logs) if len(logs) > 1 else float("nan")
    return (
        f"{key:>20}: min {min(values):7.2f} (seed {worst['seed']}, {worst['threads']} thread(s))  "
        f"median {statistics.median(values):7.2f}  max {max(values):7.2f}  "
        f"geometric mean {10 ** statistics.mean(logs):7.2f}  sd of log10 {spread:.3f}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,5-7 (default 0-9)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts")
    parser.add_argument("--tests", nargs="+", choices=sorted(MEASUREMENTS), default=list(MEASUREMENTS))
    parser.add_argument("--json", type=Path, help="write every run (and the versions) to this file")
    parser.add_argument(
        "--summarize", type=Path, nargs="+", metavar="JSON", help="only summarize earlier --json files, pooled"
    )
    args = parser.parse_args(argv)
    if args.summarize:
        pooled = {}
        for path in args.summarize:
            for name, runs in json.loads(path.read_text())["runs"].items():
                pooled.setdefault(name, []).extend(runs)
        for name, runs in pooled.items():
            print(f"== {name}: {len(runs)} runs from {len(args.summarize)} file(s)")
            for key in ("initial/final", "mean_predictor/final"):
                print(summarize(runs, key))
        return pooled
    seeds = parse_seeds(args.seeds)

    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    print(f"versions: {versions}; seeds {seeds}; threads {args.threads}", flush=True)
    results = {"versions": versions, "seeds": seeds, "threads": args.threads, "runs": {}}
    for name in args.tests:
        test, measure = MEASUREMENTS[name]
        runs = []
        for threads in args.threads:
            torch.set_num_threads(threads)
            for seed in seeds:
                start = time.perf_counter()
                initial, mean_predictor, final = measure(seed)
                run = {
                    "seed": seed,
                    "threads": threads,
                    "initial": initial,
                    "mean_predictor": mean_predictor,
                    "final": final,
                    "initial/final": initial / final,
                    "mean_predictor/final": mean_predictor / final,
                    "seconds": round(time.perf_counter() - start, 1),
                }
                runs.append(run)
                print(
                    f"{name} threads={threads} seed={seed}: initial {initial:.4f} mean_predictor {mean_predictor:.4f} "
                    f"final {final:.4f}  initial/final {run['initial/final']:.2f}  "
                    f"mean_predictor/final {run['mean_predictor/final']:.2f}  ({run['seconds']} s)",
                    flush=True,
                )
        results["runs"][name] = runs
        print(f"== {name}: {test}, {len(runs)} runs")
        for key in ("initial/final", "mean_predictor/final"):
            print(summarize(runs, key))
        if len(args.threads) > 1:
            for threads in args.threads:
                print(f"   {threads} thread(s):", summarize([run for run in runs if run["threads"] == threads], key))
        print(flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
