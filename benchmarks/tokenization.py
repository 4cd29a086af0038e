"""SMILES -> model-input throughput, single process, on MOSES test SMILES.

Rows, measured in one run on the same SMILES: RDKit `Chem.MolFromSmiles` (the reference), our `parse_smiles`,
`SmilesTokenizer` (`encode_smiles`, and the full `tokenizer(smiles)` call; no padding), `StBaseTokenizer`, and the
graph featurizer's batched public call `featurizer(list_of_smiles)` on lists of `--featurizer-batch` SMILES, twice:
as a GIN student runs it (`MoleculeFeaturizer(graph_encodings=False)`: OGB atom/bond features, edge_index, degree;
no shortest paths, no (N, N) encodings) and as a Graphormer runs it (default settings, with `spatial_pos`,
`attn_edge_type` and `edge_input`). Both use the other defaults (`use_3d=False`, `max_atoms=512`).
A last row times the floor of any exact featurizer (`exact_featurizer_floor`): what is left to the GIN featurizer
beyond it is the part any optimisation could still remove.
Rows run interleaved chunk by chunk, so the load of a shared machine drifts over all rows alike; ratios compare the
same chunks.
Targets: parser >= 5x RDKit, GIN featurizer >= 0.5x RDKit (issue #20).

    python benchmarks/tokenization.py                 # 100k SMILES -> benchmarks/results/tokenization.{json,md}
    python benchmarks/tokenization.py --n 5000 --output /tmp/tok   # quick run
"""

import argparse
import csv
import gzip
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import rdkit
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import rdchem

from molformer_kd.tokenization.featurization import MoleculeFeaturizer
from molformer_kd.tokenization.smiles_grammar import parse_smiles
from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer
from molformer_kd.tokenization.tokenization_st_base import StBaseTokenizer

REPO = Path(__file__).resolve().parents[1]
GIN_FEATURIZER_ROW = "MoleculeFeaturizer(graph_encodings=False)(batch of SMILES), GIN path"
GRAPHORMER_FEATURIZER_ROW = "MoleculeFeaturizer()(batch of SMILES), with Graphormer encodings"
FLOOR_ROW = "floor of an exact featurizer: parse_smiles + MolFromSmiles + RDKit atom reads"
FEATURIZER_ROWS = (GIN_FEATURIZER_ROW, GRAPHORMER_FEATURIZER_ROW, FLOOR_ROW)
# The atom properties only RDKit's sanitized molecule knows (the parse gives atomic numbers and bonds; chirality and
# radicals need no read for a SMILES without `@` or `[`): each is read through its own getter on a wrapped atom, since
# RDKit's Python API has no per-molecule array of them.
RDKIT_ONLY_ATOM_GETTERS = (
    rdchem.Atom.GetFormalCharge,
    rdchem.Atom.GetTotalNumHs,
    rdchem.Atom.GetHybridization,
    rdchem.Atom.GetIsAromatic,
    rdchem.Atom.IsInRing,
)
TARGETS = {"parse_smiles": 5.0, GIN_FEATURIZER_ROW: 0.5}


def moses_smiles(n: int) -> list[str]:
    spec = importlib.util.find_spec("moses")  # locate the data without importing moses (heavy dependencies)
    if spec is None:
        raise SystemExit("MOSES data not found: pip install --no-deps molsets")
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset" / "data" / "test.csv.gz"
    with gzip.open(path, "rt", newline="") as handle:
        smiles = [row["SMILES"] for _, row in zip(range(n), csv.DictReader(handle))]
    if len(smiles) < n:
        raise SystemExit(f"{path} has only {len(smiles)} SMILES, asked for {n}")
    return smiles


def exact_featurizer_floor(smiles: str) -> None:
    """The least work of a featurizer that is exact (features as RDKit's sanitized molecule has them) behind the
    front door (a grammar parse for errors at a position): parse, RDKit parse and sanitize, wrap every atom and read
    `RDKIT_ONLY_ATOM_GETTERS`. No bonds, no numpy, no output: a lower bound on `MoleculeFeaturizer`'s time."""
    parse_smiles(smiles)
    mol = Chem.MolFromSmiles(smiles)
    atoms = list(map(mol.GetAtomWithIdx, range(mol.GetNumAtoms())))
    for getter in RDKIT_ONLY_ATOM_GETTERS:
        list(map(getter, atoms))


