"""int8 dynamic quantization of the shipped QM9 students: accuracy change beside the speed-up, in one run.

For each shipped student (`qm9-gin`, `qm9-smiles-transformer`) this reloads the test split the student was shipped
with (the config recorded in its provenance.json, checked against the hash of its test ids; from the QM9 cache
that `make pretrained` builds) and predicts it through the `molecular-property-prediction` pipeline twice: fp32 and
`quantize="int8"` (`pipelines.quantize_int8`, what `molformer-kd predict --quantize int8` runs). Reported:

1. accuracy: MAE per target (fp32, int8, the change int8 - fp32) and how far single predictions move
   (mean and max |int8 - fp32|); the fp32 MAE is checked against the test metrics of provenance.json;
2. speed on the same molecules: the whole pipeline (featurize, batch, forward) and the forward alone on batches
   built once, fp32 and int8 interleaved over `--repeats` rounds after a warm-up (the median round), so that other
   load on a shared machine hits both alike; the ratios are the figures to read.

Without the QM9 cache (or with `--sample`) it falls back to the 200-molecule `test_sample.csv` of each student.

    python benchmarks/quantization_qm9.py --output benchmarks/results/quantization_qm9
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import molformer_kd  # noqa: F401  (registers the model families)
from molformer_kd.data.metrics import per_label_metrics
from molformer_kd.data.pretrained import PRETRAINED_DIR
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline, predict_values
from molformer_kd.tokenization.collators import GraphCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

REPO = Path(__file__).resolve().parents[1]
STUDENTS = ("qm9-gin", "qm9-smiles-transformer")


def load_test_split(name: str, sample_only: bool) -> tuple[str, list[str], np.ndarray, list[str]]:
    """(source description, SMILES, (N, T) targets, label names) of the student's test split, or of its sample."""
    provenance = json.loads((PRETRAINED_DIR / name / "provenance.json").read_text())
    labels = list(provenance["data"]["label_columns"])
    if not sample_only:
        try:
            from molformer_kd.distillation.config import parse_config, read_config
            from molformer_kd.distillation.tasks import load_records

            run_args = parse_config(read_config(REPO / provenance["config"]["path"]))
            test = load_records(run_args.data)["test"]
            ids = "\n".join(sorted(map(str, test["mol_id"]))).encode()
            if hashlib.sha256(ids).hexdigest() != provenance["data"]["test_ids_sha256"]:
                raise RuntimeError("the reloaded test split is not the one the student was shipped with")
            targets = np.array([[np.nan if v is None else v for v in test[label]] for label in labels], float).T
            return f"full test split ({len(test)} molecules, ids hash checked)", list(test["smiles"]), targets, labels
        except Exception as error:  # no QM9 cache: fall back to the committed sample
            print(f"{name}: test split unavailable ({type(error).__name__}: {error}); using test_sample.csv")
    with open(PRETRAINED_DIR / name / "test_sample.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    targets = np.array([[float(row[label]) for label in labels] for row in rows])
    return f"test_sample.csv ({len(rows)} molecules)", [row["smiles"] for row in rows], targets, labels


def model_batches(pipe: MolecularPropertyPredictionPipeline, smiles: list[str], batch_size: int) -> list[dict]:
    """The model inputs of `smiles` in batches, built once (what the pipeline's preprocessing hands the model)."""
    processor = pipe.feature_extractor if pipe.feature_extractor is not None else pipe.tokenizer
    batches = []
    for start in range(0, len(smiles), batch_size):
        chunk = smiles[start : start + batch_size]
        if isinstance(processor, MoleculeFeaturizer):
            batches.append(GraphCollator(processor)(chunk))
        else:
            batches.append(dict(processor(chunk, padding=True, return_tensors="pt")))
    return batches


def forward_seconds(model: torch.nn.Module, batches: list[dict]) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model(**batch)
    return time.perf_counter() - start


def measure(name: str, args: argparse.Namespace) -> dict:
    source, smiles, targets, labels = load_test_split(name, args.sample)
    print(f"{name}: {source}", flush=True)
    pipes = {
        "fp32": MolecularPropertyPredictionPipeline.from_pretrained(name),
        "int8": MolecularPropertyPredictionPipeline.from_pretrained(name, quantize="int8"),
    }
    predictions = {precision: predict_values(pipe, smiles, args.batch_size) for precision, pipe in pipes.items()}
    metrics = {precision: per_label_metrics(values, targets, labels) for precision, values in predictions.items()}
    shift = np.abs(predictions["int8"] - predictions["fp32"])
    shipped = json.loads((PRETRAINED_DIR / name / "provenance.json").read_text())["metrics"]["test"]

    batches = model_batches(pipes["fp32"], smiles, args.batch_size)
    rounds = {"fp32": [], "int8": []}
    pipeline_rounds = {"fp32": [], "int8": []}
    for _ in range(args.repeats):  # (the accuracy pass above warmed both up)
        for precision, pipe in pipes.items():
            start = time.perf_counter()
            predict_values(pipe, smiles, args.batch_size)
            pipeline_rounds[precision].append(time.perf_counter() - start)
            rounds[precision].append(forward_seconds(pipe.model, batches))
    forward = {precision: statistics.median(values) for precision, values in rounds.items()}
    pipeline_seconds = {precision: statistics.median(values) for precision, values in pipeline_rounds.items()}

    per_label = {}
    for label, column in zip(labels, range(len(labels))):
        fp32_mae, int8_mae = metrics["fp32"][f"{label}_mae"], metrics["int8"][f"{label}_mae"]
        per_label[label] = {
            "fp32_mae": fp32_mae,
            "int8_mae": int8_mae,
            "mae_change": int8_mae - fp32_mae,
            "mae_change_percent": 100 * (int8_mae - fp32_mae) / fp32_mae,
            "mean_abs_prediction_shift": float(shift[:, column].mean()),
            "max_abs_prediction_shift": float(shift[:, column].max()),
            "shipped_fp32_mae": shipped.get(f"{label}_mae") if "full" in source else None,
        }
    return {
        "molecules": len(smiles),
        "source": source,
        "per_label": per_label,
        "pipeline_seconds": pipeline_seconds,
        "pipeline_speedup_int8": pipeline_seconds["fp32"] / pipeline_seconds["int8"],
        "forward_seconds_median": forward,
        "forward_rounds": rounds,
        "pipeline_rounds": pipeline_rounds,
        "forward_speedup_int8": forward["fp32"] / forward["int8"],
        "parameters": sum(p.numel() for p in pipes["fp32"].model.parameters()),
    }


def markdown(report: dict) -> str:
    lines = [
        "# int8 dynamic quantization of the shipped QM9 students: accuracy and speed",
        "",
        f"One run (`python benchmarks/quantization_qm9.py`), {report['machine']}, torch {report['torch']}, "
        f"{report['threads']} thread(s), batch size {report['batch_size']}; 1-minute load average "
        f"{report['load_average']:.2f} at the start (a shared machine: read the ratios). int8 = "
        "`pipelines.quantize_int8` (`nn.Linear` weights int8, activations quantized per batch), as "
        "`molformer-kd predict --quantize int8` runs it.",
        "",
    ]
    for name, entry in report["students"].items():
        lines += [
            f"## `{name}` on the {entry['source']}",
            "",
            "| target | fp32 MAE (eV) | int8 MAE (eV) | change | mean / max abs(int8 - fp32) per molecule (eV) |",
            "|---|---|---|---|---|",
        ]
        for label, values in entry["per_label"].items():
            lines.append(
                f"| {label} | {values['fp32_mae']:.4f} | {values['int8_mae']:.4f} | "
                f"{values['mae_change']:+.4f} ({values['mae_change_percent']:+.2f}%) | "
                f"{values['mean_abs_prediction_shift']:.4f} / {values['max_abs_prediction_shift']:.4f} |"
            )
        shipped = [v["shipped_fp32_mae"] for v in entry["per_label"].values()]
        if all(value is not None for value in shipped):
            lines += [
                "",
                "fp32 MAE as shipped (provenance.json): "
                + ", ".join(f"{label} {v['shipped_fp32_mae']:.4f}" for label, v in entry["per_label"].items()),
            ]
        lines += [
            "",
            "| speed | fp32 s (min..max) | int8 s (min..max) | int8 speed-up, medians | int8 speed-up, minima |",
            "|---|---|---|---|---|",
        ]
        for what, rounds in (
            (f"whole pipeline (featurize + batch + forward), {entry['molecules']} molecules", entry["pipeline_rounds"]),
            ("forward only, batches built once", entry["forward_rounds"]),
        ):
            fp32, int8 = rounds["fp32"], rounds["int8"]
            lines.append(
                f"| {what} | {statistics.median(fp32):.3f} ({min(fp32):.3f}..{max(fp32):.3f}) | "
                f"{statistics.median(int8):.3f} ({min(int8):.3f}..{max(int8):.3f}) | "
                f"{statistics.median(fp32) / statistics.median(int8):.2f}x | {min(fp32) / min(int8):.2f}x |"
            )
        lines += [
            "",
            f"Seconds: median of {len(entry['forward_rounds']['fp32'])} rounds, fp32 and int8 interleaved (the "
            "minimum is the round least disturbed by other work on the machine).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="benchmarks/results/quantization_qm9", help="writes <output>.json/.md")
    parser.add_argument("--students", nargs="+", default=list(STUDENTS))
    parser.add_argument("--sample", action="store_true", help="use each student's 200-molecule test_sample.csv")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown-only", action="store_true", help="rewrite <output>.md from <output>.json")
    args = parser.parse_args()
    output = Path(args.output)
    if args.markdown_only:
        output.with_suffix(".md").write_text(markdown(json.loads(output.with_suffix(".json").read_text())))
        return
    torch.set_num_threads(args.threads)
    report = {
        "machine": f"{platform.machine()} with {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "load_average": os.getloadavg()[0],
        "students": {name: measure(name, args) for name in args.students},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
