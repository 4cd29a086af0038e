"""Would a teacher that reads semi-empirical quantum chemistry know more than the 2D models? A cheap probe first.

The idea (issue #16): GFN2-xTB, run on a molecule's DFT geometry, gives frontier-orbital energies in a few
milliseconds. A teacher fed those as extra inputs would hold information no 2D student can compute from the graph,
which is what distillation needs. Before building such a teacher, this measures how much the xTB numbers add to
models already trained on the config's split:

1. xTB alone: a least-squares linear map from the molecule's xTB descriptors (HOMO, LUMO, gap, HOMO-1, LUMO+1,
   |dipole|, energy per atom) to each DFT target, fitted on the training split, scored on the test split.
2. Stacked: for each trained model given with `--predictions NAME=FILE` (an evaluate stage's predictions.csv),
   its test prediction plus the xTB descriptors, mapped to the target by a linear least-squares fit and by a small
   MLP, both scored by 5-fold cross-validation on the test split. If the stack beats the model by a wide margin the
   xTB inputs carry what the model missed; if not, a teacher fed with them would gain little.

    python benchmarks/teacher_xtb_probe.py --config configs/pretrained/qm9_teacher.yaml \\
        --predictions teacher_2d3d=runs/pretrained/teacher/evaluate/predictions.csv \\
        --predictions gin_alone=runs/pretrained/qm9_gin_alone/evaluate/predictions.csv
    # -> benchmarks/results/teacher_xtb_probe.{json,md}

The descriptors of every molecule of the split are computed once (one process, ~7 ms a molecule) and cached under
the molformer_kd cache folder, keyed by the molecules and the tblite version. Needs the `qm9` and `xtb` extras.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from molformer_kd.data.caching import atomic_write, cache_root
from molformer_kd.data.qm9 import HARTREE_TO_EV, qm9_mol_id, read_qm9pack
from molformer_kd.data.xtb import BOHR_IN_ANGSTROM, METHOD
from molformer_kd.distillation.config import parse_config, read_config
from molformer_kd.distillation.tasks import load_records

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTORS = (
    "xtb_homo",
    "xtb_lumo",
    "xtb_gap",
    "xtb_homo_minus_1",
    "xtb_lumo_plus_1",
    "xtb_dipole",
    "xtb_energy_per_atom",
)
ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
FOLDS = 5


def xtb_descriptors(atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The `DESCRIPTORS` of one molecule from a GFN2-xTB single point: orbital and per-atom energies in eV, |dipole|
    in atomic units (e * bohr)."""
    from tblite.interface import Calculator

    calculator = Calculator(METHOD, atomic_numbers, positions / BOHR_IN_ANGSTROM)
    calculator.set("verbosity", 0)
    result = calculator.singlepoint()
    orbitals = np.asarray(result.get("orbital-energies")) * HARTREE_TO_EV
    homo = int(np.flatnonzero(np.asarray(result.get("orbital-occupations")) > 1e-6)[-1])
    lumo_plus_1 = orbitals[min(homo + 2, len(orbitals) - 1)]
    return np.array(
        [
            orbitals[homo],
            orbitals[homo + 1],
            orbitals[homo + 1] - orbitals[homo],
            orbitals[homo - 1] if homo > 0 else orbitals[homo],
            lumo_plus_1,
            float(np.linalg.norm(result.get("dipole"))),
            float(result.get("energy")) * HARTREE_TO_EV / len(atomic_numbers),
        ]
    )


