"""The QM9/xTB builder: perturbation schemes, resumable shards, worker-independent results, recorded failures, the CLI.

The builds read a 6-molecule excerpt of qm9pack's CSV (CH4, NH3, H2O, C2H2, HCN, H2CO) in shards of 2 molecules, so a
labelling costs milliseconds; one test starts 2 worker processes (a few seconds of imports), the others label in the
test process.
"""

import ast
import importlib.util
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molformer_kd.data.xtb import (
    QM9_XTB_SMALL,
    build_qm9_xtb,
    load_qm9_xtb,
    perturb_conformations,
    qm9pack_csv_path,
)

ROOT = Path(__file__).resolve().parent.parent
needs_labelling = [
    pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="needs tblite (the xtb extra)"),
    pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="needs qm9pack (the qm9 extra)"),
]
ARRAYS = ("mol_id", "smiles", "num_atoms", "atomic_numbers", "positions", "energy", "forces", "failed_mol_ids")
# A non-linear molecule (C2H5OH-like numbers on a fixed random geometry) and a linear one (HCN).
ETHANOL = [6, 6, 8, 1, 1, 1, 1, 1, 1]
ETHANOL_POSITIONS = np.random.default_rng(0).normal(scale=1.2, size=(9, 3))
HCN = [1, 6, 7]
HCN_POSITIONS = np.array([[0.0, 0.0, -1.07], [0.0, 0.0, 0.0], [0.0, 0.0, 1.16]])
MASSES = {1: 1.008, 6: 12.011, 7: 14.007, 8: 15.999}


@pytest.fixture
def excerpt(tmp_path):
    with open(qm9pack_csv_path(1)) as source:
        lines = [next(source) for _ in range(7)]
    path = tmp_path / "qm9_excerpt.csv"
    path.write_text("".join(lines))
    return path


def build(tmp_path, cache="cache", output="out.npz", **options):
    settings = {"num_molecules": 6, "conformations": 2, "shard_size": 2, "num_workers": 1, "progress": False}
    settings.update(options)
    return build_qm9_xtb(tmp_path / output if output else None, cache_dir=tmp_path / cache, **settings)


def arrays(path):
    with np.load(path) as archive:
        return {key: archive[key] for key in ARRAYS}


def assert_same_arrays(first, second):
    for key in ARRAYS:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.mark.parametrize(("numbers", "positions"), [(ETHANOL, ETHANOL_POSITIONS), (HCN, HCN_POSITIONS)])
def test_mass_weighted_perturbations_are_internal_and_move_light_atoms_more(numbers, positions):
    rng = np.random.default_rng(1)
    geometries = perturb_conformations(numbers, positions, 3001, 0.1, 0.1, rng, "mass-weighted")
    assert len(geometries) == 3001 and all(g.dtype == np.float32 and g.shape == positions.shape for g in geometries)
    np.testing.assert_array_equal(geometries[0], positions.astype(np.float32))  # k = 0: the DFT geometry itself
    displacements = np.stack(geometries[1:]).astype(np.float64) - positions
    masses = np.array([MASSES[z] for z in numbers])
    centred = positions - (masses[:, None] * positions).sum(0) / masses.sum()
    # no rigid translation and no (linearised) rotation: sum m d = 0 and sum m r x d = 0, up to float32 rounding
    np.testing.assert_allclose(np.einsum("i,kij->kj", masses, displacements), 0.0, atol=1e-4)
    angular = np.einsum("i,kij->kj", masses, np.cross(centred[None], displacements))
    np.testing.assert_allclose(angular, 0.0, atol=1e-4)
    # sigma keeps its meaning: the expected RMS displacement per Cartesian coordinate
    assert np.sqrt((displacements**2).mean()) == pytest.approx(0.1, rel=0.03)
    if numbers == ETHANOL:
        # per-atom spread ~ 1/sqrt(m): hydrogens sqrt(12.011 / 1.008) = 3.45x carbon before the rigid motions are
        # projected out; those are mostly heavy-atom motion, so in a molecule this small the ratio grows (to ~4.2)
        spread = np.sqrt((displacements**2).mean(axis=(0, 2)))
        ratio = spread[np.array(numbers) == 1].mean() / spread[np.array(numbers) == 6].mean()
        assert 3.4 < ratio < 5.0


