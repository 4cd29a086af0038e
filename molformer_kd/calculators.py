"""ASE calculator for the package's 3D energy/force models (SchNet, PaiNN and any model `AutoModelForEnergyAndForces`
loads): geometry optimisation, molecular dynamics and vibrational analysis with a trained or distilled potential.

    from ase.optimize import BFGS
    from molformer_kd.calculators import MolformerCalculator

    atoms.calc = MolformerCalculator.from_pretrained("runs/gnn_kd_painn_to_painn_tiny/distill")
    BFGS(atoms).run(fmax=0.05)

Units: ASE works in eV and Angstrom. The package's energy models read positions in Angstrom and, trained on the QM9/xTB
data (`data.xtb`: GFN2-xTB energies converted from Hartree to eV, forces to eV/Angstrom), predict energies in eV and
forces in eV/Angstrom, so no conversion is needed by default; `energy_unit` converts the output of a model trained on
energies in another unit (forces then follow as that unit per Angstrom).

Atoms: the models take every atom, hydrogens included, in any order (`Atoms.numbers` as they are); there is no
SMILES atom rule here. Systems are isolated molecules: the models have no periodic images, so periodic `Atoms`
are refused and stress is not implemented (it is not defined for a non-periodic molecule).

Forces: `force_source="model"` returns the forces the model outputs, which are -dE/dx by autograd for SchNet and
for PaiNN with `direct_forces=False`, but PaiNN's direct force head for `direct_forces=True` (the KD-GNN setting).
Direct forces are NOT the gradient of the energy: they do not conserve energy in NVE dynamics and an optimiser may
stop where they vanish rather than at an energy minimum. `force_source="gradient"` always returns -dE/dx of the
predicted energy (conservative, consistent with `energy`) whatever the model.
"""

from __future__ import annotations

import os
from typing import ClassVar

import torch
from ase.atoms import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Hartree, kcal, kJ, mol

from .data.domain import ApplicabilityDomain
from .modeling.auto import AutoModelForEnergyAndForces
from .tokenization.collators import PointCloudCollator

__all__ = ["ENERGY_UNITS_IN_EV", "FORCE_SOURCES", "MolformerCalculator"]

# eV per unit of model energy; positions and distances are Angstrom for every model of the package.
ENERGY_UNITS_IN_EV = {"eV": 1.0, "meV": 1e-3, "Hartree": Hartree, "kcal/mol": kcal / mol, "kJ/mol": kJ / mol}
FORCE_SOURCES = ("model", "gradient")