def split_descriptors(mol_ids: list[str], cache_dir: Path | None) -> dict[str, np.ndarray]:
    """mol_id -> descriptors for QM9 molecules, from the cache or computed on their qm9pack DFT geometries."""
    key = hashlib.sha256(
        json.dumps([sorted(mol_ids), importlib.metadata.version("tblite"), DESCRIPTORS]).encode()
    ).hexdigest()[:16]
    path = cache_root(cache_dir) / "qm9_xtb_descriptors" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return dict(zip(cached["mol_id"].tolist(), cached["descriptors"]))
    wanted = set(mol_ids)
    frame = read_qm9pack()
    frame = frame[[qm9_mol_id(index) in wanted for index in frame["Index"]]]
    values = {}
    for row in tqdm(frame.itertuples(index=False), total=len(frame), desc="GFN2-xTB descriptors"):
        numbers = np.array([ELEMENTS[element] for element in ast.literal_eval(row.Elements)])
        values[qm9_mol_id(row.Index)] = xtb_descriptors(numbers, np.asarray(ast.literal_eval(row.XYZ_Ang)))
    missing = wanted - set(values)
    if missing:
        raise ValueError(f"{len(missing)} molecules of the split are not in qm9pack, e.g. {sorted(missing)[:3]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = sorted(values)
    atomic_write(path, lambda f: np.savez(f, mol_id=np.array(ids), descriptors=np.stack([values[i] for i in ids])))
    return values


def least_squares(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Weights (with a bias last) of the linear least-squares fit."""
    return np.linalg.lstsq(np.c_[features, np.ones(len(features))], target, rcond=None)[0]


def linear_predict(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    return np.c_[features, np.ones(len(features))] @ weights


def mlp_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int) -> np.ndarray:
    """A 2 x 64 tanh MLP on standardized inputs, full-batch Adam on the L1 loss, 1500 steps."""
    torch.manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    y_mean, y_std = train_y.mean(), train_y.std()
    x = torch.tensor((train_x - mean) / std, dtype=torch.float32)
    y = torch.tensor((train_y - y_mean) / y_std, dtype=torch.float32)
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 1),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(1500):
        optimizer.zero_grad()
        loss = (model(x).squeeze(-1) - y).abs().mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = model(torch.tensor((test_x - mean) / std, dtype=torch.float32)).squeeze(-1).numpy()
    return out * y_std + y_mean


def cross_validated_errors(features: np.ndarray, target: np.ndarray, seed: int) -> dict[str, float]:
    """Test MAE of the linear and MLP stacks, each molecule predicted by the fold that did not see it."""
    folds = np.random.default_rng(seed).permutation(len(target)) % FOLDS
    linear, mlp = np.empty(len(target)), np.empty(len(target))
    for fold in range(FOLDS):
        fit, held = folds != fold, folds == fold
        linear[held] = linear_predict(least_squares(features[fit], target[fit]), features[held])
        mlp[held] = mlp_predict(features[fit], target[fit], features[held], seed + fold)
    return {"linear": float(np.abs(linear - target).mean()), "mlp": float(np.abs(mlp - target).mean())}


def write_markdown(result: dict, path: Path) -> None:
    labels = result["labels"]
    lines = [
        "# Teacher probe: do GFN2-xTB orbital energies add to the trained models?",
        "",
        f"`{result['command']}`",
        "",
        f"Split: `{result['config']}` ({result['sizes']['train']} train / {result['sizes']['test']} test molecules). "
        f"GFN2-xTB ({result['tblite']}) single points on the DFT geometries, hydrogens included; descriptors: "
        f"{', '.join(DESCRIPTORS)}. Stacks are scored by {FOLDS}-fold cross-validation on the test split (each "
        "molecule predicted by a fit that did not see it). Test MAE in the labels' units (eV).",
        "",
        "| row | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        "| xTB descriptors alone, linear (fitted on train) | "
        + " | ".join(f"{result['xtb_alone'][label]:.4f}" for label in labels)
        + " |",
    ]
    for name, rows in result["models"].items():
        for row, caption in (
            ("model", f"`{name}` as trained"),
            ("linear", f"`{name}` + xTB, linear stack"),
            ("mlp", f"`{name}` + xTB, MLP stack"),
        ):
            lines.append(f"| {caption} | " + " | ".join(f"{rows[label][row]:.4f}" for label in labels) + " |")
    lines += ["", "## Ratios (best stack / model as trained)", ""]
    for name, rows in result["models"].items():
        ratios = ", ".join(
            f"{label} {min(rows[label]['linear'], rows[label]['mlp']) / rows[label]['model']:.3f}" for label in labels
        )
        lines.append(f"- `{name}`: {ratios}")
    lines += [
        "",
        f"Wall time: descriptors {result['descriptor_seconds']:.0f} s (0 when cached), total "
        f"{result['seconds']:.0f} s.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/pretrained/qm9_teacher.yaml")
    parser.add_argument("--predictions", action="append", default=[], help="NAME=predictions.csv (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/teacher_xtb_probe")
    args = parser.parse_args()
    start = time.perf_counter()

    data = parse_config(read_config(args.config)).data
    records = load_records(data)
    labels = list(data.label_columns)
    ids = {split: list(records[split]["mol_id"]) for split in ("train", "test")}
    began = time.perf_counter()
    descriptors = split_descriptors(ids["train"] + ids["test"], args.cache_dir)
    descriptor_seconds = time.perf_counter() - began
    features = {split: np.stack([descriptors[i] for i in ids[split]]) for split in ids}
    targets = {split: {label: np.asarray(records[split][label], dtype=np.float64) for label in labels} for split in ids}

    xtb_alone = {}
    for label in labels:
        weights = least_squares(features["train"], targets["train"][label])
        xtb_alone[label] = float(np.abs(linear_predict(weights, features["test"]) - targets["test"][label]).mean())

    models = {}
    for entry in args.predictions:
        name, _, file = entry.partition("=")
        predictions = pd.read_csv(file).set_index("mol_id")
        absent = set(ids["test"]) - set(predictions.index)
        if absent:
            raise ValueError(
                f"{file}: {len(absent)} test molecules of {args.config} missing, e.g. {sorted(absent)[:3]}"
            )
        predictions = predictions.loc[ids["test"]]
        models[name] = {}
        for label in labels:
            own = predictions[f"{label}_pred"].to_numpy()
            target = targets["test"][label]
            stacked = cross_validated_errors(np.c_[own, features["test"]], target, args.seed)
            models[name][label] = {"model": float(np.abs(own - target).mean()), **stacked}

    result = {
        "command": "python benchmarks/teacher_xtb_probe.py " + " ".join(f"--predictions {p}" for p in args.predictions),
        "config": str(args.config.resolve().relative_to(ROOT))
        if args.config.resolve().is_relative_to(ROOT)
        else str(args.config),
        "sizes": {split: len(ids[split]) for split in ids},
        "labels": labels,
        "descriptors": list(DESCRIPTORS),
        "tblite": importlib.metadata.version("tblite"),
        "python": platform.python_version(),
        "xtb_alone": xtb_alone,
        "models": models,
        "descriptor_seconds": descriptor_seconds,
        "seconds": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
