"""MolformerCalculator (molformer_kd.calculators): the package's energy/force models as ASE calculators.

Forces against central finite differences of the energy, rotation/translation/permutation symmetry through ASE, units,
refused inputs, save/load, and with tiny potentials trained on the shipped QM9/xTB sample: a BFGS geometry optimisation
(SchNet) and NVE molecular dynamics (PaiNN) whose total-energy error is bounded and shrinks as dt^2 (the signature of
forces that are the exact gradient of the energy).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ase")

from ase import Atoms, units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from transformers import AutoConfig

from molformer_kd.calculators import MolformerCalculator
from molformer_kd.data.domain import ApplicabilityDomain
from molformer_kd.data.xtb import energy_statistics, load_qm9_xtb
from molformer_kd.modeling.auto import AutoModelForEnergyAndForces
from molformer_kd.tokenization.collators import PointCloudCollator

try:  # newer ASE renames MaxwellBoltzmannDistribution (same draw, same signature)
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

REFERENCES = [0.0, -13.0, 0, 0, 0, 0, -1030.0, -1480.0, -2040.0, -2700.0]  # eV, the scale of xTB atom energies
# 1,2,3-triazine (9 atoms, 3 H): conformation 0 is the QM9 DFT geometry, 1-3 are Gaussian perturbations of it.
MOLECULE = "qm9_000722"


def tiny_model(kind: str) -> torch.nn.Module:
    """An untrained tiny model of the energy/force Auto class, float64 (every gradient check is then exact)."""
    torch.manual_seed(0)
    settings = {"hidden_size": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 5.0, "atom_reference_energies": REFERENCES}
    if kind == "schnet":
        config = AutoConfig.for_model("schnet", num_filters=16, **settings)
    else:
        config = AutoConfig.for_model("painn", direct_forces=kind == "painn_direct", **settings)
    return AutoModelForEnergyAndForces.from_config(config).double()


@pytest.fixture(scope="module")
def conformations() -> dict[str, dict]:
    """Every row of the shipped sample for MOLECULE, by mol_id."""
    rows = {}
    for split in load_qm9_xtb().values():
        for index, mol_id in enumerate(split["mol_id"]):
            if mol_id.startswith(MOLECULE + ":"):
                rows[mol_id] = split[index]
    assert sorted(rows) == [f"{MOLECULE}:{k}" for k in range(4)]
    return rows


def atoms_of(row: dict) -> Atoms:
    return Atoms(numbers=row["atomic_numbers"], positions=row["positions"])


def central_difference_forces(atoms: Atoms, step: float) -> np.ndarray:
    """-dE/dx by central differences of `atoms.calc`'s energy."""
    forces = np.zeros((len(atoms), 3))
    for atom in range(len(atoms)):
        for axis in range(3):
            energies = []
            for sign in (1.0, -1.0):
                displaced = atoms.copy()
                displaced.calc = atoms.calc
                displaced.positions[atom, axis] += sign * step
                energies.append(displaced.get_potential_energy())
            forces[atom, axis] = -(energies[0] - energies[1]) / (2.0 * step)
    return forces


def assert_matches_central_differences(atoms: Atoms, forces: np.ndarray, step: float = 1e-3) -> None:
    """The central-difference error is c h^2 + roundoff; comparing steps h and 2h measures it (the difference of the
    two estimates is 3 c h^2), so the bound is that estimate (3x the truncation error) plus float64 roundoff of the
    energy difference, 1e-13 |E| / h."""
    estimate = central_difference_forces(atoms, step)
    coarse = central_difference_forces(atoms, 2.0 * step)
    truncation = np.abs(estimate - coarse).max()
    roundoff = 1e-13 * abs(atoms.get_potential_energy()) / step
    error = np.abs(forces - estimate).max()
    assert error <= truncation + roundoff, (error, truncation, roundoff)


@pytest.mark.parametrize("kind", ["schnet", "painn_autograd"])
def test_forces_are_minus_the_energy_gradient(kind, conformations):
    atoms = atoms_of(conformations[f"{MOLECULE}:1"])
    atoms.calc = MolformerCalculator(tiny_model(kind))
    forces = atoms.get_forces()
    assert forces.shape == (len(atoms), 3) and np.abs(forces).max() > 1e-3  # a non-trivial force field
    assert_matches_central_differences(atoms, forces)


