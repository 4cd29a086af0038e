"""Ship a trained student inside the package: `molformer_kd/pretrained/<name>/`, loadable by name (`qm9-gin`).

    python scripts/ship_pretrained.py --config configs/pretrained/qm9_gin.yaml --name qm9-gin \
        --compare chemprop=benchmarks/results/chemprop_qm9_pretrained.json

`make pretrained` runs it after training each shipped config. From the run's config (the one distill.py trained the
student with) it reloads the run's data split, then, measured here rather than copied from the run:

1. the applicability domain of the training split, stored in the shipped config.json (`applicability_domain`);
2. the test metrics of the student on the whole test split, predicted through the `molecular-property-prediction`
   pipeline exactly as a user would (and checked against the run's own evaluate stage when it tested this student);
3. a parity plot (one panel per label) and the model card (data, split, teacher, test metrics beside the
   `--compare` models' on the same split, intended use, applicability domain, limits);
4. `test_sample.csv`: a seeded sample of the test split (`--sample-size` molecules, SMILES, targets and the
   predictions made here), with its metrics in provenance.json; tests/test_pretrained.py reloads the shipped model
   offline and checks it still predicts them (`molformer_kd.pipelines.check_shipped_sample`);
5. `provenance.json`: the git commit (and whether the tree had changes), the config's path and text, the data and
   split (sizes, a hash of the test ids), the stage marker of the trained student, the metrics, the comparison, the
   domain and the files' sizes and sha256.

Only safetensors weights are shipped (a student folder with pickle weights only is refused), and the weights must fit
`--max-mb`. The folder is assembled beside the destination and swapped in whole, so a failed run leaves the shipped
model as it was. A `--compare` file is a distill.py evaluate `metrics.json`, the report of benchmarks/chemprop_qm9.py
(or another file of test metrics, `read_metrics`); its `<label>_count` must match this test split's. The card's
`teacher` row is the shipped student's own teacher, from the `evaluate` stage of the run that trained it
(`{teacher run}/evaluate/metrics.json`), unless `--compare teacher=FILE` names another file.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Units of the QM9 labels as the loaders give them (molformer_kd/data/qm9.py).
QM9_UNITS = {"gap": "eV", "homo": "eV", "lumo": "eV", "u0": "eV", "mu": "D"}
STUDENT_STAGES = ("finetune", "distill")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from molformer_kd.data.pretrained import PRETRAINED_DIR

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        required=True,
        action="append",
        help="the run config that trained the student (YAML or JSON); repeated: candidates, the one with the best "
        "validation metric ships and the others become comparison rows",
    )
    parser.add_argument("--name", required=True, help="shipped name, e.g. qm9-gin (also molformer-kd/<name>)")
    parser.add_argument(
        "--student", default=None, help="student folder (default: the config's output_dir/finetune or /distill)"
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=FILE",
        help="test metrics of another model on the same split (repeat), e.g. teacher=runs/x/evaluate/metrics.json",
    )
    parser.add_argument("--teacher", default=None, help="teacher folder (default: from the config)")
    parser.add_argument("--description", default=None, help="one paragraph for the card (default: generated)")
    parser.add_argument("--sample-size", type=int, default=200, help="test molecules in test_sample.csv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test sample")
    parser.add_argument("--destination", default=str(PRETRAINED_DIR), help="folder of the shipped models")
    parser.add_argument("--max-mb", type=float, default=8.0, help="largest safetensors weights to ship (MB)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if not args.name or "/" in args.name or args.name.startswith("."):
        parser.error(f"--name {args.name!r}: a plain name such as qm9-gin")
    if args.sample_size < 1:
        parser.error("--sample-size must be >= 1")
    if len(args.config) > 1 and args.student is not None:
        parser.error("--student names one student: give one --config with it")
    return args


def pick_on_validation(config_paths: list[Path], student: str | None) -> tuple[Path, list[str], str | None]:
    """The candidate run whose exported student has the best validation metric (the checkpoint metric its
    `load_best_model_at_end` picked on, from the stage marker), the others' evaluate metrics as `--compare` specs
    (`<config stem>=<its evaluate metrics.json>`) and a sentence for the card saying how the pick was made."""
    from molformer_kd.distillation.checkpoints import read_stage_marker
    from molformer_kd.distillation.config import read_config

    if len(config_paths) == 1:
        return config_paths[0], [], None
    scores = {}
    for path in config_paths:
        values = read_config(path)
        marker = read_stage_marker(student_dir_of(values, student)) or {}
        best = (marker.get("summary") or {}).get("best_checkpoint")
        if not best:
            raise SystemExit(f"{path}: its student has no best-checkpoint record; train it with load_best_model_at_end")
        scores[path] = best
    metrics = {best["metric"] for best in scores.values()}
    if len(metrics) != 1:
        raise SystemExit(f"the candidates were picked on different metrics {sorted(metrics)}: not comparable")
    greater = next(iter(scores.values()))["greater_is_better"]
    chosen = (max if greater else min)(scores, key=lambda path: scores[path]["value"])
    others = [path for path in config_paths if path != chosen]
    compare = [f"{path.stem}={Path(read_config(path)['output_dir']) / 'evaluate' / 'metrics.json'}" for path in others]
    ranking = ", ".join(f"`{path.as_posix()}` {scores[path]['value']:.4f}" for path in config_paths)
    sentence = f"Picked on validation ({next(iter(metrics))}) among the candidate runs: {ranking}."
    return chosen, compare, sentence


# ---------------------------------------------------------------------------------------------------- inputs


def student_dir_of(config: dict, student: str | None) -> Path:
    """`--student`, or the folder of the last student stage the config runs (finetune, else distill)."""
    if student is not None:
        return Path(student)
    stages = config.get("stages") or ["distill"]
    trained = [stage for stage in stages if stage in STUDENT_STAGES]
    if not trained:
        raise SystemExit(f"the config trains no student (stages {stages}); pass --student DIR")
    return Path(config["output_dir"]) / trained[-1]


def teacher_dir_of(config: dict, teacher: str | None) -> Path | None:
    if teacher is not None:
        return Path(teacher)
    if config.get("teacher_name_or_path"):
        return Path(config["teacher_name_or_path"])
    if "teacher" in (config.get("stages") or []):
        return Path(config["output_dir"]) / "teacher"
    return None


METRIC_SUFFIXES = ("_mae", "_rmse", "_count", "_r2", "_roc_auc", "_accuracy", "_log_loss")


def read_metrics(path: Path) -> dict[str, float]:
    """Test metrics of a comparison file: `{"metrics": {"test": {...}}}` (distill.py's evaluate stage, the chemprop
    row of benchmarks/distillation_qm9.py), `{"test_metrics": {...}}` (benchmarks/chemprop_qm9.py), `{"test": {...}}`
    or flat `{"gap_mae": ...}`; only `<label>_<metric>` numbers are read."""
    if not path.is_file():
        raise SystemExit(f"--compare: {path} does not exist")
    values = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(values.get("metrics"), dict):
        values = values["metrics"]
    for key in ("test_metrics", "test"):
        if isinstance(values.get(key), dict):
            values = values[key]
            break
    metrics = {
        key: value
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith(METRIC_SUFFIXES)
    }
    if not metrics:
        raise SystemExit(f"--compare {path}: no test metrics (<label>_mae, ...) in it")
    return metrics


def comparisons(specs: list[str], own: dict[str, float]) -> dict[str, dict]:
    """`LABEL=FILE` pairs -> {label: {"metrics": ..., "file": ...}}; the test counts must equal this model's."""
    result = {}
    for spec in specs:
        label, sep, file = spec.partition("=")
        if not sep or not label or not file:
            raise SystemExit(f"--compare {spec!r}: expected LABEL=FILE")
        metrics = read_metrics(Path(file))
        for key, count in own.items():
            if key.endswith("_count") and key in metrics and int(metrics[key]) != int(count):
                raise SystemExit(
                    f"--compare {label}: {file} was measured on {int(metrics[key])} molecules ({key}), this test "
                    f"split has {int(count)}; compare on the same split"
                )
        result[label] = {"metrics": metrics, "file": str(file)}
    return result


