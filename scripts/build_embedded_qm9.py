"""Build molformer_kd/data/resources/qm9_embedded.jsonl.gz, the QM9 subset that ships with the package.

Reproducible: the same qm9pack data, seed and size give the same bytes. Steps: read all of qm9pack's QM9
(130,831 molecules), draw ``--size`` molecules with ``--seed``, map each XYZ geometry onto its SMILES heavy atoms
by graph matching (failures are skipped, counted and listed in the file's metadata; the hydrogens keep their
coordinates in ``h_pos``), convert energies to eV and store a seeded 80/10/10 train/validation/test split in the file.

    python scripts/build_embedded_qm9.py [--size 3000] [--seed 0] [--output PATH]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os

import numpy as np
import rdkit

from molformer_kd.data.geometry import BOND_TOLERANCE
from molformer_kd.data.qm9 import (
    EMBEDDED_QM9_PATH,
    HARTREE_TO_EV,
    qm9_mol_id,
    qm9_record,
    read_embedded_qm9,
    read_qm9pack,
    write_embedded_qm9,
)
from molformer_kd.data.splits import DEFAULT_SIZES, SPLIT_NAMES, random_split


def build(size: int, seed: int, output: str) -> None:
    frame = read_qm9pack()
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(frame), size=size, replace=False))
    records, skipped = [], []
    for row in frame.iloc[chosen].to_dict("records"):
        try:
            records.append(qm9_record(row))
        except ValueError as error:
            skipped.append({"where": qm9_mol_id(row["Index"]), "reason": str(error)})

    splits = random_split(len(records), DEFAULT_SIZES, seed)
    split_of = {int(index): name for name, indices in splits.items() for index in indices}
    for index, record in enumerate(records):
        record["split"] = split_of[index]

    gaps = np.array([record["gap"] for record in records])
    metadata = {
        "source": f"qm9pack {importlib.metadata.version('qm9pack')} (PyPI, MIT): QM9, B3LYP/6-31G(2df,p)",
        "builder": "scripts/build_embedded_qm9.py",
        "rdkit": rdkit.__version__,
        "seed": seed,
        "n_qm9": len(frame),
        "n_candidates": size,
        "n_molecules": len(records),
        "n_skipped": len(skipped),
        "skipped": skipped,
        "splits": {name: len(splits[name]) for name in SPLIT_NAMES},
        "split_method": f"random, fractions {list(DEFAULT_SIZES)}, seed {seed}",
        "units": {
            "gap": "eV",
            "homo": "eV",
            "lumo": "eV",
            "u0": "eV",
            "mu": "Debye",
            "pos": "Angstrom",
            "h_pos": "Angstrom",
        },
        "hartree_to_ev": HARTREE_TO_EV,
        "atom_order": "pos rows = heavy atoms of Chem.MolFromSmiles(smiles) in RDKit order (XYZ mapped by graph match)",
        "hydrogens": "h_pos rows = the XYZ atoms that are not SMILES tokens (the hydrogens), in XYZ order",
        "bond_tolerance_angstrom": BOND_TOLERANCE,
    }
    write_embedded_qm9(output, metadata, records)

    # Read back what was written, so the report describes the file and not the in-memory lists.
    written_metadata, written = read_embedded_qm9(output)
    print(f"wrote {output} ({os.path.getsize(output) / 1e6:.2f} MB)")
    print(f"QM9 molecules in qm9pack: {written_metadata['n_qm9']}; drawn with seed {seed}: {size}")
    print(f"kept: {len(written)}; skipped (geometry does not match SMILES): {written_metadata['n_skipped']}")
    for issue in written_metadata["skipped"]:
        print(f"  skipped {issue['where']}: {issue['reason']}")
    print("splits:", written_metadata["splits"])
    print(f"gap (eV): mean {gaps.mean():.4f}, std {gaps.std():.4f}, min {gaps.min():.3f}, max {gaps.max():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=3000, help="molecules drawn from QM9 (before skips)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw and of the split")
    parser.add_argument("--output", default=str(EMBEDDED_QM9_PATH))
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    build(args.size, args.seed, args.output)


if __name__ == "__main__":
    main()
