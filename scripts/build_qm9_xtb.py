"""Build the QM9 conformations labelled with GFN2-xTB energies and forces (molformer_kd.data.xtb).

Reproducible: the molecules and perturbations are fixed by --seed. The defaults rebuild the file shipped in the
package (molformer_kd/data/resources/qm9_xtb_small.npz):

    OMP_NUM_THREADS=1 python scripts/build_qm9_xtb.py

Needs qm9pack (the `qm9` extra; not imported, only its CSV is read) and tblite (the `xtb` extra).
"""

import argparse
import os
import time

from molformer_kd.data.xtb import QM9_XTB_SMALL, build_qm9_xtb


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(QM9_XTB_SMALL))
    parser.add_argument("--num-molecules", type=int, default=500)
    parser.add_argument(
        "--perturbed-per-molecule",
        type=int,
        default=3,
        help="perturbed copies per molecule, besides the DFT geometry itself",
    )
    parser.add_argument("--sigma-min", type=float, default=0.05, help="Angstrom")
    parser.add_argument("--sigma-max", type=float, default=0.1, help="Angstrom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-atoms", type=int, default=None)
    parser.add_argument("--csv", default=None, help="a qm9pack-style CSV (default: qm9pack's qm9_part1.csv)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    summary = build_qm9_xtb(
        args.output,
        num_molecules=args.num_molecules,
        perturbed_per_molecule=args.perturbed_per_molecule,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
        seed=args.seed,
        max_atoms=args.max_atoms,
        csv_path=args.csv,
    )
    print(
        f"wrote {args.output}: {summary['conformations']} conformations of {summary['molecules']} molecules "
        f"in {time.perf_counter() - start:.0f} s; {len(summary['failures'])} failed"
    )
    for failure in summary["failures"]:
        print("FAILED", failure)


if __name__ == "__main__":
    main()
