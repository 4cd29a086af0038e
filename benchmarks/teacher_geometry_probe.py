"""How much a trained teacher reads the coordinates: its test MAE with the DFT geometry, with that geometry perturbed,
and with RDKit conformers (ETKDGv3 + MMFF94) in its place.

A teacher that exploits geometry loses accuracy when the geometry is wrong; one whose MAE does not move learned the
property from the atoms and bonds alone, and then has nothing to teach a 2D student that the student could not
learn itself. The RDKit row is also what a user gets when a 3D teacher runs on generated conformers.

    python benchmarks/teacher_geometry_probe.py --config configs/pretrained/qm9_teacher.yaml \\
        --teacher runs/pretrained/teacher/teacher        # -> benchmarks/results/teacher_geometry_probe.{json,md}

The split is the config's; the teacher is any property model that reads `pos` (geometry 3d or 2d+3d). Molecules
whose RDKit embedding fails keep out of every row, so all rows score the same molecules.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from molformer_kd.data.conformers import embed_conformer
from molformer_kd.data.metrics import per_label_metrics
from molformer_kd.distillation.config import parse_config, read_config
from molformer_kd.distillation.tasks import load_records
from molformer_kd.modeling import AutoModelForMolecularPropertyPrediction
from molformer_kd.tokenization.collators import SingleModelCollator
from molformer_kd.tokenization.processors import load_processor

ROOT = Path(__file__).resolve().parents[1]


def predict(model: torch.nn.Module, collator: SingleModelCollator, rows: list[dict], batch_size: int) -> np.ndarray:
    """(N, T) predictions in the labels' units."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = collator(rows[start : start + batch_size])
            logits = model(**batch["student_inputs"]).logits
            outputs.append(model.head.transform(logits).numpy())
    return np.concatenate(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/pretrained/qm9_teacher.yaml")
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs/pretrained/teacher/teacher")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.2], help="noise per coordinate, A")
    parser.add_argument("--max-molecules", type=int, default=None, help="first N test molecules (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/teacher_geometry_probe")
    args = parser.parse_args()

    data = parse_config(read_config(args.config)).data
    test = load_records(data)["test"]
    if args.max_molecules:
        test = test.select(range(min(args.max_molecules, len(test))))
    model = AutoModelForMolecularPropertyPrediction.from_pretrained(args.teacher).eval()
    if not getattr(model.config, "reads_coordinates", False):
        raise SystemExit(f"{args.teacher}: geometry {model.config.geometry!r} does not read coordinates")
    labels = list(data.label_columns)
    collator = SingleModelCollator(load_processor(args.teacher), label_columns=labels)

    started = time.perf_counter()
    rows, rdkit_pos = [], []
    for row in test:
        pos, _, error = embed_conformer(row["smiles"], seed=args.seed)
        if error is None:
            rows.append(dict(row))
            rdkit_pos.append(pos)
    embed_seconds = time.perf_counter() - started
    targets = np.array([[row[label] for label in labels] for row in rows], dtype=np.float64)
    rng = np.random.default_rng(args.seed)
    geometries = {"DFT geometry (as trained)": [row["pos"] for row in rows]}
    for sigma in args.sigmas:
        geometries[f"DFT + Gaussian noise {sigma} A per coordinate"] = [
            (np.asarray(row["pos"]) + sigma * rng.standard_normal((len(row["pos"]), 3))).tolist() for row in rows
        ]
    geometries["RDKit ETKDGv3 + MMFF94 conformer"] = rdkit_pos
    results = {}
    for name, positions in geometries.items():
        predictions = predict(model, collator, [{**r, "pos": p} for r, p in zip(rows, positions)], args.batch_size)
        results[name] = per_label_metrics(predictions, targets, labels)
    report = {
        "teacher": str(args.teacher),
        "config": str(args.config),
        "molecules": len(rows),
        "embedding_failures": len(test) - len(rows),
        "rdkit_embedding_seconds": embed_seconds,
        "metrics": results,
    }
    reference = results["DFT geometry (as trained)"]
    lines = [
        "# Does the teacher read the geometry? Test MAE with other coordinates",
        "",
        f"`python benchmarks/teacher_geometry_probe.py --config {args.config.relative_to(ROOT)} --teacher "
        f"{args.teacher.relative_to(ROOT) if args.teacher.is_relative_to(ROOT) else args.teacher}`: "
        f"{len(rows)} test molecules ({report['embedding_failures']} without an RDKit conformer left out).",
        "",
        "| coordinates | " + " | ".join(f"{label} MAE (eV)" for label in labels) + " | gap MAE / DFT's |",
        "|---" * (len(labels) + 2) + "|",
    ]
    for name, metrics in results.items():
        cells = " | ".join(f"{metrics[f'{label}_mae']:.4f}" for label in labels)
        ratio = metrics[f"{labels[-1]}_mae"] / reference[f"{labels[-1]}_mae"]
        lines.append(f"| {name} | {cells} | {ratio:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
