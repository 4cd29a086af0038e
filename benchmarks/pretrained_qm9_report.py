"""Report of the runs behind the shipped QM9 students (`make pretrained`): teachers, students and chemprop side by side.

A set of runs is `configs/<set>/*.yaml` trained into `runs/<set>/` (`make pretrained PRETRAINED_SET=<set>`):
`pretrained` (QM9 random 20,000 / 2,000 / 5,000, seed 0; what ships today) or `pretrained_pool` (the whole QM9
training pool). Within a set every row was trained on the same split (read from the set's qm9_teacher.yaml) for the
same three targets (HOMO, LUMO, gap in eV) and picked its checkpoint on validation gap MAE. The script reads what the
runs wrote (`runs/<set>/<run>/<stage>/trainer_state.json`, `.../evaluate/metrics.json`) and the chemprop peer report
of benchmarks/chemprop_qm9.py (`benchmarks/results/chemprop_qm9_<set>.json`); it trains nothing. Rows whose run is
missing are listed as missing.

    python benchmarks/pretrained_qm9_report.py            # -> benchmarks/results/pretrained_qm9.{json,md}
    python benchmarks/pretrained_qm9_report.py --set pretrained_pool   # -> benchmarks/results/pretrained_pool_qm9.*

The report ends with the targets of issue #16 that these rows measure (`ISSUE_TARGETS`), each met or not.

Ratios are the figures to read (all rows ran on the same 2-core machine, sharing it with each other).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("homo", "lumo", "gap")
# Issue #16's targets that these rows measure: (name, numerator row, denominator row, threshold, strict), met when
# the test gap MAE ratio is below (strict) or at most the threshold. "best teacher", "best 2D" and "best distilled"
# are the rows with the lowest test gap MAE among the 3D teachers, the 2D models trained alone (chemprop included) and
# the students.
ISSUE_TARGETS = (
    ("3D teacher <= 0.6 x the best 2D model trained alone", "best teacher", "best 2D", 0.6, False),
    ("CCMD GIN beats the GIN trained alone", "gin_ccmd", "gin_alone", 1.0, True),
    ("ST-KD >= 20% better than the SMILES Transformer alone", "st_kd", "st_alone", 0.8, False),
    ("best distilled student >= 10% better than chemprop at its defaults", "best distilled", "chemprop", 0.9, False),
)
# Rows that trained on more molecules than the split's labeled ones: said beside every target they decide.
EXTRA_DATA_ROWS = {
    "gin_prediction_painn": "it also trained on 103,829 molecules outside the split: their SMILES, and the teacher's "
    "predictions from their DFT coordinates, never their labels; chemprop and the GIN alone had the labeled rows only",
}
CURVE_EPOCHS = (1, 2, 4, 6, 8, 10, 12, 15, 18, 20, 25, 30, 35, 40)

# name, label, training stage folder (under runs/pretrained), role
ROWS = (
    ("teacher_2d3d", "Graphormer teacher, graph + DFT coordinates (geometry 2d+3d)", "teacher/teacher", "teacher"),
    # Stopped at epoch 18 of 40 for the 2d+3d teacher; its test row is the epoch-18 weights (lr not annealed).
    ("teacher_3d", "Graphormer teacher, DFT coordinates only (geometry 3d)", "teacher_3d/teacher", "teacher"),
    ("teacher_painn", "PaiNN teacher, every atom (hydrogens included)", "qm9_painn_teacher/teacher", "teacher"),
    ("teacher_painn_heavy", "PaiNN teacher, heavy atoms only", "qm9_painn_heavy_teacher/teacher", "teacher"),
    ("gin_alone", "GIN 5 x 128 trained alone", "qm9_gin_alone/finetune", "2d"),
    ("gin_ccmd", "GIN 5 x 128 distilled with CCMD", "qm9_gin/distill", "student"),
    ("gin_ccmd_painn", "GIN 5 x 128 distilled (CCMD L_m) from the all-atom PaiNN", "qm9_gin_painn/distill", "student"),
    (
        "gin_ccmd_painn_heavy",
        "GIN 5 x 128 distilled (CCMD L_m) from the heavy-atom PaiNN",
        "qm9_gin_painn_heavy/distill",
        "student",
    ),
    (
        "gin_prediction_painn_labeled",
        "GIN 5 x 128 taught by the all-atom PaiNN's predictions, labeled rows only",
        "qm9_gin_painn_prediction/distill",
        "student",
    ),
    # The one row that also trains on molecules outside the split (their SMILES, and the teacher's predictions from
    # their DFT coordinates; never their labels): configs/pretrained/qm9_gin_painn_unlabeled.yaml.
    (
        "gin_prediction_painn",
        "GIN 5 x 128 taught by the all-atom PaiNN's predictions, on the labeled rows + 103,829 unlabeled molecules",
        "qm9_gin_painn_unlabeled/distill",
        "student",
    ),
    (
        "gin_wide",
        "GIN 5 x 256 taught by the heavy-atom PaiNN's predictions, 40 epochs",
        "qm9_gin_wide/distill",
        "student",
    ),
    ("gin_wide_alone", "GIN 5 x 256 trained alone, 40 epochs", "qm9_gin_wide_alone/finetune", "2d"),
    ("st_alone", "SMILES Transformer 2+2 x 128 trained alone", "qm9_smiles_transformer_alone/finetune", "2d"),
    ("st_kd", "SMILES Transformer distilled with ST-KD", "qm9_smiles_transformer/distill", "student"),
)


def _trainer_state(stage_dir: Path) -> dict | None:
    """The stage's final trainer state, or the newest checkpoint's for a run that was stopped early."""
    final = stage_dir / "trainer_state.json"
    if final.is_file():
        return json.loads(final.read_text())
    checkpoints = sorted(stage_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name[11:]))
    return json.loads(checkpoints[-1].read_text()) if checkpoints else None


def _row(runs: Path, name: str, label: str, stage: str, role: str) -> dict:
    stage_dir = runs / stage
    row = {"name": name, "label": label, "role": role, "stage_dir": str(stage_dir.relative_to(ROOT))}
    state = _trainer_state(stage_dir)
    if state is None:
        return {**row, "missing": True}
    history = state["log_history"]
    curve = {round(e["epoch"]): e["eval_gap_mae"] for e in history if "eval_gap_mae" in e}
    best_epoch = min(curve, key=curve.get) if curve else None
    train = stage_dir / "train_results.json"
    metrics = stage_dir.parent / "evaluate" / "metrics.json"
    test = json.loads(metrics.read_text())["metrics"]["test"] if metrics.is_file() else None
    return {
        **row,
        "missing": False,
        "finished": train.is_file(),
        "epochs_run": max(curve) if curve else 0,
        "epochs_planned": state.get("num_train_epochs"),
        "best_epoch": best_epoch,
        "validation_gap_mae_curve": curve,
        **_training_minutes(train),
        "test": {t: test[f"{t}_mae"] for t in TARGETS} if test else None,
    }


def _training_minutes(train_results: Path) -> dict:
    """The stage's training wall time: summed over every run it took (`train_wall_s`), or, for runs trained before
    the stage kept that clock, the last run's `train_runtime`, which misses the runs it resumed (flagged)."""
    if not train_results.is_file():
        return {"train_minutes": None, "train_minutes_last_run_only": False}
    results = json.loads(train_results.read_text())
    if "train_wall_s" in results:
        return {"train_minutes": results["train_wall_s"] / 60, "train_minutes_last_run_only": False}
    return {"train_minutes": results["train_runtime"] / 60, "train_minutes_last_run_only": True}