def test_isotropic_perturbations_and_bad_scheme():
    positions = ETHANOL_POSITIONS
    geometries = perturb_conformations(ETHANOL, positions, 2001, 0.05, 0.05, np.random.default_rng(2), "isotropic")
    np.testing.assert_array_equal(geometries[0], positions.astype(np.float32))
    displacements = np.stack(geometries[1:]).astype(np.float64) - positions
    assert np.sqrt((displacements**2).mean()) == pytest.approx(0.05, rel=0.03)
    spread = np.sqrt((displacements**2).mean(axis=(0, 2)))
    np.testing.assert_allclose(spread, 0.05, rtol=0.1)  # every atom alike
    with pytest.raises(ValueError, match="perturbation must be one of"):
        perturb_conformations(ETHANOL, positions, 2, 0.05, 0.1, np.random.default_rng(0), "normal-modes")


def labelling(test):
    """Skip `test` without tblite or qm9pack."""
    for mark in needs_labelling:
        test = mark(test)
    return test


@labelling
def test_killed_build_resumes_from_its_shards_and_workers_do_not_change_the_result(tmp_path, excerpt):
    reference = build(tmp_path, cache="parallel", output="parallel.npz", sources=excerpt, num_workers=2)
    assert reference["complete"] and reference["computed_shards"] == [0, 1, 2] and reference["reused_shards"] == []
    assert reference["molecules"] == 6 and reference["conformations"] == 12 and reference["failures"] == []
    expected = arrays(tmp_path / "parallel.npz")
    folder = Path(reference["cache"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "settings.json",
        "shard_00000.npz",
        "shard_00001.npz",
        "shard_00002.npz",
    ]

    # a lost shard (a kill before it was written) and a damaged one are computed again, and only they
    kept = (folder / "shard_00000.npz").stat().st_mtime_ns
    (folder / "shard_00001.npz").unlink()
    resumed = build(tmp_path, cache="parallel", output="resumed.npz", sources=excerpt, num_workers=2)
    assert resumed["computed_shards"] == [1] and resumed["reused_shards"] == [0, 2]
    assert resumed["computed_conformations"] == 4
    assert (folder / "shard_00000.npz").stat().st_mtime_ns == kept
    assert_same_arrays(arrays(tmp_path / "resumed.npz"), expected)
    (folder / "shard_00002.npz").write_bytes(b"PK\x03\x04 truncated")
    repaired = build(tmp_path, cache="parallel", output="repaired.npz", sources=excerpt)
    assert repaired["computed_shards"] == [2] and repaired["reused_shards"] == [0, 1]
    assert_same_arrays(arrays(tmp_path / "repaired.npz"), expected)

    # stopped after one shard (max_shards), then resumed, in one process: the same file as with 2 workers
    partial = build(tmp_path, cache="serial", output="serial.npz", sources=excerpt, max_shards=1)
    assert not partial["complete"] and partial["output"] is None and not (tmp_path / "serial.npz").exists()
    assert partial["computed_shards"] == [0] and partial["molecules"] == 2 and partial["conformations"] == 4
    finished = build(tmp_path, cache="serial", output="serial.npz", sources=excerpt)
    assert finished["complete"] and finished["computed_shards"] == [1, 2] and finished["reused_shards"] == [0]
    assert finished["output"] == str(tmp_path / "serial.npz")
    assert_same_arrays(arrays(tmp_path / "serial.npz"), expected)
    done = build(tmp_path, cache="serial", output="again.npz", sources=excerpt)
    assert done["computed_shards"] == [] and done["computed_conformations"] == 0
    assert_same_arrays(arrays(tmp_path / "again.npz"), expected)


@labelling
def test_build_is_deterministic_for_a_seed(tmp_path, excerpt):
    options = {"sources": excerpt, "num_molecules": 4, "conformations": 3, "seed": 7}
    first = build(tmp_path, cache="a", output="a.npz", **options)
    second = build(tmp_path, cache="b", output="b.npz", **options)
    other = build(tmp_path, cache="b", output="c.npz", **{**options, "seed": 8})
    assert first["cache"].split(os.sep)[-1] == second["cache"].split(os.sep)[-1] != other["cache"].split(os.sep)[-1]
    a, b, c = arrays(tmp_path / "a.npz"), arrays(tmp_path / "b.npz"), arrays(tmp_path / "c.npz")
    assert_same_arrays(a, b)
    assert len(a["mol_id"]) == 12 and [m.split(":")[1] for m in a["mol_id"][:3]] == ["0", "1", "2"]
    assert not np.array_equal(a["mol_id"], c["mol_id"]) or not np.array_equal(a["positions"], c["positions"])
    with np.load(tmp_path / "a.npz") as archive:
        assert '"seed": 7' in str(archive["settings"]) and '"perturbation": "mass-weighted"' in str(archive["settings"])
    loaded = load_qm9_xtb(tmp_path / "a.npz", validation_fraction=0.25, test_fraction=0.25)
    assert [len(split) for split in loaded.values()] == [6, 3, 3]  # 4 molecules x 3 conformations, by molecule


@labelling
def test_failed_conformations_are_recorded_with_their_reason(tmp_path, excerpt):
    # A made-up molecule 999999: methane with two hydrogens on the same spot, which xTB refuses.
    table = pd.read_csv(excerpt)
    broken = table.iloc[[0]].copy()
    atoms = ast.literal_eval(broken["XYZ_Ang"].iloc[0])
    atoms[2] = atoms[1]
    broken["Index"], broken["XYZ_Ang"] = 999999, repr(atoms)
    source = tmp_path / "broken.csv"
    pd.concat([table, broken]).to_csv(source, index=False)
    summary = build(tmp_path, sources=source, num_molecules=7, shard_size=4)
    failures = summary["failures"]
    assert failures and all(failure.startswith("qm9_999999:") for failure in failures)
    assert "qm9_999999:0 (C): Too close interatomic distances found" in failures
    assert summary["conformations"] + len(failures) == 7 * 2
    stored = arrays(tmp_path / "out.npz")
    assert stored["failed_mol_ids"].tolist() == failures
    assert not set(stored["mol_id"]) & {failure.split(" ")[0] for failure in failures}


@labelling
def test_the_shipped_sample_is_rebuilt_by_its_recipe(tmp_path):
    """The shipped file = 500 molecules of qm9pack part 1 x 4 conformations, isotropic noise (first 5 checked)."""
    summary = build_qm9_xtb(
        None,
        num_molecules=500,
        conformations=4,
        sources=qm9pack_csv_path(1),
        perturbation="isotropic",
        cache_dir=tmp_path,
        shard_size=5,
        max_shards=1,
        num_workers=1,
        progress=False,
    )
    assert summary["computed_shards"] == [0] and summary["conformations"] == 20 and not summary["complete"]
    rebuilt = arrays(Path(summary["cache"]) / "shard_00000.npz")
    shipped = arrays(QM9_XTB_SMALL)
    atoms = int(rebuilt["num_atoms"].sum())
    for key in ("mol_id", "smiles", "num_atoms"):
        np.testing.assert_array_equal(rebuilt[key], shipped[key][:20])
    np.testing.assert_array_equal(rebuilt["atomic_numbers"], shipped["atomic_numbers"][:atoms])
    np.testing.assert_array_equal(rebuilt["positions"], shipped["positions"][:atoms])
    np.testing.assert_allclose(rebuilt["energy"], shipped["energy"][:20], atol=1e-6)
    np.testing.assert_allclose(rebuilt["forces"], shipped["forces"][:atoms], atol=1e-5)


@labelling
def test_command_line_builds_and_summarises(tmp_path, excerpt, monkeypatch, capsys):
    argv = [
        "build_qm9_xtb.py",
        *("--num-molecules", "3", "--conformations", "2", "--workers", "1", "--shard-size", "2"),
        *("--csv", str(excerpt), "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "cli.npz")),
        "--no-progress",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "scripts" / "build_qm9_xtb.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "3 molecules" in printed and "6 conformations labelled" in printed and "0 failed" in printed
    assert "conformations/s" in printed and (tmp_path / "cli.npz").is_file()
    monkeypatch.setattr(sys, "argv", [*argv[:-1], "--max-shards", "0"])
    runpy.run_path(str(ROOT / "scripts" / "build_qm9_xtb.py"), run_name="__main__")
    assert "0 computed, 2 reused" in capsys.readouterr().out
