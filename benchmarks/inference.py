"""End-to-end CPU inference throughput: raw SMILES -> predictions, featurization included.

One run, side by side, writes `<output>.json` (all numbers) and `<output>.md` (tables with the ratios):

1. `molformer-kd predict` as a user runs it: a whole process per run (start-up, model load and writing included) on
   the shipped parity sample (molformer_kd/tokenization/resources/parity_sample.smi, 3,000 SMILES, a few invalid),
   for a GIN-virtual (OGB preset, 5x600) and a tiny SMILES Transformer student, each with `--threads 1` and with
   the default threads (`molformer_kd.cli.default_threads`), plus GIN with `--quantize int8`. A 1-molecule run of
   each gives the start-up time, so both the whole-process and the after-start-up molecules/s are reported.
2. The graph featurizer with and without the Graphormer encodings (`graph_encodings`, what a GIN student's
   pipeline skips): featurization molecules/s and bytes of a padded 128-molecule batch.
3. Optional (`--paper-models`): the paper-preset students in one process (ST 3+3 d=512, Graphormer 2D 12x768,
   GIN-virtual) on MOSES SMILES (`pip install --no-deps molsets`), and chemprop v2's default D-MPNN run by
   scripts/chemprop_throughput.py in its own environment (`--chemprop-python`).

Models are randomly initialised: throughput does not depend on the weights. What int8 costs in accuracy (and
saves in time) on the shipped QM9 students, on their test split: benchmarks/quantization_qm9.py.

    python benchmarks/inference.py --output benchmarks/results/inference
    python benchmarks/inference.py --paper-models --n 2000 --chemprop-python /tmp/chemprop_env/bin/python
"""

import argparse
import csv
import gzip
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import set_seed

import molformer_kd  # noqa: F401  (registers the model families)
from molformer_kd.cli import default_threads
from molformer_kd.modeling.configuration_gin import GINConfig
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.configuration_smiles_transformer import SmilesTransformerConfig
from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction
from molformer_kd.modeling.modeling_smiles_transformer import SmilesTransformerForMolecularPropertyPrediction
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline, length_bucketed_batches
from molformer_kd.tokenization.featurization import MoleculeFeaturizer, pad_graph_features
from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer

REPO = Path(__file__).resolve().parents[1]
PARITY_SAMPLE = REPO / "molformer_kd" / "tokenization" / "resources" / "parity_sample.smi"
# Environment variables that would fix the thread count of a CLI run (the default runs must choose their own).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ---------------------------------------------------------------------------------------------------- CLI runs


def save_cli_students(directory: Path) -> dict[str, Path]:
    """name -> directory of a randomly initialised student saved with its processor, as a distillation run saves it."""
    set_seed(0)
    tokenizer = SmilesTokenizer()
    students = {
        "gin_virtual_ogb_5x600": (
            GINForMolecularPropertyPrediction(GINConfig.from_preset("ogb_virtual", num_labels=1)),
            MoleculeFeaturizer(),
        ),
        "st_tiny": (
            SmilesTransformerForMolecularPropertyPrediction(
                SmilesTransformerConfig.from_preset("tiny", vocab_size=len(tokenizer), num_labels=1)
            ),
            tokenizer,
        ),
    }
    paths = {}
    for name, (model, processor) in students.items():
        paths[name] = directory / name
        model.save_pretrained(paths[name])
        processor.save_pretrained(paths[name])
    return paths


def run_cli(model_dir: Path, input_path: Path, output_path: Path, options: list[str]) -> float:
    """Wall seconds of one `molformer-kd predict` process (start-up included)."""
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    command = [sys.executable, "-m", "molformer_kd.cli", "predict", "--model", str(model_dir)]
    command += ["--input", str(input_path), "--output", str(output_path), "--quiet", *options]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def cli_section(work: Path, smiles_path: Path) -> dict:
    lines = smiles_path.read_text().splitlines()
    one_path = work / "one.smi"
    one_path.write_text(lines[0] + "\n")
    settings = {
        "gin_virtual_ogb_5x600": {
            "threads 1": ["--threads", "1"],
            "default": [],
            "default, int8": ["--quantize", "int8"],
        },
        "st_tiny": {"threads 1": ["--threads", "1"], "default": []},
    }
    results = {}
    for name, model_dir in save_cli_students(work).items():
        for setting, options in settings[name].items():
            chosen = default_threads(0) if "--threads" not in options else 1
            startup = run_cli(model_dir, one_path, work / "one.csv", options)
            seconds = run_cli(model_dir, smiles_path, work / "out.csv", options)
            with open(work / "out.csv", newline="") as handle:
                errors = sum(bool(row["error"]) for row in csv.DictReader(handle))
            row = {
                "setting": setting,
                "threads": chosen,
                "seconds": seconds,
                "startup_seconds": startup,
                "mol_per_s": len(lines) / seconds,
                # None where the start-up run's own noise is as large as the work.
                "after_startup_mol_per_s": len(lines) / (seconds - startup) if seconds > 1.25 * startup else None,
                "errors": errors,
            }
            results[f"{name} [{setting}]"] = row
            print(name, json.dumps(row), flush=True)
    return {"n": len(lines), "input": str(smiles_path.relative_to(REPO)), "runs": results}


