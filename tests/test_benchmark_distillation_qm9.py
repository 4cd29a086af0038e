"""benchmarks/distillation_qm9.py: row definitions, presets, data split, learning curves and a smoke run."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import yaml
from datasets import Dataset

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("distillation_qm9", ROOT / "benchmarks" / "distillation_qm9.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_row_resolves_against_every_preset(preset):
    config = bench.load_preset(preset)
    rows = bench.load_rows(models=config["models"])
    parameters = {**config["parameters"], "ccmd_search_weight": 0.01}
    names = [row["name"] for row in rows]
    assert {"teacher_3d", "graphormer_2d", "gin", "st_base", "st_kd"} <= set(names)
    for row in rows:
        resolved = bench.resolve(row, parameters)
        assert "@" not in json.dumps(resolved), row["name"]
    # The same training budget for every student: the rows add no TrainingArguments of their own.
    assert all(set(row) <= {"name", "label", "tables", "kind", "model", "teacher", "objectives",
                            "initial_stage_epochs", "initial_stage_weights"} for row in rows)


def test_select_rows_adds_teachers_first_and_rejects_unknown_names():
    rows = bench.load_rows()
    selected = bench.select_rows(rows, ["gin_lm", "gin"])
    assert [row["name"] for row in selected] == ["teacher_3d", "gin", "gin_lm"]
    with pytest.raises(ValueError, match="unknown rows \\['nope'\\]"):
        bench.select_rows(rows, ["nope"])


def test_load_rows_reports_the_bad_row(tmp_path):
    path = tmp_path / "rows.yaml"
    path.write_text(yaml.safe_dump({"rows": [
        {"name": "a", "label": "A", "kind": "distill", "model": "gin", "tables": ["ccmd_gin"],
         "teacher": "later", "objectives": {"task": {}}},
    ]}))
    with pytest.raises(ValueError, match=r"row 0 \('a'\): teacher 'later' must name an earlier row"):
        bench.load_rows(path)


def test_resolve_replaces_parameters_and_names_missing_ones():
    assert bench.resolve({"a": ["@w", 1], "b": "@w"}, {"w": 0.5}) == {"a": [0.5, 1], "b": 0.5}
    with pytest.raises(ValueError, match="no parameter 'missing'"):
        bench.resolve("@missing", {"w": 1})


def test_mean_inverse_square_atoms_by_hand():
    train = Dataset.from_dict({"pos": [[[0.0, 0.0, 0.0]] * 2, [[0.0, 0.0, 0.0]] * 4]})
    assert bench.mean_inverse_square_atoms(train) == pytest.approx((1 / 4 + 1 / 16) / 2)


def test_learning_curve_groups_logs_by_epoch(tmp_path):
    history = [
        {"loss": 1.0, "task": 0.9, "ccmd_global": 0.2, "ccmd_local": 0.1, "epoch": 0.5, "step": 2},
        {"loss": 0.8, "task": 0.7, "ccmd_global": 0.1, "ccmd_local": 0.1, "epoch": 1.0, "step": 4},
        {"eval_gap_mae": 0.6, "eval_loss": 0.5, "epoch": 1.0, "step": 4},
        {"loss": 0.6, "task": 0.5, "ccmd_global": 0.05, "ccmd_local": 0.05, "epoch": 1.5, "step": 6},
        {"eval_gap_mae": 0.4, "eval_loss": 0.3, "epoch": 2.0, "step": 8},
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    curve = bench.learning_curve(tmp_path, "gap")
    assert curve["epoch"] == [1, 2]
    assert curve["validation_mae"] == [0.6, 0.4]
    assert curve["train_task_loss"] == pytest.approx([0.8, 0.5])
    assert curve["train_distillation_loss"] == pytest.approx([0.25, 0.1])


def test_load_split_embedded_is_seeded_and_disjoint():
    data = {"source": "qm9_embedded", "label": "gap", "split_seed": 3, "sizes": [40, 10, 10]}
    first, again = bench.load_split(data), bench.load_split(data)
    assert {name: len(split) for name, split in first.items()} == {"train": 40, "validation": 10, "test": 10}
    assert first["train"]["mol_id"] == again["train"]["mol_id"]
    ids = [set(split["mol_id"]) for split in first.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    with pytest.raises(ValueError, match="data.sizes \\(train\\)"):
        bench.load_split({**data, "sizes": [10**6, 1, 1]})


def test_smoke_preset_two_rows_end_to_end_and_resume(tmp_path):
    argv = ["--preset", "smoke", "--seeds", "0", "--rows", "gin", "gin_lm_la_inv_n", "--work-dir", str(tmp_path)]
    report = bench.main(argv)
    results = json.loads((tmp_path / "distillation_qm9_smoke.json").read_text())
    assert results["seeds"] == [0]
    assert [run["row"] for run in results["runs"]] == ["teacher_3d", "gin", "gin_lm_la_inv_n"]
    for run in results["runs"]:
        assert math.isfinite(run["test_mae"]) and run["test_mae"] > 0
        assert run["test_count"] == 64
        assert run["wall_s"] > 0
        assert run["learning_curve"]["epoch"] == [1, 2]
        assert all(math.isfinite(v) for v in run["learning_curve"]["validation_mae"])
    distilled = results["runs"][2]
    assert distilled["config"]["teacher_name_or_path"].endswith("seed0/teacher_3d/teacher")
    assert distilled["config"]["objectives"]["ccmd"]["student_kind"] == "gin"
    assert all(v > 0 for v in distilled["learning_curve"]["train_distillation_loss"])
    assert results["machine"]["cpu_count"] >= 1
    markdown = (tmp_path / "distillation_qm9_smoke.md").read_text()
    assert "CCMD Table IV shape" in markdown
    assert f"{report['summary']['gin_lm_la_inv_n']['test_mae_mean']:.4f}" in markdown
    assert (tmp_path / "distillation_qm9_smoke_ccmd_gin.png").stat().st_size > 1000

    # A second call finds every row + seed done: nothing is retrained, the numbers are the same.
    rerun = bench.main(argv)
    assert [r["test_mae"] for r in rerun["runs"]] == [r["test_mae"] for r in results["runs"]]
