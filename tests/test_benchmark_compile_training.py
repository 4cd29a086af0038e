"""benchmarks/compile_training.py: every run trains and is timed, and the report pairs eager with compiled runs."""

import importlib.util
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("compile_training", ROOT / "benchmarks" / "compile_training.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)


def test_every_run_trains_eagerly_and_the_report_pairs_rounds(tmp_path):
    """The eager runs, for real (the compiled ones take minutes of inductor on CPU: the benchmark's own run); the
    summary's speed-up is the median of the within-round ratios, not a ratio of medians."""
    bench.write_teacher_cache(3, 4, tmp_path)
    for run in bench.RUNS:
        measured = bench.child(run, "eager", warmup=1, steps=2, batch_size=4, work=tmp_path)
        assert measured["step_s"] > 0 and measured["first_steps_s"] > 0 and math.isfinite(measured["last_loss"])
        assert measured["dynamic"] is None

    def timing(step_s):
        return {"step_s": step_s, "first_steps_s": 1.0, "last_loss": 2.0, "dynamic": True}

    # Round ratios 2.0, 1.0 and 1.5 (median 1.5); the ratio of the median steps would be 0.3 / 0.2.
    measured = {
        "painn_small": {
            "eager": [timing(0.2), timing(0.3), timing(0.3)],
            "compile": [timing(0.1), timing(0.3), timing(0.2)],
        }
    }
    summary = bench.summarize(measured)["painn_small"]
    assert math.isclose(summary["speedup_compile_vs_eager"], 1.5)
    assert math.isclose(summary["compile"]["ms_per_step_median"], 200.0)
    result = {
        "command": "python benchmarks/compile_training.py",
        "environment": {"cpu": "x86_64", "torch": "2"},
        "setup": {"rows": 10, "batch_size": 4, "timed_steps": 2, "warmup_steps": 1, "rounds": 3},
        "summary": {"painn_small": summary},
        "wall_seconds": 1.0,
    }
    assert "| painn_small | 300.0 | 200.0 | **1.50x** | 1.0 / 1.0 / - | 2 / 2 |" in bench.markdown(result)