def interleaved_times(rows, smiles: list[str], chunk: int, featurizer_chunks: int) -> dict[str, list[float]]:
    """Seconds each row spends on each chunk of SMILES, rows interleaved chunk by chunk so that the load of a
    shared machine drifts over all rows alike; the featurizer rows run on the first `featurizer_chunks` only."""
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for c, start in enumerate(range(0, len(smiles), chunk)):
        part = smiles[start : start + chunk]
        # Rotate which row goes first on each chunk: a row timed right after another pays for the caches and
        # allocator state the other left behind, and rotating spreads that cost over all rows alike.
        for name, fn in rows[c % len(rows) :] + rows[: c % len(rows)]:
            if name in FEATURIZER_ROWS and c >= featurizer_chunks:
                continue
            t0 = time.perf_counter()
            fn(part)
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="number of MOSES test SMILES (default 100000)")
    ap.add_argument("--chunk", type=int, default=5000, help="SMILES per interleaving chunk")
    ap.add_argument(
        "--featurizer-n", type=int, default=None, help="SMILES for the (slow) featurizer rows; default: all --n"
    )
    ap.add_argument("--featurizer-batch", type=int, default=128, help="SMILES per featurizer call (a model batch)")
    ap.add_argument(
        "--output",
        default=str(REPO / "benchmarks" / "results" / "tokenization"),
        help="writes OUTPUT.json and OUTPUT.md",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    RDLogger.DisableLog("rdApp.*")
    smiles = moses_smiles(args.n)
    smiles_tok, st_base_tok = SmilesTokenizer(), StBaseTokenizer()

    def each(fn):
        # Results are dropped one by one, as a streaming consumer would: keeping a chunk's worth of small objects
        # alive would time the garbage collector, not the function.
        def run(part):
            for s in part:
                fn(s)

        return run

    def batched(fn, size):
        # The featurizer's public call takes a list; it is timed on model-batch-sized lists, as a collator calls it.
        def run(part):
            for start in range(0, len(part), size):
                fn(part[start : start + size])

        return run

    # Every row maps a chunk of SMILES; the featurizer's public call is batched (`featurizer(list)`), once as a GIN
    # student runs it and once with the Graphormer encodings.
    rows = [
        ("RDKit Chem.MolFromSmiles", each(Chem.MolFromSmiles)),
        ("RDKit Chem.MolFromSmiles(sanitize=False)", each(lambda s: Chem.MolFromSmiles(s, sanitize=False))),
        ("parse_smiles", each(parse_smiles)),
        ("SmilesTokenizer.encode_smiles", each(smiles_tok.encode_smiles)),
        ("SmilesTokenizer(smiles)", each(smiles_tok)),
        ("StBaseTokenizer(smiles)", each(st_base_tok)),
        (GIN_FEATURIZER_ROW, batched(MoleculeFeaturizer(graph_encodings=False), args.featurizer_batch)),
        (GRAPHORMER_FEATURIZER_ROW, batched(MoleculeFeaturizer(), args.featurizer_batch)),
        (FLOOR_ROW, each(exact_featurizer_floor)),
    ]
    for _, fn in rows:  # warm-up: imports, caches
        fn(smiles[:200])
    featurizer_n = min(args.featurizer_n or args.n, args.n)
    featurizer_chunks = -(-featurizer_n // args.chunk)
    times = interleaved_times(rows, smiles, args.chunk, featurizer_chunks)
    reference = times[rows[0][0]]
    results = []
    for name, _ in rows:
        row_times = times[name]
        molecules = min(len(smiles), len(row_times) * args.chunk)
        row = {
            "name": name,
            "molecules": molecules,
            "seconds": round(sum(row_times), 3),
            "mol_per_s": round(molecules / sum(row_times), 1),
            # against RDKit on the same chunks, timed next to each other
            "ratio_vs_rdkit": round(sum(reference[: len(row_times)]) / sum(row_times), 3),
        }
        if name in TARGETS:
            row["target_ratio"] = TARGETS[name]
            row["meets_target"] = row["ratio_vs_rdkit"] >= TARGETS[name]
        results.append(row)
        print(f"{name:45s} {row['mol_per_s']:12,.0f} mol/s  {row['ratio_vs_rdkit']:6.2f}x RDKit", flush=True)
    report = {
        "command": "python benchmarks/tokenization.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "corpus": f"MOSES test.csv.gz, first {args.n} SMILES",
        "mean_smiles_length": round(sum(map(len, smiles)) / len(smiles), 2),
        "python": platform.python_version(),
        "rdkit": rdkit.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "single_process": True,
        "chunk": args.chunk,
        "rows": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output + ".json", "w") as f:
        json.dump(report, f, indent=1)
    lines = [
        "# SMILES -> model input throughput (single process)",
        "",
        (
            f"Corpus: {report['corpus']} (mean length {report['mean_smiles_length']} characters). Rows run "
            f"interleaved in chunks of {args.chunk} SMILES; ratios against `Chem.MolFromSmiles` on the same chunks. "
            f"RDKit {rdkit.__version__}, Python {report['python']}, {report['cpu_count']} CPUs (shared)."
        ),
        "",
        f"Command: `{report['command']}`",
        "",
        "| step | molecules | mol/s | x RDKit MolFromSmiles | target |",
        "|---|---:|---:|---:|---|",
    ]
    for row in results:
        target = ""
        if "target_ratio" in row:
            target = f">= {row['target_ratio']}x: {'met' if row['meets_target'] else 'NOT met'}"
        lines.append(
            f"| {row['name']} | {row['molecules']} | {row['mol_per_s']:,.0f} | {row['ratio_vs_rdkit']:.2f} | {target} |"
        )
    with open(args.output + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.output}.json and {args.output}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
