"""Build QM9 conformations labelled with GFN2-xTB energies and forces (molformer_kd.data.xtb).

Molecules are drawn (seeded, without replacement) from all of QM9 (qm9pack's three parts), each kept as its DFT
geometry plus mass-weighted thermal-like perturbations (see the module docstring of molformer_kd.data.xtb), and
labelled with tblite in parallel worker processes, one thread each. Finished shards are kept in a cache folder keyed
by the settings, so a killed build resumes where it stopped when rerun with the same arguments:

    nice -n 15 python scripts/build_qm9_xtb.py --num-molecules 20000 --conformations 5 \\
        --output runs/qm9_xtb_20k.npz          # --workers defaults to the usable cores

The file shipped in the package (molformer_kd/data/resources/qm9_xtb_small.npz) came from the original recipe:
500 molecules of qm9pack part 1, isotropic noise; this rebuilds it (same molecules, geometries and labels):

    python scripts/build_qm9_xtb.py --num-molecules 500 --conformations 4 --parts 1 --perturbation isotropic \\
        --output molformer_kd/data/resources/qm9_xtb_small.npz

Needs qm9pack (the `qm9` extra; not imported, only its CSVs are read) and tblite (the `xtb` extra).
"""

import argparse
import os

# One OpenMP thread when labelling in this process (--workers 1); worker processes get one thread anyway.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from molformer_kd.data.xtb import PERTURBATIONS, build_qm9_xtb, qm9pack_csv_path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="the merged .npz (written when every shard is done)")
    parser.add_argument("--num-molecules", type=int, default=20000)
    parser.add_argument(
        "--conformations", type=int, default=5, help="conformations per molecule, the DFT geometry included"
    )
    parser.add_argument(
        "--sigma-min",
        type=float,
        default=0.05,
        help="smallest perturbation scale: expected RMS displacement per coordinate, Angstrom",
    )
    parser.add_argument("--sigma-max", type=float, default=0.1, help="largest perturbation scale, Angstrom")
    parser.add_argument("--perturbation", choices=PERTURBATIONS, default="mass-weighted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-atoms", type=int, default=None, help="leave out larger molecules before drawing")
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3], help="qm9pack parts to draw from")
    parser.add_argument("--csv", nargs="+", default=None, help="qm9pack-style CSVs instead of --parts")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: the usable cores)")
    parser.add_argument("--cache-dir", default=None, help="root of the shard cache (default: molformer_kd's cache)")
    parser.add_argument("--shard-size", type=int, default=500, help="molecules per shard (part of the cache key)")
    parser.add_argument("--max-shards", type=int, default=None, help="stop after computing this many shards")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    sources = args.csv if args.csv else [qm9pack_csv_path(part) for part in args.parts]
    summary = build_qm9_xtb(
        args.output,
        num_molecules=args.num_molecules,
        conformations=args.conformations,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
        seed=args.seed,
        max_atoms=args.max_atoms,
        sources=sources,
        perturbation=args.perturbation,
        num_workers=args.workers,
        cache_dir=args.cache_dir,
        shard_size=args.shard_size,
        max_shards=args.max_shards,
        progress=not args.no_progress,
    )
    rate = summary["conformations_per_s"]
    print(
        f"shards: {summary['shards']} ({len(summary['computed_shards'])} computed, {len(summary['reused_shards'])} "
        f"reused) in {summary['cache']}\n"
        f"{summary['molecules']} molecules, {summary['conformations']} conformations labelled, "
        f"{len(summary['failures'])} failed\n"
        f"wall time {summary['wall_time_s']:.1f} s; {summary['computed_conformations']} conformations computed"
        + (f" at {rate:.1f} conformations/s" if rate else "")
    )
    for failure in summary["failures"]:
        print("FAILED", failure)
    if summary["complete"]:
        print(f"wrote {summary['output']}")
    else:
        print("incomplete: rerun the same command to compute the remaining shards")


if __name__ == "__main__":
    main()
