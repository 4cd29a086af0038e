"""chemprop v2 peer row for the shipped QM9 students: chemprop at its own defaults on the same data and split.

Reads a molformer_kd distill config (default configs/pretrained/qm9_teacher.yaml, the shipped students' teacher),
loads exactly that config's records and split through molformer_kd (`parse_config`, `load_records`), writes them as
train/validation/test CSVs (SMILES + the config's label columns, here HOMO, LUMO and gap in eV) and runs chemprop
v2's own CLI from its separate environment:

    .venv/bin/python benchmarks/chemprop_qm9.py                                   # the real run, ~50 epochs
    .venv/bin/python benchmarks/chemprop_qm9.py --epochs 2 --max-train 500 --work-dir /tmp/cp \\
        --results-dir /tmp/cp --results-name smoke                                 # a smoke run, a minute

`chemprop train` gets the three CSVs as its split (no reshuffling), every label column at once (one multi-task
regression model, as the students), and nothing else of its settings but `--num-workers 0`, the CPU and a seed
(the config's `seed`): its default D-MPNN, optimizer, batch size and epoch count (50), and its own
best-validation-loss checkpoint (`best.pt`). `chemprop predict` then scores that checkpoint on the test CSV; the
per-target test MAE/RMSE are computed here with molformer_kd.data.metrics, in the original units.

chemprop runs with OMP_NUM_THREADS/MKL_NUM_THREADS = `--threads` (default 1). Progress: one line per finished
epoch (from chemprop's checkpoint folder), chemprop's own output in `{work_dir}/chemprop_train.log`. Resumable: a
work dir whose `best.pt` exists is not retrained, and an interrupted training resumes from chemprop's `last.ckpt`
through benchmarks/chemprop_resume.py (chemprop's CLI, resumed by Lightning), with its wall time and epoch ends
carried across resumes (`{work_dir}/train_progress.json`). Writes
`{results_dir}/{results_name}.json` (every number, chemprop's resolved settings, versions, split fingerprints,
wall times, per-epoch validation loss) and `.md`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The chemprop-row helpers of the distillation benchmark (CSV layout, the `chemprop train` command, the scoring).
_spec = importlib.util.spec_from_file_location("distillation_qm9", ROOT / "benchmarks" / "distillation_qm9.py")
distillation_qm9 = importlib.util.module_from_spec(_spec)
sys.modules["distillation_qm9"] = distillation_qm9  # its dataclasses look their module up
_spec.loader.exec_module(distillation_qm9)

from molformer_kd.distillation.config import parse_config, read_config  # noqa: E402
from molformer_kd.distillation.tasks import load_records  # noqa: E402

SPLITS = ("train", "validation", "test")
DEFAULT_CONFIG = ROOT / "configs" / "pretrained" / "qm9_teacher.yaml"
DEFAULT_CHEMPROP = os.environ.get("MOLFORMER_KD_CHEMPROP") or str(ROOT / ".venv-chemprop" / "bin" / "chemprop")
VERSIONS_SCRIPT = """
import json, platform, torch, chemprop, lightning, rdkit
print(json.dumps({"chemprop": chemprop.__version__, "torch": torch.__version__, "lightning": lightning.__version__,
                  "rdkit": rdkit.__version__, "python": platform.python_version()}))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- data


