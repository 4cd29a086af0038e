"""benchmarks/screening_speed.py: medians, ratios and targets from run records, the report, and clear exits."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("screening_speed", ROOT / "benchmarks" / "screening_speed.py")
screening_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screening_speed)


def record(condition, row, size, seconds, rss=500.0):
    return {
        "condition": condition,
        "row": row,
        "size": size,
        "seconds": seconds,
        "peak_rss_mib": rss,
        "default_threads_at_start": 1,
    }


def test_summary_ratios_and_targets():
    n = 1000
    runs = []
    for condition, slow in (("quiet", 1.0), ("other core busy", 2.0)):
        for seconds in (2.0, 3.0, 100.0):  # the median ignores the outlier
            runs.append(record(condition, "qm9-gin default", "n", seconds * slow))
            runs.append(record(condition, "chemprop", "n", 3 * seconds * slow, rss=700.0))
            runs.append(record(condition, "tiny ST default", "n", 0.1 * seconds * slow))
        for seconds in (1.0, 1.0, 1.0):
            runs.append(record(condition, "qm9-gin default", "one", seconds))
            runs.append(record(condition, "chemprop", "one", seconds))
            runs.append(record(condition, "tiny ST default", "one", seconds))
    summary = screening_speed.summarize(runs, n)
    quiet = summary["quiet"]
    assert quiet["qm9-gin default"]["seconds"] == 3.0
    assert quiet["qm9-gin default"]["mol_per_s"] == pytest.approx(n / 3.0)
    assert quiet["qm9-gin default"]["after_startup_mol_per_s"] == pytest.approx(n / 2.0)
    assert quiet["tiny ST default"]["after_startup_mol_per_s"] is None  # 0.3 s is no more than its start-up

    imports = [{"seconds": seconds} for seconds in (0.5, 0.4, 9.0)]
    ratios, targets = screening_speed.evaluate(summary, [{"peak_rss_mib": 600.0, "rows": 10 * n}], imports, n)
    assert ratios["qm9-gin default / chemprop, whole process [quiet]"] == pytest.approx(3.0)
    # The stack's import time bounds every whole-process rate: n rows / the median import seconds.
    ceiling = ratios[f"whole-process mol/s ceiling at {n} rows: rows / stack import seconds [quiet]"]
    assert ceiling == pytest.approx(2000)
    assert ratios["qm9-gin default peak RSS, memory rows / N rows [quiet]"] == pytest.approx(1.2)
    met = {name: target["met"] for name, target in targets.items()}
    assert met["qm9-gin default >= 2x chemprop mol/s, whole process [quiet]"] is True
    assert met["qm9-gin default >= 2x chemprop mol/s, whole process [other core busy]"] is True
    assert met["tiny ST >= 5,000 mol/s, whole process [quiet]"] is False  # 1000 / 0.3 s
    assert met["peak RSS memory rows / N rows <= 1.5 [quiet]"] is True


def test_missing_rows_are_not_measured():
    summary = screening_speed.summarize([record("quiet", "qm9-gin default", "n", 2.0)], 100)
    ratios, targets = screening_speed.evaluate(summary, [], [], 100)
    assert ratios["whole-process mol/s ceiling at 100 rows: rows / stack import seconds [quiet]"] is None
    assert all(target["met"] is None for target in targets.values())


def test_missing_student_exits_with_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="make pretrained"):
        screening_speed.resolve_student("no-such-student")
    with pytest.raises(SystemExit, match="no config.json"):
        screening_speed.resolve_student(str(tmp_path))


def test_missing_chemprop_model_exits_unless_skipped(tmp_path):
    args = screening_speed.parse_args(["--chemprop", __file__, "--chemprop-model", str(tmp_path / "none.pt")])
    with pytest.raises(SystemExit, match="--skip-missing-chemprop"):
        screening_speed.resolve_chemprop(args)
    args.skip_missing_chemprop = True
    model, why = screening_speed.resolve_chemprop(args)
    assert model is None and "no chemprop model" in why


def test_count_output(tmp_path):
    ours = tmp_path / "ours.csv"
    ours.write_text("smiles,homo,error\nC,1.0,\nX,nan,invalid SMILES\n")
    chem = tmp_path / "chem.csv"
    chem.write_text("smiles,homo\nC,1.0\nCC,\n")
    assert screening_speed.count_output(ours) == {"rows": 2, "failed": 1}
    assert screening_speed.count_output(chem) == {"rows": 2, "failed": 1}