# ---------------------------------------------------------------------------------------------------- featurizer


def padding_ratio(sizes: list[int], batches: list[list[int]]) -> float:
    """Padded slots (batch size x its largest molecule, summed) per real atom."""
    return sum(len(batch) * max(sizes[i] for i in batch) for batch in batches) / sum(sizes)


def featurizer_section(smiles_path: Path, batch_size: int) -> dict:
    """Featurize + pad the valid SMILES of the sample in the pipeline's length-bucketed batches: one molecule at a
    time with the encodings (the pipeline's path before batching), and chunked with and without the Graphormer
    encodings; and the padding of batches cut in input order against length-bucketed batches."""
    smiles = [line.split()[0] for line in smiles_path.read_text().splitlines() if line.strip()]
    full = MoleculeFeaturizer()
    featurized = full.featurize_many(smiles, errors="return")
    valid = [s for s, f in zip(smiles, featurized) if not isinstance(f, Exception)]
    sizes = [len(f["input_nodes"]) for f in featurized if not isinstance(f, Exception)]
    in_order = [list(range(begin, min(begin + batch_size, len(valid)))) for begin in range(0, len(valid), batch_size)]
    bucketed = [[i for i, _ in batch] for batch in length_bucketed_batches(valid, batch_size, len(valid))]
    padding = {"input order": padding_ratio(sizes, in_order), "length-bucketed": padding_ratio(sizes, bucketed)}

    bucketed_smiles = [[valid[i] for i in batch] for batch in bucketed]
    start = time.perf_counter()
    for batch in bucketed_smiles:
        pad_graph_features([full.featurize(s) for s in batch])
    per_molecule_seconds = time.perf_counter() - start
    results = {
        "one at a time, with graph encodings": {
            "mol_per_s": len(valid) / per_molecule_seconds,
            "seconds": per_molecule_seconds,
        }
    }
    for name, featurizer in (
        ("chunked, with graph encodings", full),
        ("chunked, without (GIN)", full.without_graph_encodings()),
    ):
        featurizer.featurize_many(valid[:batch_size])  # warm-up
        start = time.perf_counter()
        batch_bytes = [
            sum(t.numel() * t.element_size() for t in pad_graph_features(featurizer.featurize_many(batch)).values())
            for batch in bucketed_smiles
        ]
        seconds = time.perf_counter() - start
        results[name] = {
            "mol_per_s": len(valid) / seconds,
            "seconds": seconds,
            "mean_batch_mb": float(np.mean(batch_bytes)) / 1e6,
        }
        print(name, json.dumps(results[name]), flush=True)
    return {"n": len(valid), "batch_size": batch_size, "runs": results, "padded_slots_per_atom": padding}


# ---------------------------------------------------------------------------------------------------- paper presets


def moses_smiles(n: int, split_file: str = "test.csv.gz") -> list[str]:
    """The first `n` SMILES of a MOSES split, located without importing `moses` (its import pulls heavy deps)."""
    spec = importlib.util.find_spec("moses")
    if spec is None:
        raise SystemExit("MOSES data not found: pip install --no-deps molsets")
    path = Path(spec.submodule_search_locations[0]) / "dataset" / "data" / split_file
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        smiles = [row["SMILES"] for _, row in zip(range(n), reader)]
    if len(smiles) < n:
        raise SystemExit(f"{path} has only {len(smiles)} SMILES, asked for {n}")
    return smiles


