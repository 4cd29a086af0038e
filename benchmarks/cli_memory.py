"""Peak memory of `molformer-kd predict` on 20k vs 200k input rows: streaming keeps it flat.

Writes two CSV inputs from the MOSES training split (real drug-like SMILES), saves a tiny randomly initialised
student (SMILES Transformer by default, `--student gin` for the graph path), runs the CLI on each input in a fresh
subprocess and reads that subprocess's peak resident set size
(`getrusage(RUSAGE_CHILDREN).ru_maxrss` of a wrapper process that only starts the CLI). Target: the 200k run
needs at most 1.5x the peak memory of the 20k run.

    python benchmarks/cli_memory.py --small 20000 --large 200000 --output benchmarks/results/cli_memory
"""

import argparse
import csv
import gzip
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI as a child and reports the child's peak RSS (Linux: ru_maxrss in KiB).
MEASURE = """
import resource, subprocess, sys
code = subprocess.call([sys.executable, "-m", "molformer_kd.cli", *sys.argv[1:]])
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "EXIT", code)
"""


def moses_train_smiles(n: int) -> list[str]:
    spec = importlib.util.find_spec("moses")
    if spec is None:
        raise SystemExit("MOSES data not found: pip install --no-deps molsets")
    path = Path(spec.submodule_search_locations[0]) / "dataset" / "data" / "train.csv.gz"
    with gzip.open(path, "rt", newline="") as handle:
        smiles = [row["SMILES"] for _, row in zip(range(n), csv.DictReader(handle))]
    if len(smiles) < n:
        raise SystemExit(f"{path} has only {len(smiles)} SMILES")
    return smiles


def save_student(directory: Path, family: str) -> str:
    """Save a tiny randomly initialised student with its processor; returns a description."""
    import torch

    import molformer_kd  # noqa: F401

    torch.manual_seed(0)
    if family == "st":
        from molformer_kd.modeling.configuration_smiles_transformer import SmilesTransformerConfig
        from molformer_kd.modeling.modeling_smiles_transformer import SmilesTransformerForMolecularPropertyPrediction
        from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer

        config = SmilesTransformerConfig.from_preset("tiny", num_labels=1)
        SmilesTransformerForMolecularPropertyPrediction(config).save_pretrained(directory)
        SmilesTokenizer().save_pretrained(directory)
        return "SMILES Transformer tiny (1+1 layers, d=32), random init"
    from molformer_kd.modeling.configuration_gin import GINConfig
    from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction
    from molformer_kd.tokenization.featurization import MoleculeFeaturizer

    GINForMolecularPropertyPrediction(GINConfig.from_preset("tiny", num_labels=1)).save_pretrained(directory)
    MoleculeFeaturizer().save_pretrained(directory)
    return "GIN tiny (2 x 32), random init"


def measure(model_dir: Path, input_path: Path, output_path: Path, args) -> dict:
    command = [sys.executable, "-c", MEASURE, "predict", "--model", str(model_dir), "--input", str(input_path)]
    command += ["--output", str(output_path), "--batch-size", str(args.batch_size)]
    command += ["--chunk-size", str(args.chunk_size), "--threads", str(args.threads), "--quiet"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    line = next(line for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_KIB"))
    fields = line.split()
    if fields[3] != "0":
        raise SystemExit(f"the CLI failed on {input_path}:\n{result.stderr[-3000:]}")
    return {"peak_rss_mib": int(fields[1]) / 1024, "seconds": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--student", choices=("st", "gin"), default="st", help="tiny student family to run")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "cli_memory"))
    args = parser.parse_args()

    smiles = moses_train_smiles(args.large)
    report = {"argv": sys.argv[1:], "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report["model"] = save_student(tmp / "model", args.student)
        for n in (args.small, args.large):
            input_path = tmp / f"moses_{n}.csv"
            with open(input_path, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["smiles"])
                writer.writerows([s] for s in smiles[:n])
            run = measure(tmp / "model", input_path, tmp / f"preds_{n}.parquet", args)
            run["rows"] = n
            report["runs"][str(n)] = run
            print(json.dumps(run), flush=True)
    small, large = report["runs"][str(args.small)], report["runs"][str(args.large)]
    report["peak_rss_ratio_large_over_small"] = large["peak_rss_mib"] / small["peak_rss_mib"]
    report["target_ratio_at_most_1_5_met"] = report["peak_rss_ratio_large_over_small"] <= 1.5

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# CLI peak memory vs. input size",
        "",
        (
            f"`python benchmarks/cli_memory.py {' '.join(report['argv'])}` ({report['model']}, chunk size "
            f"{args.chunk_size}, batch size {args.batch_size}, {args.threads} thread(s), Parquet output)."
        ),
        "",
        "| input rows | peak RSS (MiB) | seconds |",
        "|---|---|---|",
        *[f"| {r['rows']} | {r['peak_rss_mib']:.0f} | {r['seconds']:.0f} |" for r in report["runs"].values()],
        "",
        (
            f"Peak RSS ratio {args.large} / {args.small} rows: {report['peak_rss_ratio_large_over_small']:.2f} "
            "(target <= 1.5)."
        ),
        "",
    ]
    output.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
