"""QM9/xTB energy-force data: shipped file, split, labels and units, collator, reference energies, metrics.

The builder (shards, resumption, perturbations, failures) is tested in test_xtb_builder.py.
"""

import importlib.util

import numpy as np
import pytest
import torch
from datasets import Dataset

from molformer_kd.data.metrics import EnergyForceMetrics, gap_closed
from molformer_kd.data.qm9 import HARTREE_TO_EV
from molformer_kd.data.xtb import (
    BOHR_IN_ANGSTROM,
    fit_atom_reference_energies,
    load_qm9_xtb,
    xtb_energy_and_forces,
)
from molformer_kd.tokenization.collators import PointCloudCollator

needs_tblite = pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="needs tblite (the xtb extra)")


@pytest.fixture(scope="module")
def data():
    return load_qm9_xtb()


def test_shipped_file_loads_with_a_fixed_molecule_split(data):
    assert {name: len(split) for name, split in data.items()} == {"train": 1600, "validation": 200, "test": 200}
    molecules = {name: {m.split(":")[0] for m in split["mol_id"]} for name, split in data.items()}
    assert not (molecules["train"] & molecules["validation"]) and not (molecules["train"] & molecules["test"])
    assert not (molecules["validation"] & molecules["test"])
    assert load_qm9_xtb()["test"]["mol_id"] == data["test"]["mol_id"]
    assert load_qm9_xtb(split_seed=1)["test"]["mol_id"] != data["test"]["mol_id"]
    by_conformation = load_qm9_xtb(split_by="conformation")
    assert sum(len(split) for split in by_conformation.values()) == 2000
    row = data["train"][0]
    n = len(row["atomic_numbers"])
    assert np.array(row["positions"]).shape == (n, 3) and np.array(row["forces"]).shape == (n, 3)
    assert 1 in row["atomic_numbers"]  # hydrogens are atoms here
    with pytest.raises(ValueError, match="split_by"):
        load_qm9_xtb(split_by="scaffold")


@needs_tblite
def test_stored_labels_are_gfn2_xtb_of_the_stored_geometry(data):
    for row in (data["train"][0], data["test"][7]):
        energy, forces = xtb_energy_and_forces(row["atomic_numbers"], row["positions"])
        assert energy == pytest.approx(row["energy"], abs=1e-6)
        np.testing.assert_allclose(forces, row["forces"], atol=1e-5)


@needs_tblite
def test_force_units_agree_with_finite_differences_of_the_energy():
    """Forces in eV/Angstrom are -dE/dx of energies in eV: checks both unit conversions together."""
    numbers = [8, 1, 1]
    positions = np.array([[0.0, 0.0, 0.1], [0.97, 0.05, 0.0], [-0.25, 0.9, 0.0]])
    _, forces = xtb_energy_and_forces(numbers, positions)
    step = 1e-4
    for atom, axis in ((0, 2), (1, 0), (2, 1)):
        plus, minus = positions.copy(), positions.copy()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        derivative = (xtb_energy_and_forces(numbers, plus)[0] - xtb_energy_and_forces(numbers, minus)[0]) / (2 * step)
        assert forces[atom, axis] == pytest.approx(-derivative, abs=1e-4)
    assert pytest.approx(51.42208619) == HARTREE_TO_EV / BOHR_IN_ANGSTROM


def test_collator_pads_and_pairs(data):
    rows = [data["train"][i] for i in range(3)]
    batch = PointCloudCollator()(rows)
    sizes = [len(r["atomic_numbers"]) for r in rows]
    assert batch["atomic_numbers"].shape == (3, max(sizes))
    assert batch["atom_mask"].sum(1).tolist() == sizes
    for b, row in enumerate(rows):
        n = sizes[b]
        torch.testing.assert_close(batch["pos"][b, :n], torch.tensor(row["positions"], dtype=torch.float32))
        assert batch["pos"][b, n:].abs().sum() == 0 and batch["atomic_numbers"][b, n:].sum() == 0
        torch.testing.assert_close(batch["labels"]["forces"][b, :n], torch.tensor(row["forces"], dtype=torch.float32))
    assert batch["labels"]["energy"].tolist() == pytest.approx([r["energy"] for r in rows])
    paired = PointCloudCollator(paired=True)(rows)
    assert paired["teacher_inputs"]["pos"] is paired["student_inputs"]["pos"]
    assert set(paired["labels"]) == {"energy", "forces"}
    unlabelled = PointCloudCollator()([{"atomic_numbers": [6, 1], "positions": [[0, 0, 0], [1, 0, 0]]}])
    assert "labels" not in unlabelled
    with pytest.raises(ValueError, match="row 0 \\(bad\\)"):
        PointCloudCollator()([{"mol_id": "bad", "atomic_numbers": [6, 1], "positions": [[0, 0, 0]]}])


def test_atom_reference_energies_recover_a_linear_model():
    references = {1: -13.5, 6: -1000.0, 8: -2000.0}
    rows = [[6, 1, 1, 1, 1], [8, 1, 1], [6, 8, 1, 1], [6, 6, 1, 1, 1, 1], [8, 8]]
    energies = [sum(references[z] for z in row) for row in rows]
    dataset = Dataset.from_dict({"mol_id": [str(i) for i in range(5)], "atomic_numbers": rows, "energy": energies})
    fitted = fit_atom_reference_energies(dataset)
    assert len(fitted) == 10 and fitted[0] == 0.0 and fitted[7] == 0.0
    for z, value in references.items():
        assert fitted[z] == pytest.approx(value)
    with pytest.raises(ValueError, match="row 0"):
        fit_atom_reference_energies(Dataset.from_dict({"mol_id": ["x"], "atomic_numbers": [[17]], "energy": [0.0]}))


def test_metrics_on_a_hand_made_case():
    mask = torch.tensor([[1, 1], [1, 0]])
    energy = torch.tensor([1.0, 2.0])
    forces = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]])
    pred_energy = torch.tensor([1.01, 2.5])  # errors 10 meV (within 20) and 500 meV
    pred_forces = forces.clone()
    pred_forces[0, 1] = torch.tensor([0.02, 1.0, 0.0])  # error 0.02 < 0.03: system 0 is within threshold
    pred_forces[1, 0] = torch.tensor([0.0, 2.0, 0.0])  # orthogonal to the true force
    pred_forces[1, 1] = torch.tensor([9.0, 9.0, 9.0])  # padding: ignored
    metrics = EnergyForceMetrics()
    metrics.update(pred_energy[:1], pred_forces[:1], energy[:1], forces[:1], mask[:1])
    metrics.update(pred_energy[1:], pred_forces[1:], energy[1:], forces[1:], mask[1:])
    result = metrics.compute()
    assert result["energy_mae_meV"] == pytest.approx(1000 * (0.01 + 0.5) / 2)
    assert result["force_mae_meV_per_A"] == pytest.approx(1000 * (0.02 + 2.0 + 2.0) / 9)
    assert result["force_cos"] == pytest.approx((1.0 + 1.0 / (1.0004**0.5) + 0.0) / 3, rel=1e-6)
    assert result["efwt_percent"] == pytest.approx(50.0)
    assert gap_closed(student=100.0, distilled=80.0, teacher=60.0) == pytest.approx(0.5)
    assert gap_closed(student=0.3, distilled=0.36, teacher=0.4) == pytest.approx(0.6)  # higher-is-better metric
    assert gap_closed(1.0, 0.5, 1.0) is None
