"""benchmarks/gnn_kd.py: rows named by their settings, interrupted rows resuming, finished ones skipped."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from transformers import TrainerCallback

from molformer_kd.distillation.checkpoints import last_complete_checkpoint

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gnn_kd", ROOT / "benchmarks" / "gnn_kd.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)

TINY = {"hidden_size": 8, "num_layers": 1, "num_rbf": 8, "cutoff": 4.0, "force_loss_weight": 10.0}


def tiny_options(tmp_path, *arguments):
    """A PaiNN -> PaiNN pair of width 8 on the shipped sample: 4 steps, validated and saved every 2."""
    config = {
        "teacher_config": {"model_type": "molformer_painn", **TINY},
        "student_config": {"model_type": "molformer_painn", **TINY},
        "seed": 0,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "learning_rate": 1e-3,
        "max_steps": 4,
        "logging_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 2,
        "save_strategy": "steps",
        "save_steps": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": "task_loss",
        "greater_is_better": False,
    }
    path = tmp_path / "tiny_pair.yaml"
    path.write_text(yaml.safe_dump(config))
    work, output = str(tmp_path / "work"), str(tmp_path / "report")
    return bench.parse_options(
        ["--configs", str(path), "--objectives", "n2n", "--throughput-samples", "16", "--work-dir", work]
        + ["--output", output, *arguments]
    )


def test_the_default_plan_is_the_committed_toy_run():
    teachers, pairs = bench.plan(bench.parse_options([]))
    assert len(teachers) == 1 and all(pair.teacher is teachers[0] for pair in pairs)  # one teacher, trained once
    assert [[row.model for row in pair.rows] for pair in pairs] == [
        ["student alone", "vanilla1", "vanilla2", "n2n", "e2n", "v2v"],
        ["student alone", "vanilla1", "vanilla2", "n2n", "e2n"],
    ]
    assert {row.seed for pair in pairs for row in pair.rows} == {0}
    assert teachers[0].settings["training"]["max_steps"] == 600
    assert all(row.settings["training"]["max_steps"] == 300 for pair in pairs for row in pair.rows)


def test_rows_are_named_by_their_settings(tmp_path):
    teachers, pairs = bench.plan(tiny_options(tmp_path, "--seeds", "0", "1"))
    rows = bench.rows_by_seed(pairs)
    assert [(row.model, row.seed) for row in rows] == [
        ("student alone", 0),
        ("n2n", 0),
        ("student alone", 1),
        ("n2n", 1),
    ]
    assert len({row.folder for row in rows}) == 4
    _, again_pairs = bench.plan(tiny_options(tmp_path, "--seeds", "0", "1"))
    assert [row.folder for row in bench.rows_by_seed(again_pairs)] == [row.folder for row in rows]
    longer_teachers, longer_pairs = bench.plan(tiny_options(tmp_path, "--seeds", "0", "1", "--epochs", "2"))
    assert longer_teachers[0].folder == teachers[0].folder  # the students' budget is not the teacher's
    assert not {row.folder for row in bench.rows_by_seed(longer_pairs)} & {row.folder for row in rows}
    # A budget names the same rows however it is spelled: a config's epochs or --epochs over a config's steps.
    assert bench.training_values({"num_train_epochs": 3}, 0) == bench.training_values({"max_steps": 300}, 0, epochs=3.0)


class Killed(Exception):
    pass


class KillAtStep(TrainerCallback):
    """Stands for a kill -9 after the checkpoint of step 2; sleeps first so that the lost run has measurable time."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            time.sleep(1.0)
        if state.global_step == 3:
            raise Killed


class StepCounter(TrainerCallback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def test_an_interrupted_row_resumes_and_a_finished_row_is_skipped(tmp_path, monkeypatch):
    options = tiny_options(tmp_path)
    teachers, pairs = bench.plan(options)
    alone = pairs[0].rows[0]
    sweep = bench.Sweep(options)
    sweep.run(teachers[0])
    train_and_export = bench.train_and_export

    def with_callback(callback):
        def train(*arguments, callbacks, **kwargs):
            return train_and_export(*arguments, callbacks=[*callbacks, callback], **kwargs)

        return train

    monkeypatch.setattr(bench, "train_and_export", with_callback(KillAtStep()))
    with pytest.raises(Killed):
        sweep.run(alone)
    assert not alone.result_path.exists()
    checkpoint = Path(last_complete_checkpoint(alone.folder))
    assert checkpoint.name == "checkpoint-2"
    saved_seconds = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]
    saved_seconds = saved_seconds["TrainingClock"]["args"]["seconds"]
    assert saved_seconds > 1.0

    counter = StepCounter()
    monkeypatch.setattr(bench, "train_and_export", with_callback(counter))
    sweep.run(alone)
    assert counter.steps == 2  # steps 3 and 4: resumed from checkpoint-2, not restarted
    entry = alone.result()
    assert entry["global_step"] == 4
    assert entry["train_seconds"] > saved_seconds  # the first run's time is counted
    assert entry["best_checkpoint"]["metric"] == "eval_task_loss"
    assert entry["speedup_vs_teacher"] > 0

    def must_not_train(*arguments, **kwargs):
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr(bench, "train_and_export", must_not_train)
    sweep.run(alone)
    results = bench.report(options, teachers, pairs)
    assert (results["rows_finished"], results["rows_planned"]) == (2, 3)
    assert "Rows finished / planned: 2 / 3" in bench.markdown(results)


