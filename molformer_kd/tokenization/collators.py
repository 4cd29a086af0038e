"""Collators: rows -> the batches of DESIGN.md, for every model modality and every stage.

`GraphCollator` turns a list of `MoleculeFeaturizer.featurize` dicts (or raw records, when it holds a featurizer)
into the padded graph batch; `PairedCollator` builds `{"teacher_inputs", "student_inputs", "labels"}` for
distillation, from a graph teacher or an all-atom point-cloud teacher (`PointCloudFeaturizer`), with a graph student
(a `MoleculeFeaturizer`) or a SMILES student (a tokenizer);
`SingleModelCollator` builds `{"student_inputs", "labels"}` for stages that train one model (with D&D's coordinate
noise for denoising); `PointCloudCollator` pads the all-atom point clouds of the energy/force models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .featurization import GRAPH_FEATURE_KEYS, MoleculeFeaturizer, _describe, pad_graph_features
from .point_cloud import PointCloudFeaturizer


def collect_labels(rows: Sequence[Mapping[str, Any]], label_columns: Sequence[str]) -> torch.Tensor:
    """(B, T) float32 labels from the rows' label columns; a missing column or None is NaN."""
    labels = np.full((len(rows), len(label_columns)), np.nan, dtype=np.float32)
    for b, row in enumerate(rows):
        for t, column in enumerate(label_columns):
            value = row.get(column)
            if value is not None:
                labels[b, t] = value
    return torch.from_numpy(labels)