def with_own_teacher(specs: list[str], teacher_dir: Path | None) -> list[str]:
    """`--compare` specs plus `teacher=` the test metrics of the student's own teacher, written by the `evaluate`
    stage of the run that trained it (`{run}/teacher` beside `{run}/evaluate/metrics.json`), when that file exists
    and no `teacher=` spec was given."""
    if teacher_dir is None or any(spec.partition("=")[0] == "teacher" for spec in specs):
        return list(specs)
    metrics = teacher_dir.parent / "evaluate" / "metrics.json"
    return [*specs, f"teacher={metrics.as_posix()}"] if metrics.is_file() else list(specs)


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        changes = [line for line in git("status", "--porcelain").splitlines() if "molformer_kd/pretrained/" not in line]
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changes), "changed_files": len(changes)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "changed_files": None}


def describe_model(config: dict) -> str:
    keys = ("hidden_size", "num_hidden_layers", "num_layers", "num_attention_heads", "geometry", "variant")
    details = ", ".join(f"{key} {config[key]}" for key in keys if key in config)
    return f"`{config.get('model_type', '?')}` ({details})" if details else f"`{config.get('model_type', '?')}`"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------- card text


def card_texts(
    name: str,
    values: dict,
    config_path: Path,
    labels: list[str],
    units: dict[str, str],
    sizes: dict[str, int],
    teacher: dict | None,
    student_config: dict,
    domain_lines: list[str],
    git: dict,
) -> dict:
    """The model card's prose (StudentCardInfo fields)."""
    dataset = values["dataset"]
    qm9 = dataset.startswith("qm9")
    unit_text = f" ({units[labels[0]]})" if units and len({units.get(label) for label in labels}) == 1 else ""
    distilled = "distill" in (values.get("stages") or [])
    how = "distilled from the 3D teacher below" if distilled else "trained on the labels alone"
    split = values.get("split")
    split_text = (
        f"`{json.dumps(split)}` of the pooled records" if split else "the dataset's own train/validation/test split"
    )
    texts = {
        "description": (
            f"Predicts {', '.join(labels)}{unit_text} from SMILES alone: a {describe_model(student_config)} student "
            f"{how}, small enough to ship inside the molformer_kd package."
        ),
        "data": (
            f"`{dataset}`"
            + (" (QM9: 134k small organic molecules, DFT B3LYP/6-31G(2df,p) properties)" if qm9 else "")
            + f", labels {', '.join(f'`{label}`' for label in labels)}{unit_text}. Split: {split_text}: "
            + ", ".join(f"{split_name} {count}" for split_name, count in sizes.items())
            + " molecules. The test split's ids are hashed in provenance.json (`data.test_ids_sha256`)."
        ),
        "teacher": (
            f"{describe_model(teacher['config'])}, read from `{teacher['path']}`; it sees the DFT geometry of every "
            "molecule, which this student never does."
            if teacher
            else None
        ),
        "training": (
            f"Stages {' -> '.join(values.get('stages') or ['distill'])} of `{config_path.as_posix()}` "
            f"(the full config is in provenance.json), seed {values.get('seed', 42)}."
        ),
        "intended_use": (
            "Fast estimates of "
            + ", ".join(labels)
            + " for molecules like the training set's"
            + (
                " (small neutral closed-shell organic molecules of C, N, O and F with up to 9 heavy atoms), e.g. "
                "to screen or rank candidates before a DFT calculation, or as features for another model."
                if qm9
                else ", e.g. to screen or rank candidates."
            )
        ),
        "limitations": (
            "- The targets are DFT values"
            + (" (B3LYP/6-31G(2df,p), QM9), not experiment" if qm9 else "")
            + "; the test MAE above is the error against them.\n"
            "- Outside the applicability domain (other elements, more heavy atoms, charged molecules, radicals, "
            "mixtures) the predictions are extrapolations: they carry `in_domain = false` and a `domain_reason`.\n"
            "- It reads the 2D molecular graph (or the SMILES string): conformers and stereoisomers that share a graph "
            "get one prediction.\n"
            "- One training run (one seed): the spread over seeds is not part of these numbers."
        ),
        "usage": (
            "```python\n"
            "import molformer_kd\n"
            "from molformer_kd import AutoModelForMolecularPropertyPrediction\n"
            "from molformer_kd.pipelines import MolecularPropertyPredictionPipeline\n\n"
            f'predict = MolecularPropertyPredictionPipeline.from_pretrained("{name}")  # offline, shipped files\n'
            'predict(["CCO", "c1ccccc1Cl"])  # values, in_domain, domain_reason, error\n'
            f'model = AutoModelForMolecularPropertyPrediction.from_pretrained("molformer-kd/{name}")\n'
            "```\n\n"
            f"Command line: `molformer-kd predict --model {name} --input smiles.csv --output preds.csv`; "
            "`molformer-kd models` lists the shipped students. transformers' own `AutoModel` and `pipeline()` take "
            f'the folder: `molformer_kd.data.pretrained.pretrained_path("{name}")`.'
        ),
        "reproducibility": (
            f"Built from commit `{git.get('commit')}`"
            + (" (with uncommitted changes)" if git.get("dirty") else "")
            + f" by `make pretrained` (distill.py on `{config_path.as_posix()}`, then scripts/ship_pretrained.py). "
            "`test_sample.csv` holds a seeded sample of the test split with the predictions measured when the model "
            "was shipped; the test suite reloads the model offline and checks it reproduces them "
            "(tests/test_pretrained.py)."
        ),
    }
    if domain_lines:
        texts["intended_use"] += " The applicability domain below says which molecules that is."
    return texts