class MolformerCalculator(Calculator):
    """ASE calculator wrapping an energy/force model of the package (`...ForEnergyAndForces`).

    Properties: `energy` and `free_energy` (eV; equal, the model has no electronic entropy), `energies` (per-atom
    energy contributions, eV, summing to `energy`) and `forces` (eV/Angstrom). See the module docstring for units,
    periodicity and the choice of forces.

    The model is moved to `device` / `dtype` (defaults: where and what it already is) and put in eval mode.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "energies", "forces"]

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        force_source: str = "model",
        energy_unit: str = "eV",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if force_source not in FORCE_SOURCES:
            raise ValueError(f"force_source must be one of {FORCE_SOURCES}, got {force_source!r}")
        if energy_unit not in ENERGY_UNITS_IN_EV:
            raise ValueError(f"energy_unit must be one of {list(ENERGY_UNITS_IN_EV)}, got {energy_unit!r}")
        if device is not None:
            model = model.to(device)
        if dtype is not None:
            model = model.to(dtype)
        self.model = model.eval()
        self.force_source = force_source
        self.energy_unit = energy_unit
        self.energy_to_ev = ENERGY_UNITS_IN_EV[energy_unit]
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.collator = PointCloudCollator(dtype=self.dtype)
        # Elements of the training geometries (recorded by the training stage); None for models without a record.
        domain = ApplicabilityDomain.from_config(model.config)
        self.trained_elements = set(domain.elements) if domain and domain.elements is not None else None

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        force_source: str = "model",
        energy_unit: str = "eV",
        **model_kwargs,
    ) -> MolformerCalculator:
        """Load a checkpoint (directory or hub id) with `AutoModelForEnergyAndForces`; `device` defaults to CUDA
        when available, else CPU. `model_kwargs` go to `from_pretrained` (e.g. `revision`, `local_files_only`)."""
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForEnergyAndForces.from_pretrained(path_or_name, **model_kwargs)
        return cls(model, device=device, dtype=dtype, force_source=force_source, energy_unit=energy_unit)

    def save_pretrained(self, directory: str | os.PathLike, **kwargs) -> None:
        """Save the wrapped model (config + weights) so that `MolformerCalculator.from_pretrained(directory)` reloads
        it; calculator settings (`force_source`, `energy_unit`) are arguments of the caller, not saved."""
        self.model.save_pretrained(directory, **kwargs)

    @property
    def uses_direct_forces(self) -> bool:
        """Whether `forces` come from a direct force head (not -dE/dx): non-conservative."""
        return self.force_source == "model" and bool(getattr(self.model.config, "direct_forces", False))

    def _batch(self, atoms: Atoms) -> dict:
        if atoms.pbc.any():
            raise NotImplementedError(
                f"{type(self).__name__} models isolated molecules (no periodic images): got pbc={atoms.pbc.tolist()}; "
                "set atoms.pbc = False"
            )
        numbers = atoms.get_atomic_numbers()
        if len(numbers) == 0:
            raise ValueError("cannot compute an empty Atoms object")
        max_atomic_number = getattr(self.model.config, "max_atomic_number", None)
        if numbers.min() < 1 or (max_atomic_number is not None and numbers.max() > max_atomic_number):
            raise ValueError(
                f"atomic numbers must lie in 1..{max_atomic_number} for this model, got {sorted(set(numbers.tolist()))}"
            )
        if self.trained_elements is not None:
            unseen = sorted(set(atoms.get_chemical_symbols()) - self.trained_elements - {"H"})
            if unseen:
                raise ValueError(
                    f"{atoms.get_chemical_formula()}: elements {unseen} are outside this model's training data "
                    f"({', '.join(sorted(self.trained_elements))} and H); its energies and forces for them mean nothing"
                )
        batch = self.collator([{"atomic_numbers": numbers, "positions": atoms.get_positions()}])
        return {key: value.to(self.device) for key, value in batch.items()}

    def _predict(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(energy (1,), atom energies (1, N), forces (1, N, 3)) in model units, detached."""
        if self.uses_direct_forces:
            # Nothing needs autograd: the cheapest mode.
            with torch.inference_mode():
                output = self.model(**batch, return_dict=True)
            return output.energy, output.atom_energies, output.forces
        if getattr(self.model.config, "direct_forces", False):  # force_source="gradient" on a direct-force model
            with torch.enable_grad():
                pos = batch["pos"].detach().requires_grad_(True)
                output = self.model(batch["atomic_numbers"], pos, batch["atom_mask"], return_dict=True)
                (gradient,) = torch.autograd.grad(output.energy.sum(), pos)
            return output.energy.detach(), output.atom_energies.detach(), -gradient
        # Autograd-force models differentiate w.r.t. positions themselves; under no_grad they build no second-order
        # graph and return detached outputs (inference_mode would forbid the gradient).
        with torch.no_grad():
            output = self.model(**batch, return_dict=True)
        return output.energy, output.atom_energies, output.forces

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        energy, atom_energies, forces = self._predict(self._batch(self.atoms))
        energy_ev = float(energy[0].double()) * self.energy_to_ev
        self.results = {
            "energy": energy_ev,
            "free_energy": energy_ev,
            "energies": atom_energies[0].double().cpu().numpy() * self.energy_to_ev,
            "forces": forces[0].double().cpu().numpy() * self.energy_to_ev,
        }