def paper_students():
    """name -> (model, processor kwargs) of randomly initialised paper-preset students with a 1-label head."""
    set_seed(0)
    return {
        "st_paper_3+3_d512": (
            SmilesTransformerForMolecularPropertyPrediction(SmilesTransformerConfig.from_preset("paper", num_labels=1)),
            {"tokenizer": SmilesTokenizer()},
        ),
        "graphormer_2d_paper_12x768": (
            GraphormerForMolecularPropertyPrediction(GraphormerConfig.from_preset("paper", num_labels=1)),
            {"feature_extractor": MoleculeFeaturizer()},
        ),
        "gin_virtual_ogb_5x600": (
            GINForMolecularPropertyPrediction(GINConfig.from_preset("ogb_virtual", num_labels=1)),
            {"feature_extractor": MoleculeFeaturizer()},
        ),
    }


def run_chemprop(python, smiles, batch_size, threads, warmup):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(smiles) + "\n")
    command = [python, str(REPO / "scripts" / "chemprop_throughput.py"), "--smiles-file", handle.name]
    command += ["--batch-size", str(batch_size), "--threads", str(threads), "--warmup", str(warmup)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"chemprop run failed:\n{err.stderr[-3000:]}") from err
    finally:
        os.unlink(handle.name)
    return json.loads(result.stdout.strip().splitlines()[-1])