class GraphCollator:
    r"""
    Pads per-molecule graph features into the graph batch of DESIGN.md.

    Args:
        featurizer ([`MoleculeFeaturizer`], *optional*):
            Used to featurize rows that are not featurized yet (SMILES strings, RDKit molecules or records
            `{"smiles", "pos", "mol_id", ...}`). Without it every row must hold the featurizer's output keys.
        label_columns (`Sequence[str]`, defaults to `()`):
            Row columns stacked into `labels` (B, T) float32, NaN where a value is missing. Without label columns,
            a row key `labels` (scalar or list) is used when every row has one.

    Returns (from `__call__`) a dict of tensors: `input_nodes`, `attention_mask`, `in_degree`, `out_degree`,
    `spatial_pos`, `attn_edge_type`, `edge_input`, `edge_index` (flattened as `b * N + i`), `edge_attr`, `pos`
    (when the features carry coordinates) and `labels`.
    """

    def __init__(self, featurizer: MoleculeFeaturizer | None = None, label_columns: Sequence[str] = ()) -> None:
        if isinstance(label_columns, str):
            label_columns = [label_columns]
        self.featurizer = featurizer
        self.label_columns = list(label_columns)

    def featurize_rows(self, rows: Sequence[Any]) -> list[Mapping[str, Any]]:
        """Per-molecule features of each row (rows already featurized are passed through)."""
        pending = [b for b, row in enumerate(rows) if not (isinstance(row, Mapping) and "input_nodes" in row)]
        if pending and self.featurizer is None:
            raise ValueError(
                f"row {_describe(rows[pending[0]])} is not featurized (no 'input_nodes') and the GraphCollator has "
                "no featurizer; pass GraphCollator(featurizer=MoleculeFeaturizer(...))"
            )
        features = list(rows)
        if pending:  # one batched call, the featurizer's fast path
            for b, row_features in zip(pending, self.featurizer.featurize_many([rows[b] for b in pending])):
                features[b] = row_features
        return features

    def __call__(self, rows: Sequence[Any]) -> dict[str, torch.Tensor]:
        if len(rows) == 0:
            raise ValueError("cannot collate an empty list of molecules")
        batch = self.pad(self.featurize_rows(rows))
        labels = self.labels(rows)
        if labels is not None:
            batch["labels"] = labels
        return batch

    def labels(self, rows: Sequence[Any]) -> torch.Tensor | None:
        if self.label_columns:
            return collect_labels(rows, self.label_columns)
        if all(isinstance(row, Mapping) and row.get("labels") is not None for row in rows):
            labels = np.asarray([np.asarray(row["labels"], dtype=np.float32).reshape(-1) for row in rows])
            return torch.from_numpy(labels.astype(np.float32))
        return None

    @staticmethod
    def pad(features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad per-molecule features (numpy arrays or nested lists) into the graph batch tensors."""
        return pad_graph_features(features)


def _is_featurizer(encoder: Any) -> bool:
    return isinstance(encoder, MoleculeFeaturizer)


class PairedCollator:
    r"""
    Builds the paired distillation batch `{"teacher_inputs", "student_inputs", "labels"}` from dataset rows
    `{"smiles", "pos", <label columns>, "mol_id"}`.

    Args:
        teacher_featurizer ([`MoleculeFeaturizer`] or [`PointCloudFeaturizer`]):
            The teacher's featurizer; with `use_3d=True` every row needs `pos` (a clear error names the row
            otherwise) and `teacher_inputs` carries `pos`. A `PointCloudFeaturizer` gives the point-cloud batch of
            a SchNet/PaiNN teacher (`atomic_numbers`, `pos`, `atom_mask`), token atoms first, then the hydrogens;
            the batch then also holds `shared_atom_mask` (B, N): the teacher atoms that are student atoms (its
            first N_b), the ones the objectives align.
        student_encoder ([`MoleculeFeaturizer`] or a SMILES tokenizer):
            A featurizer gives a graph `student_inputs` (2D unless it has `use_3d=True`); anything else is called
            as `student_encoder(list_of_smiles, padding=True, return_tensors="pt")` and gives the SMILES batch.
        label_columns (`Sequence[str]`, defaults to `()`):
            Row columns stacked into `labels` (B, T), NaN where missing; no `labels` key without label columns.

    Atom j of the teacher must be atom j of the student: the collator checks the atom counts of every molecule
    (graph student, or a tokenizer that returns `atom_mask`; a point-cloud teacher's token atoms) and raises naming
    the SMILES when they differ.
    """

    def __init__(
        self,
        teacher_featurizer: MoleculeFeaturizer | PointCloudFeaturizer,
        student_encoder: MoleculeFeaturizer | Callable,
        label_columns: Sequence[str] = (),
    ) -> None:
        if not isinstance(teacher_featurizer, MoleculeFeaturizer | PointCloudFeaturizer):
            raise TypeError(
                f"teacher_featurizer must be a MoleculeFeaturizer or a PointCloudFeaturizer, got "
                f"{type(teacher_featurizer)}"
            )
        if isinstance(label_columns, str):
            label_columns = [label_columns]
        self.teacher_featurizer = teacher_featurizer
        self.student_encoder = student_encoder
        self.label_columns = list(label_columns)

    def _student_shares_teacher_graph(self) -> bool:
        # A 2D student featurized with the teacher's settings gets exactly the teacher's graph arrays.
        student, teacher = self.student_encoder, self.teacher_featurizer
        return (
            _is_featurizer(teacher)
            and not student.use_3d
            and student.multi_hop_max_dist == teacher.multi_hop_max_dist
            and student.max_spatial == teacher.max_spatial
            and student.feature_scheme == teacher.feature_scheme
            and student.graph_encodings == teacher.graph_encodings
        )

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if len(rows) == 0:
            raise ValueError("cannot collate an empty list of molecules")
        for row in rows:
            if not isinstance(row, Mapping) or "smiles" not in row:
                raise ValueError(f"PairedCollator expects dataset rows with a 'smiles' key, got {row!r:.200}")
        teacher_features = self.teacher_featurizer.featurize_many(rows)
        if _is_featurizer(self.teacher_featurizer):
            teacher_atoms = np.array([len(f["input_nodes"]) for f in teacher_features])
            batch = {"teacher_inputs": GraphCollator.pad(teacher_features)}
        else:
            teacher_atoms = np.array([f["shared_atoms"] for f in teacher_features])
            shared = torch.arange(int(teacher_atoms.max()))[None, :] < torch.from_numpy(teacher_atoms)[:, None]
            batch = {"teacher_inputs": PointCloudCollator()(teacher_features), "shared_atom_mask": shared.long()}

        if _is_featurizer(self.student_encoder):
            if self._student_shares_teacher_graph():
                student_features = [{key: f[key] for key in GRAPH_FEATURE_KEYS} for f in teacher_features]
            else:
                student_features = self.student_encoder.featurize_many(rows)
            student_atoms = np.array([len(f["input_nodes"]) for f in student_features])
            batch["student_inputs"] = GraphCollator.pad(student_features)
        else:
            encoded = self.student_encoder([row["smiles"] for row in rows], padding=True, return_tensors="pt")
            batch["student_inputs"] = dict(encoded)
            atom_mask = batch["student_inputs"].get("atom_mask")
            student_atoms = None if atom_mask is None else atom_mask.sum(dim=1).numpy()
        if student_atoms is not None:
            mismatched = np.nonzero(student_atoms != teacher_atoms)[0]
            if len(mismatched):
                b = int(mismatched[0])
                raise ValueError(
                    f"molecule {_describe(rows[b])}: the teacher has {teacher_atoms[b]} atoms but the student "
                    f"{student_atoms[b]}; teacher atom j must be student atom j (atom rule, DESIGN.md)"
                )
        if self.label_columns:
            batch["labels"] = collect_labels(rows, self.label_columns)
        return batch


def add_coordinate_noise(
    pos: torch.Tensor, atom_mask: torch.Tensor, sigma: float = 0.04, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """D&D stage 1 (eq. 3): `R~ = R + sigma * eps`, eps ~ N(0, I_3) per real atom (0 at padding).

    Returns `(noisy_pos, eps)`; eps (unit variance) is the denoising target.
    """
    noise = torch.randn(pos.shape, generator=generator, dtype=pos.dtype, device=pos.device)
    noise = noise * atom_mask.unsqueeze(-1).to(pos.dtype)
    return pos + sigma * noise, noise


@dataclass
class SingleModelCollator:
    """Records -> `{"student_inputs", "labels"?}` for stages that train or test one model (no teacher).

    Graph models get the padded graph batch (`GraphCollator`), point-cloud models (a `PointCloudFeaturizer`) the
    padded point clouds, SMILES models their tokenizer's batch.
    `noise_sigma` (denoise stage) perturbs the coordinates (D&D eq. 3) and adds the true noise as `noise`.
    """

    processor: object
    label_columns: list[str] = field(default_factory=list)
    noise_sigma: float | None = None

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if isinstance(self.processor, MoleculeFeaturizer):
            inputs = GraphCollator(self.processor)(rows)
            inputs.pop("labels", None)
        elif isinstance(self.processor, PointCloudFeaturizer):
            inputs = PointCloudCollator()(self.processor.featurize_many(rows))
        else:
            inputs = dict(self.processor([row["smiles"] for row in rows], padding=True, return_tensors="pt"))
        if self.noise_sigma is not None:
            atom_mask = inputs["atom_mask"] if "atom_mask" in inputs else inputs["attention_mask"]  # clouds, graphs
            inputs["pos"], inputs["noise"] = add_coordinate_noise(inputs["pos"], atom_mask.bool(), self.noise_sigma)
        batch = {"student_inputs": inputs}
        if self.label_columns:
            batch["labels"] = collect_labels(rows, self.label_columns)
        return batch


class PointCloudCollator:
    """Pads point-cloud rows (`atomic_numbers`, `positions`, optional `energy`/`forces`) into one batch.

    `paired=True` returns the DESIGN.md paired layout for distillation, where teacher and student read the same
    inputs: `{"teacher_inputs": inputs, "student_inputs": inputs, "labels": {"energy", "forces"}}`.
    """

    def __init__(self, paired: bool = False, dtype: torch.dtype = torch.float32) -> None:
        self.paired = paired
        self.dtype = dtype

    def __call__(self, rows: Sequence[dict]) -> dict:
        if not rows:
            raise ValueError("cannot collate an empty list of rows")
        batch_size = len(rows)
        num_atoms = [len(row["atomic_numbers"]) for row in rows]
        width = max(num_atoms)
        atomic_numbers = torch.zeros(batch_size, width, dtype=torch.long)
        pos = torch.zeros(batch_size, width, 3, dtype=self.dtype)
        atom_mask = torch.zeros(batch_size, width, dtype=torch.long)
        has_labels = "energy" in rows[0]
        energy = torch.zeros(batch_size, dtype=self.dtype)
        forces = torch.zeros(batch_size, width, 3, dtype=self.dtype)
        for b, (row, n) in enumerate(zip(rows, num_atoms)):
            row_positions = torch.as_tensor(row["positions"], dtype=self.dtype)
            if row_positions.shape != (n, 3):
                raise ValueError(
                    f"row {b} ({row.get('mol_id', '?')}): positions of shape {tuple(row_positions.shape)}, "
                    f"expected ({n}, 3)"
                )
            atomic_numbers[b, :n] = torch.as_tensor(row["atomic_numbers"], dtype=torch.long)
            pos[b, :n] = row_positions
            atom_mask[b, :n] = 1
            if has_labels:
                energy[b] = float(row["energy"])
                forces[b, :n] = torch.as_tensor(row["forces"], dtype=self.dtype)
        inputs = {"atomic_numbers": atomic_numbers, "pos": pos, "atom_mask": atom_mask}
        labels = {"energy": energy, "forces": forces} if has_labels else None
        if self.paired:
            batch = {"teacher_inputs": inputs, "student_inputs": inputs}
            if labels is not None:
                batch["labels"] = labels
            return batch
        return {**inputs, "labels": labels} if labels is not None else inputs


class SingleModelPointCloudCollator:
    """Point-cloud rows -> `{"student_inputs": inputs, "labels": {"energy", "forces"}}`: the `DistillationTrainer`
    batch of the stages that train one model without a teacher (teacher, finetune)."""

    def __init__(self) -> None:
        self.pad = PointCloudCollator()

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict:
        inputs = self.pad(rows)
        labels = inputs.pop("labels", None)
        return {"student_inputs": inputs} if labels is None else {"student_inputs": inputs, "labels": labels}