# ---------------------------------------------------------------------------------------------------- shipping


def ship(args: argparse.Namespace) -> Path:
    import torch

    import molformer_kd
    from molformer_kd.data.domain import DOMAIN_CONFIG_KEY, ApplicabilityDomain
    from molformer_kd.data.metrics import per_label_metrics
    from molformer_kd.data.pretrained import HUB_NAMESPACE, PROVENANCE_FILE, SAMPLE_ATOL, TEST_SAMPLE_FILE
    from molformer_kd.distillation.checkpoints import read_stage_marker
    from molformer_kd.distillation.config import parse_config, read_config
    from molformer_kd.distillation.tasks import load_records
    from molformer_kd.hub import (
        MODEL_CARD_NAME,
        PARITY_PLOT_NAME,
        StudentCardInfo,
        safetensors_only_from_pretrained,
        student_files,
        write_model_card,
    )
    from molformer_kd.modeling.auto import AutoModelForMolecularPropertyPrediction
    from molformer_kd.pipelines import MolecularPropertyPredictionPipeline, predict_values
    from molformer_kd.tokenization.processors import load_processor

    config_path, candidate_compares, pick_sentence = pick_on_validation([Path(c) for c in args.config], args.student)
    args.compare = [*args.compare, *candidate_compares]
    values = read_config(config_path)
    teacher_dir = teacher_dir_of(values, args.teacher)
    args.compare = with_own_teacher(args.compare, teacher_dir)
    run_args = parse_config(values)
    student_dir = student_dir_of(values, args.student)
    student_files(student_dir)  # refuses a folder without safetensors weights
    labels = list(run_args.data.label_columns)
    dataset = run_args.data.dataset
    units = {label: QM9_UNITS[label] for label in labels if label in QM9_UNITS} if dataset.startswith("qm9") else {}

    print(f"ship {args.name}: loading the data of {config_path}", flush=True)
    records = load_records(run_args.data)
    for split in ("train", "test"):
        if split not in records:
            raise SystemExit(f"the config's data has no {split!r} split (it has {list(records)})")
    sizes = {split: len(rows) for split, rows in records.items()}

    destination = Path(args.destination)
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{args.name}.", dir=destination))
    staging.chmod(0o755)  # mkdtemp makes it private; the shipped folder is package data
    try:
        model = safetensors_only_from_pretrained(AutoModelForMolecularPropertyPrediction, str(student_dir))
        if list(model.config.label_names or []) != labels:
            raise SystemExit(f"{student_dir} predicts {model.config.label_names}, the config's labels are {labels}")
        processor = load_processor(student_dir)
        print(f"ship {args.name}: applicability domain of {sizes['train']} training molecules", flush=True)
        domain = ApplicabilityDomain.from_smiles(
            records["train"]["smiles"], source=f"{dataset} training split, {sizes['train']} molecules"
        )
        setattr(model.config, DOMAIN_CONFIG_KEY, domain.to_dict())
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        weights_mb = sum(path.stat().st_size for path in staging.glob("*.safetensors")) / 1e6
        if weights_mb > args.max_mb:
            raise SystemExit(f"{student_dir}: {weights_mb:.1f} MB of weights, more than --max-mb {args.max_mb}")

        # Test metrics through the pipeline, from the staged files: what a user of the shipped model gets.
        print(f"ship {args.name}: predicting the {sizes['test']} test molecules", flush=True)
        pipe = MolecularPropertyPredictionPipeline.from_pretrained(str(staging))
        test = records["test"]
        smiles = list(test["smiles"])
        targets = np.array([[np.nan if v is None else v for v in test[label]] for label in labels], float).T
        predictions = predict_values(pipe, smiles, args.batch_size)
        metrics = per_label_metrics(predictions, targets, labels)
        check_against_run(values, student_dir, metrics)
        compared = comparisons(args.compare, metrics)

        # The committed sample of the test split and its metrics.
        rng = np.random.default_rng(args.seed)
        picked = np.sort(rng.choice(len(smiles), size=min(args.sample_size, len(smiles)), replace=False))
        ids = list(test["mol_id"]) if "mol_id" in test.column_names else [str(i) for i in range(len(smiles))]
        with open(staging / TEST_SAMPLE_FILE, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["mol_id", "smiles", *labels, *(f"{label}_pred" for label in labels)])
            for i in picked:
                cells = [repr(float(v)) for v in (*targets[i], *predictions[i])]
                writer.writerow([ids[i], smiles[i], *cells])
        sample_metrics = per_label_metrics(predictions[picked], targets[picked], labels)

        git = git_state()
        teacher = None
        if teacher_dir is not None and (teacher_dir / "config.json").is_file():
            teacher = {"path": teacher_dir.as_posix(), "config": json.loads((teacher_dir / "config.json").read_text())}
        student_config = json.loads((staging / "config.json").read_text())
        texts = card_texts(
            args.name,
            values,
            config_path,
            labels,
            units,
            sizes,
            teacher,
            student_config,
            domain.describe(),
            git,
        )
        if args.description:
            texts["description"] = args.description
        if pick_sentence:
            texts["description"] = f"{texts['description']} {pick_sentence}"
        note = f"All columns on the same {sizes['test']} test molecules."
        if "teacher" in compared:
            note += " The teacher reads each molecule's DFT geometry; this student reads the SMILES only."
        info = StudentCardInfo(
            model_name=f"{HUB_NAMESPACE}/{args.name}",
            datasets=[dataset],
            objective=json.dumps(values.get("objectives")) if "distill" in (values.get("stages") or []) else None,
            metrics={"test": metrics},
            comparison={label: entry["metrics"] for label, entry in compared.items()},
            comparison_note=note,
            parity={
                "y_true": targets.tolist(),
                "y_pred": predictions.tolist(),
                "label": [f"{label} ({units[label]})" if label in units else label for label in labels],
            },
            tags=["qm9"] if dataset.startswith("qm9") else [],
            **texts,
        )
        write_model_card(staging, info)

        for path in staging.iterdir():
            path.chmod(0o644)  # safetensors writes its file private; the shipped files are package data
        files = {
            path.name: {"bytes": path.stat().st_size, "sha256": sha256(path)}
            for path in sorted(staging.iterdir())
            if path.is_file()
        }
        test_ids = "\n".join(sorted(map(str, ids))).encode()
        provenance = {
            "name": args.name,
            "hub_id": f"{HUB_NAMESPACE}/{args.name}",
            "description": texts["description"],
            "built": {
                **git,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "molformer_kd": molformer_kd.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            },
            "config": {"path": config_path.as_posix(), "text": config_path.read_text(encoding="utf-8")},
            "source": {"student": student_dir.as_posix(), "stage_marker": read_stage_marker(student_dir)},
            "data": {
                "dataset": dataset,
                "label_columns": labels,
                "units": units,
                "split": values.get("split"),
                "sizes": sizes,
                "test_ids_sha256": hashlib.sha256(test_ids).hexdigest(),
            },
            "teacher": teacher and {"path": teacher["path"], "model_type": teacher["config"].get("model_type")},
            "metrics": {"test": metrics},
            "comparison": {label: entry["metrics"] for label, entry in compared.items()},
            "comparison_files": {label: entry["file"] for label, entry in compared.items()},
            "applicability_domain": domain.to_dict(),
            "sample": {
                "file": TEST_SAMPLE_FILE,
                "rows": len(picked),
                "seed": args.seed,
                "metrics": sample_metrics,
                "atol": SAMPLE_ATOL,
            },
            "files": files,
        }
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        for required in ("config.json", "model.safetensors", MODEL_CARD_NAME, PARITY_PLOT_NAME):
            if not (staging / required).is_file():
                raise SystemExit(f"ship {args.name}: {required} was not written")
        final = destination / args.name
        swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items() if key.endswith("_mae"))
    print(f"shipped {args.name} -> {final} ({weights_mb:.2f} MB of weights; test {summary})", flush=True)
    return final