def paper_section(args) -> dict:
    """The paper-preset students in this process, one after the other on the same MOSES SMILES and threads."""
    torch.set_num_threads(args.threads)
    smiles = moses_smiles(args.n)
    results = {}
    for name, (model, processor) in paper_students().items():
        pipe = MolecularPropertyPredictionPipeline(model=model.eval(), device=-1, **processor)
        pipe(smiles[: args.warmup], batch_size=args.batch_size)
        start = time.perf_counter()
        outputs = pipe(smiles, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        results[name] = {
            "mol_per_s": args.n / seconds,
            "seconds": seconds,
            "errors": sum(r["error"] is not None for r in outputs),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        print(name, json.dumps(results[name]), flush=True)
        del pipe, model
    if args.chemprop_python:
        chem = run_chemprop(args.chemprop_python, smiles, args.batch_size, args.threads, args.warmup)
        results["chemprop_v2_dmpnn_default"] = {
            "mol_per_s": chem["molecules_per_s"],
            "seconds": chem["seconds"],
            "errors": chem["molecules"] - chem["predictions"],
            "parameters": chem["parameters"],
            "chemprop": chem["chemprop"],
        }
    st = results["st_paper_3+3_d512"]["mol_per_s"]
    ratios = {f"ST / {name}": st / row["mol_per_s"] for name, row in results.items() if not name.startswith("st_")}
    return {
        "n": args.n,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "runs": results,
        "ratios": ratios,
        "target_st_over_graphormer_3x_met": ratios["ST / graphormer_2d_paper_12x768"] >= 3.0,
    }


# ---------------------------------------------------------------------------------------------------- report


def markdown(report: dict) -> str:
    cli = report["cli"]
    lines = [
        "# Inference throughput (CPU, raw SMILES -> predictions)",
        "",
        (
            f"One run, side by side (`python benchmarks/inference.py {' '.join(report['argv'])}`), on {report['cpu']} "
            f"with {report['cpu_count']} cores (1-minute load average {report['load_average_at_start']:.2f} at the "
            "start: other work shared the machine, so absolute numbers are pessimistic and ratios are the figures to "
            "read); randomly initialised models."
        ),
        "",
        f"## `molformer-kd predict`, whole process ({cli['n']} SMILES of `{cli['input']}`)",
        "",
        (
            "`threads` for the default runs is what `default_threads()` chose just before the run. Start-up (Python, "
            "torch and transformers imports, model load) is a 1-molecule run of the same command. `err`: the sample's "
            "invalid SMILES, and for the tiny ST also the molecules beyond its `max_atoms` position table."
        ),
        "",
        "| student [setting] | threads | mol/s (whole process) | mol/s after start-up | seconds | start-up s | err |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in cli["runs"].items():
        after_startup = row["after_startup_mol_per_s"]
        after_startup = "n/a (noise)" if after_startup is None else f"{after_startup:.0f}"
        lines.append(
            f"| {name} | {row['threads']} | {row['mol_per_s']:.0f} | {after_startup} "
            f"| {row['seconds']:.1f} | {row['startup_seconds']:.1f} | {row['errors']} |"
        )
    lines += [
        "",
        "Ratios (whole-process mol/s; where the default chose 1 thread, default / threads 1 is run-to-run noise):",
        "",
    ]
    lines += [f"- {name}: {value:.2f}x" for name, value in report["ratios"].items()]
    feat = report["featurizer"]
    lines += [
        "",
        (
            f"## Graph featurizer: Graphormer encodings on and off ({feat['n']} valid SMILES, length-bucketed batches "
            f"of {feat['batch_size']} as the pipeline cuts them, featurize + pad)"
        ),
        "",
        "| featurizer | mol/s | mean padded batch MB |",
        "|---|---|---|",
    ]
    for name, row in feat["runs"].items():
        batch_mb = f"{row['mean_batch_mb']:.2f}" if "mean_batch_mb" in row else ""
        lines.append(f"| {name} | {row['mol_per_s']:.0f} | {batch_mb} |")
    padding = feat["padded_slots_per_atom"]
    lines += [
        "",
        (
            f"Padded atom slots per real atom, batches of {feat['batch_size']}: "
            + ", ".join(f"{name} {value:.2f}" for name, value in padding.items())
            + " (the (N, N, ...) encodings and attention grow with the square of it)."
        ),
    ]
    if "paper" in report:
        paper = report["paper"]
        lines += [
            "",
            (
                f"## Paper presets in one process ({paper['n']} MOSES SMILES, {paper['threads']} threads, batch "
                f"{paper['batch_size']})"
            ),
            "",
            "| model | parameters | mol/s | seconds | errors |",
            "|---|---|---|---|---|",
        ]
        for name, row in paper["runs"].items():
            lines.append(
                f"| {name} | {row['parameters'] / 1e6:.1f}M | {row['mol_per_s']:.1f} | {row['seconds']:.1f} "
                f"| {row['errors']} |"
            )
        lines += [""] + [f"- {name}: {value:.2f}x" for name, value in paper["ratios"].items()]
        met = "met" if paper["target_st_over_graphormer_3x_met"] else "NOT met"
        lines += ["", f"Target ST >= 3x Graphormer 2D on CPU: {met}."]
    else:
        lines += [
            "",
            (
                "Paper-preset students and the chemprop v2 peer row: not in this run (`--paper-models`, "
                "`--chemprop-python`; chemprop needs its own environment)."
            ),
        ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=str(PARITY_SAMPLE), help="SMI file of the CLI runs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--paper-models", action="store_true", help="also run the paper-preset students in-process")
    parser.add_argument("--n", type=int, default=2_000, help="MOSES SMILES of the paper-preset runs")
    parser.add_argument("--threads", type=int, default=2, help="threads of the paper-preset runs")
    parser.add_argument("--warmup", type=int, default=128)
    parser.add_argument("--chemprop-python", default=None, help="python of an environment with chemprop v2")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "inference"))
    args = parser.parse_args()

    report = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "argv": sys.argv[1:],
    }
    with tempfile.TemporaryDirectory() as work:
        report["cli"] = cli_section(Path(work), Path(args.input).resolve())
    runs = {name: row["mol_per_s"] for name, row in report["cli"]["runs"].items()}
    report["ratios"] = {
        f"{student} default / threads 1": runs[f"{student} [default]"] / runs[f"{student} [threads 1]"]
        for student in ("gin_virtual_ogb_5x600", "st_tiny")
    }
    report["ratios"]["gin_virtual_ogb_5x600 int8 / fp32 (default threads)"] = (
        runs["gin_virtual_ogb_5x600 [default, int8]"] / runs["gin_virtual_ogb_5x600 [default]"]
    )
    torch.set_num_threads(1)
    report["featurizer"] = featurizer_section(Path(args.input), args.batch_size)
    feat = report["featurizer"]["runs"]
    report["ratios"]["featurizer chunked / one at a time (with encodings)"] = (
        feat["chunked, with graph encodings"]["mol_per_s"] / feat["one at a time, with graph encodings"]["mol_per_s"]
    )
    report["ratios"]["featurizer chunked without / with graph encodings"] = (
        feat["chunked, without (GIN)"]["mol_per_s"] / feat["chunked, with graph encodings"]["mol_per_s"]
    )
    if args.paper_models:
        report["paper"] = paper_section(args)

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