def test_direct_force_model_returns_its_head_or_the_gradient(conformations):
    model = tiny_model("painn_direct")
    row = conformations[f"{MOLECULE}:1"]
    batch = PointCloudCollator(dtype=torch.float64)([row])
    with torch.no_grad():
        head_forces = model(**{k: batch[k] for k in ("atomic_numbers", "pos", "atom_mask")}).forces[0].numpy()
    atoms = atoms_of(row)
    atoms.calc = MolformerCalculator(model)
    assert atoms.calc.uses_direct_forces
    np.testing.assert_allclose(atoms.get_forces(), head_forces, rtol=1e-12, atol=1e-12)
    gradient_atoms = atoms_of(row)
    gradient_atoms.calc = MolformerCalculator(model, force_source="gradient")
    assert not gradient_atoms.calc.uses_direct_forces
    gradient_forces = gradient_atoms.get_forces()
    assert_matches_central_differences(gradient_atoms, gradient_forces)
    # An untrained direct head is unrelated to the energy: the two force sources must really differ.
    assert np.abs(gradient_forces - head_forces).max() > 1e-3
    assert gradient_atoms.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), rel=1e-14)


def random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("kind", ["schnet", "painn_autograd", "painn_direct"])
def test_energy_invariant_and_forces_equivariant_through_ase(kind, conformations):
    calculator = MolformerCalculator(tiny_model(kind))
    atoms = atoms_of(conformations[f"{MOLECULE}:2"])
    atoms.calc = calculator
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    rotation = random_rotation(7)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array([3.0, -1.5, 12.0])
    moved.calc = calculator
    # float64 throughout: agreement to ~1e-12 relative; 1e-9 leaves room for reduction-order differences.
    assert moved.get_potential_energy() == pytest.approx(energy, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(moved.get_forces(), forces @ rotation.T, atol=1e-9)
    order = np.random.default_rng(3).permutation(len(atoms))
    permuted = atoms[order]
    permuted.calc = calculator
    assert permuted.get_potential_energy() == pytest.approx(energy, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(permuted.get_forces(), forces[order], atol=1e-9)
    np.testing.assert_allclose(permuted.get_potential_energies(), atoms.get_potential_energies()[order], atol=1e-9)


def test_results_agree_with_the_model_and_convert_units(conformations):
    model = tiny_model("painn_autograd").float()
    row = conformations[f"{MOLECULE}:0"]
    batch = PointCloudCollator()([row])
    with torch.no_grad():
        expected = model(**{k: batch[k] for k in ("atomic_numbers", "pos", "atom_mask")})
    atoms = atoms_of(row)
    atoms.calc = MolformerCalculator(model)
    assert atoms.calc.dtype == torch.float32  # follows the model when no dtype is given
    assert atoms.get_potential_energy() == pytest.approx(float(expected.energy[0]), rel=1e-7)
    assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
    np.testing.assert_allclose(atoms.get_forces(), expected.forces[0].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(atoms.get_potential_energies().sum(), atoms.get_potential_energy(), rtol=1e-6)
    # A model trained on Hartree energies: ASE still gets eV and eV/Angstrom.
    hartree_atoms = atoms_of(row)
    hartree_atoms.calc = MolformerCalculator(model, energy_unit="Hartree")
    assert hartree_atoms.get_potential_energy() == pytest.approx(units.Hartree * atoms.get_potential_energy(), rel=1e-7)
    np.testing.assert_allclose(hartree_atoms.get_forces(), units.Hartree * atoms.get_forces(), rtol=1e-6, atol=1e-6)


def test_single_atom_has_its_reference_energy_and_no_force():
    model = tiny_model("schnet")
    atom = Atoms("O", positions=[[0.3, -0.2, 1.0]])
    atom.calc = MolformerCalculator(model)
    # No neighbours: the energy is the readout of the bare embedding, a constant that does not depend on position.
    moved = atom.copy()
    moved.positions += 5.0
    moved.calc = atom.calc
    assert atom.get_potential_energy() == pytest.approx(moved.get_potential_energy(), abs=1e-12)
    assert atom.get_potential_energy() == pytest.approx(REFERENCES[8], abs=50.0)  # reference + a small network term
    np.testing.assert_array_equal(atom.get_forces(), np.zeros((1, 3)))


def test_refuses_what_the_models_cannot_describe(conformations):
    calculator = MolformerCalculator(tiny_model("schnet"))
    atoms = atoms_of(conformations[f"{MOLECULE}:0"])
    atoms.calc = calculator
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()  # not defined for an isolated molecule
    periodic = atoms.copy()
    periodic.cell, periodic.pbc = np.eye(3) * 10.0, True
    periodic.calc = calculator
    with pytest.raises(NotImplementedError, match="pbc"):
        periodic.get_potential_energy()
    for numbers in ([0, 1], [101, 1]):  # ghost atom; beyond the embedding table (max_atomic_number=100)
        bad = Atoms(numbers=numbers, positions=[[0, 0, 0], [0, 0, 1.0]])
        bad.calc = calculator
        with pytest.raises(ValueError, match="atomic numbers"):
            bad.get_potential_energy()
    # A model whose training geometries held only H, C, N, O, F (recorded by the training stage) refuses sulfur.
    trained = tiny_model("schnet")
    domain = ApplicabilityDomain.from_atomic_numbers([[6, 1, 1, 1, 1], [7, 8, 9]])
    trained.config.applicability_domain = domain.to_dict()
    thiol = Atoms("CH4S", positions=np.random.default_rng(0).normal(scale=1.5, size=(6, 3)))
    thiol.calc = MolformerCalculator(trained)
    with pytest.raises(ValueError, match=r"elements \['S'\] are outside this model's training data"):
        thiol.get_potential_energy()
    known = atoms_of(conformations[f"{MOLECULE}:0"])
    known.calc = MolformerCalculator(trained)
    assert np.isfinite(known.get_potential_energy())
    with pytest.raises(ValueError, match="force_source"):
        MolformerCalculator(tiny_model("schnet"), force_source="direct")
    with pytest.raises(ValueError, match="energy_unit"):
        MolformerCalculator(tiny_model("schnet"), energy_unit="Rydberg")


@pytest.mark.parametrize("kind", ["schnet", "painn_direct"])
def test_save_pretrained_then_from_pretrained_gives_identical_results(kind, conformations, tmp_path):
    calculator = MolformerCalculator(tiny_model(kind))
    calculator.save_pretrained(tmp_path / kind)
    reloaded = MolformerCalculator.from_pretrained(tmp_path / kind, device="cpu")
    assert reloaded.dtype == torch.float64 and reloaded.device == torch.device("cpu")
    assert not reloaded.model.training
    results = []
    for calc in (calculator, reloaded):
        atoms = atoms_of(conformations[f"{MOLECULE}:3"])
        atoms.calc = calc
        results.append((atoms.get_potential_energy(), atoms.get_forces()))
    # Same weights, same float64 arithmetic; only the memory layout of reloaded tensors may change the summation
    # order (measured: energies bitwise equal, forces within 1e-16 eV/A).
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-13)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-10, atol=1e-12)
    as_float32 = MolformerCalculator.from_pretrained(tmp_path / kind, device="cpu", dtype=torch.float32)
    assert as_float32.dtype == torch.float32


# ---- a trained potential -------------------------------------------------------------------------------------------


def train_tiny_potential(output_dir, model_type: str = "painn", seed: int = 0, steps: int = 200) -> None:
    """A conservative (autograd-force) PaiNN or SchNet, d=32, 2 layers, trained on the shipped sample's training
    split with the task loss; about 15 s on one CPU thread. Test force MAE about 0.35 eV/Angstrom, force cosine about
    0.87: rough, but a potential with minima near the xTB geometries, which is all BFGS and MD need here."""
    train = load_qm9_xtb()["train"]
    rows = [train[i] for i in range(len(train))]
    torch.manual_seed(seed)
    settings = {"hidden_size": 32, "num_layers": 2, "num_rbf": 16, "cutoff": 5.0, "force_loss_weight": 10.0}
    if model_type == "painn":
        settings["direct_forces"] = False
    else:
        settings["num_filters"] = 32
    config = AutoConfig.for_model(model_type, **settings, **energy_statistics(train))
    model = AutoModelForEnergyAndForces.from_config(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    collate = PointCloudCollator()
    sampler = np.random.default_rng(seed)
    for _ in range(steps):
        batch = collate([rows[i] for i in sampler.choice(len(rows), size=16, replace=False)])
        loss = model(**batch, return_dict=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.save_pretrained(output_dir)


@pytest.fixture(scope="session")
def trained_potential(tmp_path_factory):
    """model_type -> directory of a tiny potential trained once per session (only the kinds a test asks for)."""
    directories = {}

    def directory_of(model_type: str):
        if model_type not in directories:
            directories[model_type] = tmp_path_factory.mktemp(f"ase_{model_type}")
            train_tiny_potential(directories[model_type], model_type)
        return directories[model_type]

    return directory_of


def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    u[:, -1] *= np.sign(np.linalg.det(u @ vt))
    return float(np.sqrt((((a @ u @ vt) - b) ** 2).sum(1).mean()))


def bonded_pairs(positions: np.ndarray) -> set[tuple[int, int]]:
    """Pairs closer than 1.6 Angstrom: the covalent bonds of a QM9 molecule (bonds <= 1.55 A, non-bonded >= 2 A)."""
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return {(i, j) for i, j in zip(*np.nonzero(distances < 1.6)) if i < j}


@pytest.mark.slow
def test_bfgs_relaxes_perturbed_geometries(trained_potential, conformations):
    """SchNet: its energy is smooth everywhere. A trained PaiNN's energy has cusps where a vector feature's norm
    sqrt(|v|^2 + 1e-8) passes through 0, and its minima can sit on one (measured: 1 of 3 training seeds leaves BFGS
    cycling at fmax 0.2-0.3 eV/A there, while BFGSLineSearch converges), which would test the model, not the
    calculator."""
    calculator = MolformerCalculator.from_pretrained(trained_potential("schnet"), device="cpu")
    reference = np.asarray(conformations[f"{MOLECULE}:0"]["positions"])
    final_rmsds = []
    for k in (1, 2, 3):
        atoms = atoms_of(conformations[f"{MOLECULE}:{k}"])
        atoms.calc = calculator
        start_energy = atoms.get_potential_energy()
        optimizer = BFGS(atoms, logfile=None)
        # Measured: 25-62 steps to fmax 0.01 eV/A from these starts (3 training seeds).
        assert optimizer.run(fmax=0.01, steps=300), f"conformation {k}: no convergence in 300 steps"
        assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.01
        assert atoms.get_potential_energy() < start_energy - 0.1  # measured drops 0.49-2.75 eV
        assert bonded_pairs(atoms.positions) == bonded_pairs(reference)  # relaxed, not torn apart
        final_rmsds.append(kabsch_rmsd(atoms.positions, reference))
    # The model's minimum lies near the xTB one, which the DFT geometry approximates: measured 0.044-0.062 A from
    # starts 0.10-0.13 A away, except one start of one training seed that found another minimum (0.42 A): the median.
    assert np.median(final_rmsds) < 0.1, final_rmsds


def nve_total_energies(calculator, row, timestep_fs: float, steps: int, seed: int) -> np.ndarray:
    """Total energy per atom (eV) at every step of velocity-Verlet NVE from 300 K Maxwell-Boltzmann velocities."""
    atoms = atoms_of(row)
    atoms.calc = calculator
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    Stationary(atoms)
    ZeroRotation(atoms)
    energies = []
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs, logfile=None)
    dynamics.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    dynamics.run(steps)
    return np.asarray(energies) / len(atoms)


@pytest.mark.slow
def test_nve_dynamics_conserves_energy(trained_potential, conformations):
    calculator = MolformerCalculator.from_pretrained(trained_potential("painn"), device="cpu")
    energies = nve_total_energies(calculator, conformations[f"{MOLECULE}:0"], timestep_fs=0.5, steps=1000, seed=0)
    assert len(energies) == 1001 and np.isfinite(energies).all()
    drift = abs(energies[-1] - energies[0])
    deviation = np.abs(energies - energies[0]).max()
    print(f"NVE 1000 x 0.5 fs, 300 K: drift {1e3 * drift:.3f} meV/atom, max deviation {1e3 * deviation:.3f} meV/atom")
    # Measured over 3 training seeds x 5 velocity seeds (float32 and float64 alike): drift 0.007-1.03 meV/atom, max
    # deviation 0.07-1.33 meV/atom, against a kinetic energy of 39 meV/atom at 300 K. The error is Verlet's O(dt^2)
    # fluctuation (it shrinks 4x at half the step); the next test checks the forces against the energy more sharply.
    assert drift < 5e-3
    assert deviation < 5e-3


class _ScaledForceCalculator(MolformerCalculator):
    """Forces 30% larger than -dE/dx: a force field inconsistent with its energy, the negative control below."""

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["forces"] = 1.3 * self.results["forces"]


@pytest.mark.slow
def test_nve_energy_error_shrinks_with_the_square_of_the_timestep(trained_potential, conformations):
    """Velocity Verlet's energy error is O(dt^2) only when the forces are the exact gradient of the energy."""
    model = AutoModelForEnergyAndForces.from_pretrained(trained_potential("painn"))
    row = conformations[f"{MOLECULE}:0"]

    def error_ratio(calculator) -> float:
        """Energy spread at dt = 1 fs over the spread at 0.5 fs, the same 100 fs, mean over two velocity draws."""
        ratios = []
        for seed in (1, 2):
            spreads = [nve_total_energies(calculator, row, dt, round(100 / dt), seed=seed).std() for dt in (1.0, 0.5)]
            ratios.append(spreads[0] / spreads[1])
        return float(np.mean(ratios))

    # Measured per velocity draw over 3 training seeds x 2 draws (ideal 4): 2.6-4.6 for the exact gradient, and
    # 0.84-0.98 with the forces scaled by 1.3, an energy error that does not shrink with the step. Scaled by 1.1, the
    # small non-conservative part did not always dominate the O(dt^2) error: up to 1.83 on one draw.
    assert 2.0 < error_ratio(MolformerCalculator(model)) < 16.0
    assert error_ratio(_ScaledForceCalculator(model)) < 1.5