def check_against_run(values: dict, student_dir: Path, metrics: dict) -> None:
    """The run's evaluate stage, when it tested this very student, must agree with the metrics measured here."""
    evaluated = Path(values["output_dir"]) / "evaluate" / "metrics.json"
    if not evaluated.is_file():
        return
    summary = json.loads(evaluated.read_text())
    if Path(summary.get("model", "")).resolve() != student_dir.resolve():
        return
    theirs = summary.get("metrics", {}).get(summary.get("split", "test"), {})
    for key, value in metrics.items():
        if key.endswith("_mae") and key in theirs and abs(theirs[key] - value) > 1e-3 * max(1.0, abs(value)):
            raise SystemExit(
                f"{key}: {value:.6f} measured here through the pipeline, {theirs[key]:.6f} in {evaluated}; "
                "the shipped model would not reproduce the run's test metrics"
            )


def swap_in(staging: Path, final: Path) -> None:
    """Replace `final` by `staging` (a previous version is moved aside first and removed after)."""
    previous = None
    if final.exists():
        previous = final.with_name(f".{final.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        final.rename(previous)
    staging.rename(final)
    if previous is not None:
        shutil.rmtree(previous)


def main(argv: list[str] | None = None) -> Path:
    return ship(parse_args(argv))


if __name__ == "__main__":
    main()
