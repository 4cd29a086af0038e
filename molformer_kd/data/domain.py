"""The applicability domain of a trained model: which molecules are like the ones it learned from.

A student trained on QM9 has seen neutral, closed-shell molecules of at most 9 heavy atoms of C, N, O and F; it still
predicts a value for chlorobenzene or a 40-atom drug, but nothing vouches for that value. `ApplicabilityDomain` is the
envelope of a training set along a few coarse, exactly checkable axes:

| key | constraint |
|---|---|
| `elements` | every non-hydrogen atom's element is one of these (a dummy atom `*` is an element of its own) |
| `min_heavy_atoms`, `max_heavy_atoms` | the count of non-hydrogen atoms lies in this range (see below) |
| `net_charges` | the molecule's total formal charge is one of these |
| `atom_charges` | every atom's formal charge is one of these (a nitro group's N+ / O- pair is neutral overall) |
| `max_radical_electrons` | at most this many unpaired electrons in the molecule |
| `max_fragments` | at most this many disconnected parts (`CCO.O` has 2) |

A domain computed from a training set has `min_heavy_atoms` 1: a molecule smaller than the training set's smallest is
not flagged (QM9's own smallest have one heavy atom), only one with no heavy atom at all.
`source` (text) and `molecules` (count) only describe where the domain came from. A missing key (or None) constrains
nothing, so a domain can be written by hand (`{"elements": ["C", "N", "O", "F"], "max_heavy_atoms": 9}`).

The distillation stages store the domain of their training split in every exported property model's config
(`config.applicability_domain`, a dict, saved in config.json), `scripts/ship_pretrained.py` does the same for the
shipped students, and the `molecular-property-prediction` pipeline and `molformer-kd predict` flag each prediction of
a model that has one (`in_domain`, `domain_reason`). A model without one gets no flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from rdkit import Chem, rdBase

__all__ = ["DOMAIN_CONFIG_KEY", "ApplicabilityDomain", "DomainVerdict", "MoleculeProfile", "molecule_profile"]

# The config attribute (and config.json key) that holds a model's domain.
DOMAIN_CONFIG_KEY = "applicability_domain"


class MoleculeProfile(NamedTuple):
    """The properties of one molecule that a domain constrains."""

    elements: frozenset[str]
    heavy_atoms: int
    net_charge: int
    atom_charges: frozenset[int]
    radical_electrons: int
    fragments: int


def molecule_profile(mol: Chem.Mol) -> MoleculeProfile:
    """`MoleculeProfile` of an RDKit molecule (hydrogens, implicit or explicit, are not heavy atoms)."""
    # One pass over the atoms: the pipeline profiles every molecule it predicts.
    elements, charges, heavy, radicals = set(), set(), 0, 0
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() != 1:
            elements.add(atom.GetSymbol())
            heavy += 1
        charges.add(atom.GetFormalCharge())
        radicals += atom.GetNumRadicalElectrons()
    return MoleculeProfile(
        elements=frozenset(elements),
        heavy_atoms=heavy,
        net_charge=Chem.GetFormalCharge(mol),
        atom_charges=frozenset(charges),
        radical_electrons=radicals,
        fragments=len(Chem.GetMolFrags(mol)) if mol.GetNumAtoms() else 0,
    )


class DomainVerdict(NamedTuple):
    """Whether a molecule lies in a domain, and if not why (every constraint it breaks, joined by '; ')."""

    in_domain: bool
    reason: str | None


def _signed(value: int) -> str:
    return f"{value:+d}" if value else "0"


def _listing(values: Iterable[Any], signed: bool = False) -> str:
    values = sorted(values)
    return ", ".join(_signed(v) if signed else str(v) for v in values) if values else "none"


@dataclasses.dataclass(frozen=True)
class ApplicabilityDomain:
    """The envelope of a training set (see the module docstring); None constrains nothing."""

    elements: tuple[str, ...] | None = None
    min_heavy_atoms: int | None = None
    max_heavy_atoms: int | None = None
    net_charges: tuple[int, ...] | None = None
    atom_charges: tuple[int, ...] | None = None
    max_radical_electrons: int | None = None
    max_fragments: int | None = None
    source: str | None = None
    molecules: int | None = None

    # ------------------------------------------------------------------------------------------------ building

    @classmethod
    def from_profiles(cls, profiles: Iterable[MoleculeProfile], source: str | None = None) -> ApplicabilityDomain:
        """The smallest domain holding every profile."""
        elements, net_charges, atom_charges = set(), set(), set()
        heavy, radicals, fragments, count = [], 0, 0, 0
        for profile in profiles:
            elements |= profile.elements
            net_charges.add(profile.net_charge)
            atom_charges |= profile.atom_charges
            heavy.append(profile.heavy_atoms)
            radicals = max(radicals, profile.radical_electrons)
            fragments = max(fragments, profile.fragments)
            count += 1
        if not count:
            raise ValueError("an applicability domain needs at least one molecule")
        return cls(
            elements=tuple(sorted(elements)),
            min_heavy_atoms=min(min(heavy), 1),
            max_heavy_atoms=max(heavy),
            net_charges=tuple(sorted(net_charges)),
            atom_charges=tuple(sorted(atom_charges)),
            max_radical_electrons=radicals,
            max_fragments=fragments,
            source=source,
            molecules=count,
        )

    @classmethod
    def from_smiles(cls, smiles: Iterable[str], source: str | None = None) -> ApplicabilityDomain:
        """The domain of a set of SMILES (a training split). A SMILES RDKit cannot read is a ValueError naming it:
        training records passed the loaders' checks, so one that fails here is a bug, not data to skip."""

        def profiles() -> Iterable[MoleculeProfile]:
            with rdBase.BlockLogs():
                for one in smiles:
                    mol = Chem.MolFromSmiles(one) if isinstance(one, str) else None
                    if mol is None:
                        raise ValueError(f"applicability domain: RDKit cannot read the training SMILES {one!r:.200}")
                    yield molecule_profile(mol)

        return cls.from_profiles(profiles(), source)

    @classmethod
    def from_atomic_numbers(cls, molecules: Iterable[Iterable[int]], source: str | None = None) -> ApplicabilityDomain:
        """The domain of a set of 3D structures given by their atomic numbers (hydrogens included or not): elements
        and heavy-atom counts only, since a point cloud carries no formal charges, radicals or bonds."""
        table = Chem.GetPeriodicTable()
        elements, heavy = set(), []
        for numbers in molecules:
            numbers = [int(number) for number in numbers]
            elements |= {table.GetElementSymbol(number) for number in numbers if number != 1}
            heavy.append(sum(number != 1 for number in numbers))
        if not heavy:
            raise ValueError("an applicability domain needs at least one molecule")
        return cls(
            elements=tuple(sorted(elements)),
            min_heavy_atoms=min(min(heavy), 1),
            max_heavy_atoms=max(heavy),
            source=source,
            molecules=len(heavy),
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "applicability_domain") -> ApplicabilityDomain:
        """A domain from its dict (config.json); unknown keys and values of the wrong type are a ValueError."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: expected a mapping of constraints, got {type(values).__name__}")
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; the known ones are {sorted(fields)}")
        kwargs = {}
        for key, value in values.items():
            if value is None:
                continue
            if key in ("elements", "net_charges", "atom_charges"):
                kind = str if key == "elements" else int
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise ValueError(f"{where}.{key}: expected a list, got {value!r}")
                value = tuple(value)
                if not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
                    raise ValueError(f"{where}.{key}: expected a list of {kind.__name__}, got {list(value)!r}")
            elif key == "source":
                if not isinstance(value, str):
                    raise ValueError(f"{where}.source: expected text, got {value!r}")
            elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}.{key}: expected a count (an integer >= 0), got {value!r}")
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_config(cls, config: Any) -> ApplicabilityDomain | None:
        """The domain a model config (a `PretrainedConfig` or a config.json dict) carries, or None."""
        if isinstance(config, Mapping):
            values = config.get(DOMAIN_CONFIG_KEY)
        else:
            values = getattr(config, DOMAIN_CONFIG_KEY, None)
        return None if values is None else cls.from_dict(values, f"config.{DOMAIN_CONFIG_KEY}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, not tuples), without the keys that are None."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
            if value is not None
        }

    # ------------------------------------------------------------------------------------------------ checking

    def check_profile(self, profile: MoleculeProfile) -> DomainVerdict:
        """The verdict on one molecule's profile."""
        reasons = []
        if self.elements is not None:
            outside = profile.elements - set(self.elements)
            if outside:
                noun = "element" if len(outside) == 1 else "elements"
                reasons.append(f"{noun} {_listing(outside)} (training set: {_listing(self.elements)})")
        heavy = f"{profile.heavy_atoms} heavy atom{'' if profile.heavy_atoms == 1 else 's'}"
        if self.max_heavy_atoms is not None and profile.heavy_atoms > self.max_heavy_atoms:
            reasons.append(f"{heavy} (training set: at most {self.max_heavy_atoms})")
        if self.min_heavy_atoms is not None and profile.heavy_atoms < self.min_heavy_atoms:
            reasons.append(f"{heavy} (training set: at least {self.min_heavy_atoms})")
        if self.net_charges is not None and profile.net_charge not in self.net_charges:
            reasons.append(
                f"net charge {_signed(profile.net_charge)} (training set: {_listing(self.net_charges, signed=True)})"
            )
        if self.atom_charges is not None:
            outside = profile.atom_charges - set(self.atom_charges)
            if outside:
                reasons.append(
                    f"atom charge {_listing(outside, signed=True)} "
                    f"(training set: {_listing(self.atom_charges, signed=True)})"
                )
        if self.max_radical_electrons is not None and profile.radical_electrons > self.max_radical_electrons:
            noun = "radical electron" if profile.radical_electrons == 1 else "radical electrons"
            reasons.append(f"{profile.radical_electrons} {noun} (training set: at most {self.max_radical_electrons})")
        if self.max_fragments is not None and profile.fragments > self.max_fragments:
            reasons.append(f"{profile.fragments} fragments (training set: at most {self.max_fragments})")
        return DomainVerdict(not reasons, "; ".join(reasons) or None)

    def check(self, molecule: str | Chem.Mol) -> DomainVerdict:
        """The verdict on a SMILES or an RDKit molecule; a SMILES RDKit cannot read is outside, saying so."""
        if isinstance(molecule, Chem.Mol):
            return self.check_profile(molecule_profile(molecule))
        return self.check_many([molecule])[0]

    def check_many(self, smiles: Iterable[str]) -> list[DomainVerdict]:
        """`check` of each SMILES (one RDKit parse each), with RDKit's log blocked once around the loop."""
        verdicts = []
        with rdBase.BlockLogs():
            for one in smiles:
                mol = Chem.MolFromSmiles(one) if isinstance(one, str) else None
                if mol is None:
                    verdicts.append(DomainVerdict(False, "RDKit cannot read the SMILES"))
                else:
                    verdicts.append(self.check_profile(molecule_profile(mol)))
        return verdicts

    def describe(self) -> list[str]:
        """The constraints as sentences (model cards, `molformer-kd models`)."""
        lines = []
        if self.elements is not None:
            lines.append(f"heavy-atom elements: {_listing(self.elements)}")
        if self.min_heavy_atoms is not None or self.max_heavy_atoms is not None:
            low = self.min_heavy_atoms if self.min_heavy_atoms is not None else 0
            high = self.max_heavy_atoms if self.max_heavy_atoms is not None else "any"
            lines.append(f"heavy atoms: {low} to {high}")
        if self.net_charges is not None:
            lines.append(f"net formal charge: {_listing(self.net_charges, signed=True)}")
        if self.atom_charges is not None:
            lines.append(f"formal charges of single atoms: {_listing(self.atom_charges, signed=True)}")
        if self.max_radical_electrons is not None:
            lines.append(f"radical electrons: at most {self.max_radical_electrons}")
        if self.max_fragments is not None:
            lines.append(f"disconnected fragments: at most {self.max_fragments}")
        return lines