def shipped_from() -> dict[str, str]:
    """Shipped model name by the training-stage folder it was shipped from (molformer_kd/pretrained/*/provenance)."""
    shipped = {}
    for provenance in sorted((ROOT / "molformer_kd" / "pretrained").glob("*/provenance.json")):
        source = json.loads(provenance.read_text())["source"]["student"]
        shipped[Path(source).as_posix()] = provenance.parent.name
    return shipped


def _chemprop_row(report: Path) -> dict:
    row = {"name": "chemprop", "label": "chemprop v2 D-MPNN, CLI defaults", "role": "2d"}
    if not report.is_file():
        return {**row, "missing": True}
    data = json.loads(report.read_text())
    test, budget = data["test_metrics"], data["budget"]
    return {
        **row,
        "missing": False,
        "finished": True,
        "epochs_run": budget["epochs_run"],
        "epochs_planned": budget["max_epochs"],
        "best_epoch": budget["best_epoch"],
        "validation_gap_mae_curve": {},
        "train_minutes": budget["train_wall_s"] / 60,
        "test": {t: test[f"{t}_mae"] for t in TARGETS},
        "source": str(report.relative_to(ROOT)),
    }


def _ratio(rows: dict, numerator: str, denominator: str, target: str = "gap") -> float | None:
    a, b = rows.get(numerator, {}).get("test"), rows.get(denominator, {}).get("test")
    return a[target] / b[target] if a and b else None


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    rows = report["rows"]
    lines = [
        "# The runs behind the shipped QM9 students",
        "",
        f"`{report['command']}` on {report['machine']}, commit {report['commit']}.",
        "",
        f"One split ({report['split']}), three targets learned jointly, every row's checkpoint picked on validation "
        f"gap MAE. Test MAE in eV on the {report['test_molecules']:,} test molecules; one training seed.",
        "",
        "| row | HOMO | LUMO | gap | best epoch / epochs | train min | shipped as |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        if row["missing"]:
            lines.append(f"| {row['label']} (`{row['name']}`) | not run | | | | | |")
            continue
        test = row["test"] or {}
        epochs = f"{row['best_epoch']} / {row['epochs_run']}"
        if not row["finished"]:
            epochs += f" (stopped; {row['epochs_planned']} planned)"
        lines.append(
            f"| {row['label']} (`{row['name']}`) | {_fmt(test.get('homo'))} | {_fmt(test.get('lumo'))} | "
            f"{_fmt(test.get('gap'))} | {epochs} | {_fmt(row['train_minutes'], 1)}"
            f"{'*' if row.get('train_minutes_last_run_only') else ''} | "
            f"{'`' + row['shipped_as'] + '`' if row.get('shipped_as') else ''} |"
        )
    if any(row.get("train_minutes_last_run_only") for row in rows.values()):
        lines += [
            "",
            "\\* the stage's last run only (`train_runtime`): where the stage was resumed, the runs before are "
            "missing. These stages trained before distill.py kept a wall-time total over resumes (`train_wall_s`).",
        ]
    lines += ["", "## Ratios (test gap MAE)", ""]
    for name, value in report["ratios"].items():
        lines.append(f"- {name}: {_fmt(value, 3)}")
    lines += ["", "## Targets (issue #16, test gap MAE ratios)", ""]
    for name, target in report["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        lines.append(f"- {name} (`{target['rows']}`): {_fmt(target['ratio'], 3)} -> **{verdict}**")
        numerator = target["rows"].split(" / ")[0]
        if numerator in EXTRA_DATA_ROWS:
            lines.append(f"  (`{numerator}`: {EXTRA_DATA_ROWS[numerator]})")
    curves = {name: row for name, row in rows.items() if row.get("validation_gap_mae_curve")}
    if curves:
        lines += ["", "## Validation gap MAE by epoch", "", "| epoch | " + " | ".join(curves) + " |"]
        lines.append("|---" * (len(curves) + 1) + "|")
        for epoch in CURVE_EPOCHS:
            cells = [_fmt(row["validation_gap_mae_curve"].get(epoch)) for row in curves.values()]
            if any(cell != "-" for cell in cells):
                lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def split_of(config: Path) -> tuple[str, int]:
    """The split a set's runs share, as a phrase, and its number of test molecules (from its qm9_teacher.yaml)."""
    split = yaml.safe_load(config.read_text())["split"]
    train, validation, test = split["sizes"]
    return f"QM9 {split['kind']} {train:,} / {validation:,} / {test:,} molecules, seed {split['seed']}", test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="pretrained", help="configs/SET/*.yaml trained into runs/SET/")
    parser.add_argument("--runs", type=Path, default=None, help="default runs/SET")
    parser.add_argument("--chemprop", type=Path, default=None, help="default benchmarks/results/chemprop_qm9_SET.json")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/SET_qm9")
    args = parser.parse_args()
    args.runs = args.runs or ROOT / "runs" / args.set
    args.chemprop = args.chemprop or ROOT / "benchmarks" / "results" / f"chemprop_qm9_{args.set}.json"
    args.out = args.out or ROOT / "benchmarks" / "results" / f"{args.set}_qm9"
    split, test_molecules = split_of(ROOT / "configs" / args.set / "qm9_teacher.yaml")
    rows = {name: _row(args.runs, name, label, stage, role) for name, label, stage, role in ROWS}
    shipped = shipped_from()
    for row in rows.values():
        row["shipped_as"] = shipped.get(row.get("stage_dir", ""))
    rows["chemprop"] = _chemprop_row(args.chemprop)
    best = {
        label: min(
            (name for name, row in rows.items() if row["role"] == role and row.get("test")),
            key=lambda name: rows[name]["test"]["gap"],
            default=None,
        )
        for label, role in (("best teacher", "teacher"), ("best 2D", "2d"), ("best distilled", "student"))
    }
    best_2d = best["best 2D"]
    teachers = [name for name, row in rows.items() if row["role"] == "teacher" and row.get("test")]
    ratios = {
        **{f"{name} / best 2D model trained alone ({best_2d})": _ratio(rows, name, best_2d) for name in teachers},
        "CCMD GIN / GIN alone": _ratio(rows, "gin_ccmd", "gin_alone"),
        "ST-KD / SMILES Transformer alone": _ratio(rows, "st_kd", "st_alone"),
        "GIN taught by PaiNN predictions (+ unlabeled molecules) / GIN alone": _ratio(
            rows, "gin_prediction_painn", "gin_alone"
        ),
        "GIN taught by PaiNN predictions (+ unlabeled molecules) / chemprop": _ratio(
            rows, "gin_prediction_painn", "chemprop"
        ),
        "GIN taught by PaiNN predictions, labeled rows only / chemprop": _ratio(
            rows, "gin_prediction_painn_labeled", "chemprop"
        ),
        "GIN 5 x 256 taught by PaiNN predictions / the same GIN alone": _ratio(rows, "gin_wide", "gin_wide_alone"),
        "GIN 5 x 256 taught by PaiNN predictions / chemprop": _ratio(rows, "gin_wide", "chemprop"),
        "CCMD GIN / chemprop": _ratio(rows, "gin_ccmd", "chemprop"),
        "ST-KD / chemprop": _ratio(rows, "st_kd", "chemprop"),
    }
    targets = {}
    for name, numerator, denominator, threshold, strict in ISSUE_TARGETS:
        numerator, denominator = best.get(numerator, numerator), best.get(denominator, denominator)
        value = _ratio(rows, numerator or "", denominator or "")
        met = None if value is None else (value < threshold if strict else value <= threshold)
        targets[name] = {"ratio": value, "threshold": threshold, "rows": f"{numerator} / {denominator}", "met": met}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    report = {
        "command": "python benchmarks/pretrained_qm9_report.py"
        + ("" if args.set == "pretrained" else f" --set {args.set}"),
        "split": split,
        "test_molecules": test_molecules,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "commit": commit.stdout.strip(),
        "rows": rows,
        "ratios": ratios,
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