def test_seed_summary_and_gap_closed():
    entries = [
        {"model": "n2n", "kd_weight": 100.0, "parameters": 10, "energy_mae_meV": 10.0, "force_cos": 0.8},
        {"model": "n2n", "kd_weight": 100.0, "parameters": 10, "energy_mae_meV": 14.0, "force_cos": 0.9},
    ]
    summary = bench.summarize(entries)
    assert summary["seeds"] == 2
    assert summary["energy_mae_meV"] == pytest.approx(12.0)
    assert summary["energy_mae_meV_sd"] == pytest.approx(2.0**1.5)  # sample standard deviation of 10 and 14
    summary["gap_closed"] = {"energy_mae_meV": 0.5}
    assert bench.cell(summary, "energy_mae_meV", ".1f") == "12.0 ± 2.8 (+50.0%)"
    assert bench.cell(bench.summarize(entries[:1]), "force_cos", ".2f") == "0.80"


def test_the_report_json_is_the_ledger_a_new_clone_resumes_from(tmp_path, monkeypatch):
    options = tiny_options(tmp_path, "--seeds", "0")
    teachers, pairs = bench.plan(options)
    sweep = bench.Sweep(options)
    for row in teachers + bench.rows_by_seed(pairs):
        sweep.run(row)
    first = bench.write_report(options, teachers, pairs)
    assert first["rows_finished"] == 3

    def must_not_train(*arguments, **kwargs):
        raise AssertionError("a row of the ledger was trained again")

    # A new clone (another work dir), the same report: every row is restored, nothing trains, the report is the same.
    again = tiny_options(tmp_path, "--seeds", "0", "--work-dir", str(tmp_path / "clone"))
    teachers, pairs = bench.plan(again)
    assert all(row.result() is not None for row in teachers + bench.rows_by_seed(pairs))
    monkeypatch.setattr(bench, "train_and_export", must_not_train)
    for row in teachers + bench.rows_by_seed(pairs):
        bench.Sweep(again).run(row)
    assert not (tmp_path / "clone").exists()
    restored = bench.report(again, teachers, pairs)
    assert [m["energy_mae_meV"] for p in restored["pairs"] for m in p["models"]] == [
        m["energy_mae_meV"] for p in first["pairs"] for m in p["models"]
    ]

    # A second seed to train on that clone needs the trained teacher's model, which is not there: it trains again;
    # seed 0's students stay restored.
    more = tiny_options(tmp_path, "--seeds", "0", "1", "--work-dir", str(tmp_path / "clone"))
    teachers, pairs = bench.plan(more)
    assert teachers[0].result() is None
    assert [row.result() is not None for row in bench.rows_by_seed(pairs)] == [True, True, False, False]


def test_the_student_alone_trains_while_the_teacher_is_still_training(tmp_path):
    unfinished_teacher = tmp_path / "teacher"  # distill.py's output folder before the teacher stage exports
    unfinished_teacher.mkdir()
    with pytest.raises(SystemExit, match="student alone"):
        bench.plan(tiny_options(tmp_path, "--teacher", str(unfinished_teacher)))

    options = tiny_options(tmp_path, "--teacher", str(unfinished_teacher), "--objectives", "student alone")
    teachers, pairs = bench.plan(options)
    assert teachers == [] and [row.model for row in pairs[0].rows] == ["student alone"]
    # The same row, under the same ledger key, as in a sweep with a teacher; a distilled row is keyed by its teacher.
    _, full_pairs = bench.plan(tiny_options(tmp_path))
    assert pairs[0].rows[0].ledger_key == full_pairs[0].rows[0].ledger_key
    assert "teacher" not in full_pairs[0].rows[0].settings and "teacher" in full_pairs[0].rows[1].settings

    alone = pairs[0].rows[0]
    bench.Sweep(options).run(alone)
    entry = alone.result()
    assert entry["global_step"] == 4 and entry["energy_mae_meV"] > 0
    assert "speedup_vs_teacher" not in entry  # nothing to time against yet
    results = bench.write_report(options, teachers, pairs)
    assert (results["rows_finished"], results["rows_planned"]) == (1, 1)
    assert "| student alone |" in bench.markdown(results)