def fingerprint(rows, id_column: str | None) -> dict:
    """Size and SHA-256 of a split's SMILES (and molecule ids where the records have them), in order."""
    smiles = list(rows["smiles"])
    result = {"size": len(smiles), "smiles_sha256": hashlib.sha256("\n".join(smiles).encode()).hexdigest()}
    if id_column and id_column in rows.column_names:
        ids = [str(value) for value in rows[id_column]]
        result[f"{id_column}_sha256"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        result[f"first_{id_column}s"] = ids[:3]
    return result


def load_split(config_path: Path, limits: dict) -> tuple[dict, object, dict]:
    """The config's values, its DataArguments and its records per split (each cut to its first `limits[split]`)."""
    values = read_config(config_path)
    data = parse_config(values).data
    if data.problem_type != "regression":
        raise SystemExit(f"{config_path}: chemprop's peer row here is regression only, not {data.problem_type!r}")
    records = load_records(data)
    split = {}
    for name in SPLITS:
        rows = records[name]
        if limits.get(name) is not None and len(rows) > limits[name]:
            rows = rows.select(range(limits[name]))
        split[name] = rows.remove_columns([c for c in rows.column_names if c == "pos"])
    return values, data, split


def write_csvs(split: dict, labels, work_dir: Path, model_file: Path) -> dict[str, Path]:
    """train/validation/test CSVs in distillation_qm9's layout (+ the test SMILES alone, the input of `chemprop
    predict`); the CSVs a trained model was trained on must not change under it."""
    paths = {name: work_dir / f"{name}.csv" for name in SPLITS}
    paths["test_smiles"] = work_dir / "test_smiles.csv"
    for name, path in paths.items():
        fresh = path.with_name(path.name + ".new")
        if name == "test_smiles":
            distillation_qm9.split_to_csv(split["test"], fresh, [])
        else:
            distillation_qm9.split_to_csv(split[name], fresh, labels)
        if model_file.is_file() and path.is_file() and path.read_bytes() != fresh.read_bytes():
            fresh.unlink()
            raise SystemExit(
                f"{path} differs from this config's {name} split, but {model_file} was trained on it: "
                "use another --work-dir or remove that one"
            )
        fresh.replace(path)
    return paths


# ---------------------------------------------------------------------------------------------- chemprop


def chemprop_env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")


def chemprop_versions(chemprop: str) -> dict:
    python = Path(chemprop).parent / "python"
    try:
        result = subprocess.run([str(python), "-c", VERSIONS_SCRIPT], capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError) as error:
        return {"error": f"{python}: {error}"}


def epoch_metrics(model_dir: Path) -> list[dict]:
    """chemprop's per-epoch validation rows from its Lightning CSV log (epochs from 1)."""
    rows = []
    for path in sorted(model_dir.glob("trainer_logs/*/metrics.csv")):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("val_loss"):
                    entry = {"epoch": int(row["epoch"]) + 1}
                    entry.update({k: float(v) for k, v in row.items() if v and (k.startswith("val") or k == "step")})
                    rows.append(entry)
    return rows


def best_checkpoint(model_dir: Path) -> dict | None:
    """The best-validation checkpoint chemprop kept: `best-epoch={e}-{metric}={value}.ckpt` (epoch from 0)."""
    found = sorted((model_dir / "checkpoints").glob("best-epoch=*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    name = found[-1].name
    epoch = int(name.split("best-epoch=")[1].split("-")[0])
    return {"file": name, "epoch": epoch + 1}


def last_checkpoint(output_dir: Path) -> Path:
    """The checkpoint chemprop rewrites after every epoch (`save_last=True`): where an interrupted run resumes."""
    return output_dir / "model_0" / "checkpoints" / "last.ckpt"


def resumed_command(command: list[str], checkpoint: Path) -> list[str]:
    """`chemprop train ...` (command[0] the chemprop executable) as the same arguments run by chemprop_resume.py
    with chemprop's own Python, resuming from `checkpoint`."""
    python = Path(command[0]).parent / "python"
    return [str(python), str(ROOT / "benchmarks" / "chemprop_resume.py"), "--resume-from", str(checkpoint), "--"] + (
        command[1:]
    )


def file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        return path.lstat().st_mtime_ns, path.stat().st_mtime_ns
    except OSError:
        return None


def train(command: list[str], output_dir: Path, log_path: Path, threads: int, epochs: int, progress_file: Path) -> dict:
    """Run `chemprop train`, printing a line per finished epoch (each epoch rewrites its last.ckpt), or resume it
    when `progress_file` holds an earlier, interrupted attempt: its wall time and epoch ends (seconds from the
    first start, counting only time spent training) are carried on and the file is rewritten after every epoch."""
    last = last_checkpoint(output_dir)
    model_dir = output_dir / "model_0"
    progress = json.loads(progress_file.read_text()) if progress_file.is_file() and last.is_file() else None
    earlier_s = progress["wall_s"] if progress else 0.0
    ends = list(progress["epoch_end_s"]) if progress else []
    resumes = progress.get("resumes", 0) + 1 if progress else 0
    launched = command
    if progress:
        log(f"resuming chemprop from {last} after epoch {len(ends)} ({earlier_s:.0f} s of training so far)")
        launched = resumed_command(command, last)
    start = time.perf_counter()
    seen = file_stamp(last)  # a resumed run's last.ckpt is the previous epoch's, not a new one
    with open(log_path, "a" if progress else "w") as handle:
        handle.write(" ".join(launched) + "\n\n")
        handle.flush()
        process = subprocess.Popen(launched, stdout=handle, stderr=subprocess.STDOUT, env=chemprop_env(threads))
        log(f"chemprop train started (pid {process.pid}); its output: {log_path}")
        while True:
            finished = process.poll() is not None
            stamp = file_stamp(last)
            if stamp is not None and stamp != seen:
                seen = stamp
                ends.append(earlier_s + time.perf_counter() - start)
                progress_file.write_text(json.dumps({"wall_s": ends[-1], "epoch_end_s": ends, "resumes": resumes}))
                epoch = len(ends)
                took = ends[-1] - (ends[-2] if len(ends) > 1 else 0.0)
                best = best_checkpoint(model_dir)
                left = (epochs - epoch) * (ends[-1] / epoch)
                log(
                    f"epoch {epoch}/{epochs} done at {ends[-1]:.0f} s ({took:.0f} s this epoch, "
                    f"best so far: epoch {best['epoch'] if best else '?'}); ~{left / 60:.0f} min left"
                )
            if finished:
                break
            time.sleep(1)
    wall_s = earlier_s + time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"chemprop train failed (exit {process.returncode}); see {log_path}")
    # Epoch ends seen by polling (1 s resolution); the first includes featurization and model set-up.
    return {"wall_s": wall_s, "epoch_end_s": ends, "command": command, "resumes": resumes}


def predict_command(chemprop: str, smiles_csv: Path, model_file: Path, output: Path) -> list[str]:
    """`chemprop predict` of a model on a SMILES-only CSV (no labels in its input), on the CPU."""
    command = [chemprop, "predict", "--test-path", str(smiles_csv), "--model-paths", str(model_file)]
    command += ["--smiles-columns", "smiles", "--output", str(output), "--num-workers", "0"]
    return command + ["--accelerator", "cpu", "--devices", "1"]


def predict(command: list[str], log_path: Path, threads: int) -> float:
    start = time.perf_counter()
    with open(log_path, "w") as handle:
        handle.write(" ".join(command) + "\n\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=chemprop_env(threads))
    if result.returncode != 0:
        raise SystemExit(f"chemprop predict failed (exit {result.returncode}); see {log_path}")
    return time.perf_counter() - start


def chemprop_settings(output_dir: Path) -> dict:
    """The settings chemprop resolved for the run (its config.toml), as strings."""
    path = output_dir / "config.toml"
    settings = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = (part.strip() for part in line.split("=", 1))
                if value.startswith("[") and "," not in value:  # one-element lists: [300] -> 300
                    value = value[1:-1]
                settings[key.replace("-", "_")] = value.strip('"')
    return settings


# ---------------------------------------------------------------------------------------------- report


def markdown(report: dict) -> str:
    labels = report["labels"]
    test = report["test_metrics"]
    budget = report["budget"]
    settings = report["chemprop_settings"]
    versions = report["versions"]
    sizes = ", ".join(f"{name} {report['split'][name]['size']}" for name in SPLITS)
    lines = [
        f"# chemprop v2 peer row: {report['dataset']} {', '.join(labels)} ({report['units']})",
        "",
        f"chemprop {versions.get('chemprop')} at its own CLI defaults (D-MPNN), trained on the split of "
        f"`{report['config']}` ({sizes}), all "
        f"{len(labels)} targets in one multi-task regression model; test on chemprop's best-validation-loss "
        "checkpoint (`best.pt`), scored here with molformer_kd.data.metrics.",
        "",
        "| target | test MAE | test RMSE | n |",
        "| --- | --- | --- | --- |",
    ]
    for label in labels:
        lines.append(
            f"| {label} | {test[f'{label}_mae']:.4f} | {test[f'{label}_rmse']:.4f} | {test[f'{label}_count']} |"
        )
    best = budget.get("best_epoch")
    lines += [
        "",
        "## Budget",
        "",
        f"- epochs: {budget['epochs_run']} of {budget['max_epochs']} ({budget['epochs_source']}; early-stopping "
        f"patience = epochs, chemprop's default), best validation-loss epoch {best if best is not None else '?'} "
        f"(`{budget['best_checkpoint']}`, chemprop counts from 0)",
        f"- training wall time: {budget['train_wall_s']:.0f} s ({budget['train_wall_s'] / 3600:.2f} h), "
        f"~{budget['seconds_per_epoch']:.0f} s per epoch; test prediction {budget['predict_wall_s']:.0f} s"
        + (f"; resumed {budget['train_resumes']} time(s) from last.ckpt" if budget.get("train_resumes") else ""),
        f"- threads: OMP_NUM_THREADS=MKL_NUM_THREADS={report['threads']} for chemprop, on "
        f"{report['machine']['cpu_count']} CPU cores ({report['machine']['processor']}), no accelerator",
        f"- chemprop settings (its defaults): batch size {settings.get('batch_size', '?')}, message hidden dim "
        f"{settings.get('message_hidden_dim', '?')}, depth {settings.get('depth', '?')}, FFN "
        f"{settings.get('ffn_num_layers', '?')} x {settings.get('ffn_hidden_dim', '?')}, lr "
        f"{settings.get('init_lr', '?')} -> {settings.get('max_lr', '?')} -> {settings.get('final_lr', '?')} "
        f"(warm-up {settings.get('warmup_epochs', '?')} epochs), tracking {settings.get('tracking_metric', '?')}; "
        f"--pytorch-seed {settings.get('pytorch_seed', '?')} (the config's seed)",
        "",
        "## Versions and commands",
        "",
        f"- chemprop {versions.get('chemprop')}, torch {versions.get('torch')}, lightning "
        f"{versions.get('lightning')}, rdkit {versions.get('rdkit')}, python {versions.get('python')} "
        "(a separate environment)",
        f"- this run: `{report['command']}`",
        f"- chemprop: `{' '.join(Path(p).name if i == 0 else p for i, p in enumerate(report['train_command']))}`",
        f"- then: `{' '.join(Path(p).name if i == 0 else p for i, p in enumerate(report['predict_command']))}`",
        "",
    ]
    if report["cut"]:
        lines.insert(2, f"**Reduced budget (not the peer row): splits cut to {report['cut']}.**\n")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="molformer_kd distill config (its split)")
    parser.add_argument(
        "--chemprop",
        default=DEFAULT_CHEMPROP,
        help="chemprop v2 executable (default $MOLFORMER_KD_CHEMPROP or .venv-chemprop/bin/chemprop)",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="default runs/chemprop_qm9/{config stem}")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--results-name", default="chemprop_qm9_pretrained")
    parser.add_argument("--epochs", type=int, default=None, help="default: chemprop's own (50)")
    parser.add_argument("--seed", type=int, default=None, help="chemprop's --pytorch-seed (default: the config's seed)")
    parser.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of chemprop")
    for name in SPLITS:
        parser.add_argument(f"--max-{name}", type=int, default=None, help=f"first N {name} molecules (smoke runs)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    config_path = args.config.resolve()
    work_dir = (args.work_dir or ROOT / "runs" / "chemprop_qm9" / config_path.stem).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    output_dir = work_dir / "chemprop"
    model_file = output_dir / "model_0" / "best.pt"
    if not Path(args.chemprop).is_file():
        raise SystemExit(f"no chemprop executable at {args.chemprop} (see --chemprop)")
    limits = {name: getattr(args, f"max_{name}") for name in SPLITS}
    cut = {name: limit for name, limit in limits.items() if limit is not None}

    log(f"loading the records and split of {config_path}")
    start = time.perf_counter()
    values, data, split = load_split(config_path, limits)
    labels = list(data.label_columns)
    sizes = ", ".join(f"{name} {len(split[name])}" for name in SPLITS)
    log(f"split {sizes}; labels {labels} ({time.perf_counter() - start:.0f} s)")
    paths = write_csvs(split, labels, work_dir, model_file)

    seed = args.seed if args.seed is not None else values.get("seed", 0)
    command = distillation_qm9.chemprop_train_command(
        args.chemprop,
        [paths[name] for name in SPLITS],
        labels,
        output_dir,
        epochs=args.epochs,
        pytorch_seed=seed,
        accelerator="cpu",
    )
    record_file = work_dir / "train_record.json"
    if model_file.is_file() and record_file.is_file():
        log(f"{model_file} exists: not retrained")
        record = json.loads(record_file.read_text())
    else:
        progress_file = work_dir / "train_progress.json"
        if output_dir.exists() and not (last_checkpoint(output_dir).is_file() and progress_file.is_file()):
            log(f"removing the unfinished chemprop run in {output_dir} (nothing to resume from)")
            shutil.rmtree(output_dir)
            progress_file.unlink(missing_ok=True)
        epochs = args.epochs or 50
        record = train(command, output_dir, work_dir / "chemprop_train.log", args.threads, epochs, progress_file)
        record_file.write_text(json.dumps(record, indent=2))
        log(f"chemprop train finished in {record['wall_s']:.0f} s; best model {model_file}")

    predictions_file = work_dir / "test_predictions.csv"
    scoring = predict_command(args.chemprop, paths["test_smiles"], model_file, predictions_file)
    predict_wall_s = predict(scoring, work_dir / "chemprop_predict.log", args.threads)
    log(f"chemprop predict on {len(split['test'])} test molecules: {predict_wall_s:.0f} s")
    metrics = distillation_qm9.score_chemprop_predictions(predictions_file, split["test"], labels)
    # chemprop train's own test predictions (same checkpoint) as a check on the predict step.
    train_predictions = output_dir / "model_0" / "test_predictions.csv"
    train_metrics = (
        distillation_qm9.score_chemprop_predictions(train_predictions, split["test"], labels)
        if train_predictions.is_file()
        else None
    )

    settings = chemprop_settings(output_dir)
    history = epoch_metrics(output_dir / "model_0")
    best = best_checkpoint(output_dir / "model_0")
    max_epochs = int(settings.get("epochs", args.epochs or 50))
    ends = record["epoch_end_s"]
    epochs_run = max((row["epoch"] for row in history), default=len(ends))
    # Epoch ends are seen by polling: epochs shorter than the poll interval can be missed (tiny smoke runs).
    if len(ends) == epochs_run and epochs_run > 1:
        seconds_per_epoch = (ends[-1] - ends[0]) / (epochs_run - 1)  # without the first (featurization, set-up)
    else:
        seconds_per_epoch = record["wall_s"] / max(epochs_run, 1)
    report = {
        "config": str(config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path),
        "dataset": data.dataset,
        "labels": labels,
        "units": "eV" if data.dataset == "qm9" else "label units",
        "split_spec": values.get("split"),
        "split": {name: fingerprint(split[name], data.id_column or "mol_id") for name in SPLITS},
        "cut": cut,
        "test_metrics": metrics,
        "test_metrics_from_train_step": train_metrics,
        "budget": {
            "max_epochs": max_epochs,
            "epochs_run": epochs_run,
            "best_epoch": best["epoch"] if best else None,
            "best_checkpoint": best["file"] if best else None,
            "train_wall_s": record["wall_s"],
            "train_resumes": record.get("resumes", 0),
            "epochs_source": "--epochs" if args.epochs else "chemprop's default",
            "seconds_per_epoch": seconds_per_epoch,
            "first_epoch_s": ends[0] if ends else None,
            "epoch_end_s": ends,
            "predict_wall_s": predict_wall_s,
        },
        "validation_history": history,
        "threads": args.threads,
        "chemprop_settings": settings,
        "versions": chemprop_versions(args.chemprop),
        "train_command": record["command"],
        "predict_command": scoring,
        "work_dir": str(work_dir),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": distillation_qm9.machine(),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.results_dir / f"{args.results_name}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    (args.results_dir / f"{args.results_name}.md").write_text(markdown(report))
    log(
        "test "
        + ", ".join(f"{label} MAE {metrics[f'{label}_mae']:.4f}" for label in labels)
        + f"; wrote {json_path} and .md"
    )
    return report


if __name__ == "__main__":
    main()
