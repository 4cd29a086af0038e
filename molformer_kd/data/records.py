"""Record schema shared by every loader (DESIGN.md "Records") and the report of what a load skipped or flagged."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from datasets import Dataset, Features, List, Value

from .molecules import smiles_problem

__all__ = ["DataReport", "Issue", "check_on_invalid", "find_smiles_problems", "record_features"]

logger = logging.getLogger("molformer_kd.data")

# How many issues a summary spells out before it only counts the rest.
_LISTED_ISSUES = 10


# The optional record column of the folded hydrogens' coordinates (the atoms that are not SMILES tokens, any order),
# read by the point-cloud featurizer of all-atom 3D teachers.
HYDROGEN_POSITIONS = {"h_pos": List(List(Value("float32"), length=3))}


def record_features(label_columns: Sequence[str], extra: dict | None = None) -> Features:
    """Arrow schema of a record: smiles, pos ((N, 3) float32, nullable), float64 labels (NaN = missing), mol_id;
    `extra` columns after them (e.g. `HYDROGEN_POSITIONS`)."""
    columns = {"smiles": Value("string"), "pos": List(List(Value("float32"), length=3))}
    columns.update({name: Value("float64") for name in label_columns})
    columns["mol_id"] = Value("string")
    columns.update(extra or {})
    return Features(columns)


@dataclass
class Issue:
    """One record with a problem: where it is (``file.csv line 7``, ``file.sdf record 3``, a mol_id) and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class DataReport:
    """What a load or a preprocessing step did: records seen, kept, skipped (with reasons) and flagged.

    ``skipped``: records left out of the dataset. ``flagged``: records kept with a problem (e.g. no coordinates).
    """

    source: str
    n_records: int = 0
    n_kept: int = 0
    skipped: list[Issue] = field(default_factory=list)
    flagged: list[Issue] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{self.source}: {self.n_records} records, {self.n_kept} kept, {len(self.skipped)} skipped"
        if self.flagged:
            text += f", {len(self.flagged)} flagged"
        if self.counts:
            text += " (" + ", ".join(f"{key}: {value}" for key, value in sorted(self.counts.items())) + ")"
        for title, issues in (("skipped", self.skipped), ("flagged", self.flagged)):
            if issues:
                text += f"\n  {title}:\n" + "\n".join(f"    {issue}" for issue in issues[:_LISTED_ISSUES])
                if len(issues) > _LISTED_ISSUES:
                    text += f"\n    ... and {len(issues) - _LISTED_ISSUES} more"
        return text

    def log(self) -> None:
        """Warn when something was skipped or flagged (never silent), otherwise note the counts at info level."""
        level = logging.WARNING if (self.skipped or self.flagged) else logging.INFO
        logger.log(level, self.summary())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DataReport:
        data = dict(data)
        data["skipped"] = [Issue(**issue) for issue in data.get("skipped", [])]
        data["flagged"] = [Issue(**issue) for issue in data.get("flagged", [])]
        return cls(**data)

    @classmethod
    def merge(cls, source: str, reports: Iterable[DataReport]) -> DataReport:
        merged = cls(source)
        for report in reports:
            merged.n_records += report.n_records
            merged.n_kept += report.n_kept
            merged.skipped += report.skipped
            merged.flagged += report.flagged
            for key, value in report.counts.items():
                merged.counts[key] = merged.counts.get(key, 0) + value
        return merged


def find_smiles_problems(dataset: Dataset, smiles_column: str = "smiles", num_proc: int | None = None) -> list:
    """Per row, why its SMILES is unusable (``molecules.smiles_problem``) or None; parallel via ``Dataset.map``."""
    checked = dataset.map(
        lambda batch: {"_smiles_problem": [smiles_problem(smiles) for smiles in batch]},
        input_columns=smiles_column,
        batched=True,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        features=Features({"_smiles_problem": Value("string")}),
        desc="checking SMILES",
    )
    return checked["_smiles_problem"]


def check_on_invalid(on_invalid: str) -> None:
    if on_invalid not in ("skip", "raise"):
        raise ValueError(f"on_invalid must be 'skip' or 'raise', got {on_invalid!r}")
