"""End-to-end CPU inference throughput: raw SMILES -> predictions, featurization included.

Side by side in one run, on the same MOSES SMILES, the same CPU threads and the same batch size:
  - SMILES Transformer student (ST-KD paper preset: 3 plain + 3 biased layers, d=512), SMILES tokenizer;
  - Graphormer 2D (paper preset: 12 layers, d=768), graph featurizer (RDKit + shortest paths + multi-hop edges);
  - GIN-virtual (OGB preset: 5 layers, d=600), graph featurizer;
  - chemprop v2's default D-MPNN, run by scripts/chemprop_throughput.py in its own environment (optional).
Models are randomly initialised: throughput does not depend on the weights. Each molformer_kd model runs through
`MolecularPropertyPredictionPipeline` exactly as `molformer-kd predict` does; featurization-only throughput is
reported too, to show where the time goes.

    python benchmarks/inference.py --n 20000 --batch-size 128 --threads 2 \
        --chemprop-python /tmp/chemprop_env/bin/python --output benchmarks/results/inference

writes `<output>.json` (all numbers) and `<output>.md` (a table with the ratios).
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

import torch
from transformers import set_seed

import molformer_kd  # noqa: F401  (registers the model families)
from molformer_kd.modeling.configuration_gin import GINConfig
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.configuration_smiles_transformer import SmilesTransformerConfig
from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction
from molformer_kd.modeling.modeling_smiles_transformer import SmilesTransformerForMolecularPropertyPrediction
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline
from molformer_kd.tokenization.featurization import MoleculeFeaturizer
from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer

REPO = Path(__file__).resolve().parents[1]


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


def students():
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


def time_pipeline(pipe, smiles, batch_size, warmup):
    pipe(smiles[:warmup], batch_size=batch_size)
    start = time.perf_counter()
    results = pipe(smiles, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return seconds, sum(r["error"] is not None for r in results)


def time_featurization(pipe, smiles, batch_size):
    """Preprocess + collate only (no model): the processor's share of the end-to-end time."""
    start = time.perf_counter()
    for begin in range(0, len(smiles), batch_size):
        pipe.collate([pipe.preprocess(s) for s in smiles[begin : begin + batch_size]])
    return time.perf_counter() - start


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


def markdown(report):
    rows = report["results"]
    lines = [
        "# Inference throughput (CPU, raw SMILES -> predictions)",
        "",
        f"{report['n']} MOSES test SMILES, batch size {report['batch_size']}, {report['threads']} CPU thread(s), "
        f"{report['cpu']}; randomly initialised models; one run, side by side "
        "(`python benchmarks/inference.py " + " ".join(report["argv"]) + "`).",
        "",
        "| model | parameters | end-to-end mol/s | featurization-only mol/s | seconds | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        feat = f"{row['featurize_mol_per_s']:.0f}" if row.get("featurize_mol_per_s") else "(inside)"
        lines.append(
            f"| {name} | {row['parameters'] / 1e6:.1f}M | {row['mol_per_s']:.1f} | {feat} | {row['seconds']:.1f} "
            f"| {row['errors']} |"
        )
    lines += ["", "Ratios (end-to-end molecules/s):", ""]
    lines += [f"- {name}: {value:.2f}x" for name, value in report["ratios"].items()]
    met = "met" if report["target_st_over_graphormer_3x_met"] else "NOT met"
    lines += [
        "",
        (
            f"Target ST >= 3x Graphormer 2D on CPU: {met}. Ratios come from one process on {report['cpu_count']} "
            "CPU cores, one model after the other, on the same SMILES; the featurization-only column shows how much "
            "of each model's time is input preparation and how much is the network itself."
        ),
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="number of MOSES SMILES")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=128)
    parser.add_argument("--chemprop-python", default=None, help="python of an environment with chemprop v2")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "inference"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    smiles = moses_smiles(args.n)
    report = {
        "n": args.n,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "argv": sys.argv[1:],
        "results": {},
    }
    for name, (model, processor) in students().items():
        pipe = MolecularPropertyPredictionPipeline(model=model.eval(), device=-1, **processor)
        seconds, errors = time_pipeline(pipe, smiles, args.batch_size, args.warmup)
        featurize_seconds = time_featurization(pipe, smiles, args.batch_size)
        report["results"][name] = {
            "mol_per_s": args.n / seconds,
            "seconds": seconds,
            "featurize_mol_per_s": args.n / featurize_seconds,
            "errors": errors,
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        print(name, json.dumps(report["results"][name]), flush=True)
        del pipe, model
    if args.chemprop_python:
        chem = run_chemprop(args.chemprop_python, smiles, args.batch_size, args.threads, args.warmup)
        report["results"]["chemprop_v2_dmpnn_default"] = {
            "mol_per_s": chem["molecules_per_s"],
            "seconds": chem["seconds"],
            "errors": chem["molecules"] - chem["predictions"],
            "parameters": chem["parameters"],
            "chemprop": chem["chemprop"],
        }
        print("chemprop", json.dumps(chem), flush=True)

    speed = {name: row["mol_per_s"] for name, row in report["results"].items()}
    st = speed["st_paper_3+3_d512"]
    report["ratios"] = {f"ST / {name}": st / value for name, value in speed.items() if not name.startswith("st_")}
    report["target_st_over_graphormer_3x_met"] = report["ratios"]["ST / graphormer_2d_paper_12x768"] >= 3.0

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
