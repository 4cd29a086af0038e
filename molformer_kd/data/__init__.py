"""Dataset loaders, splits, 3D conformers and metrics.

Every loader returns a ``datasets.DatasetDict`` of records (DESIGN.md "Records"): ``smiles``, ``pos`` ((N, 3)
Angstrom coordinates of the heavy atoms in SMILES atom order, or None), float label columns (NaN = missing) and
``mol_id``. Loaders build once and cache Arrow files (see ``caching.cache_root``); problems with single records
are skipped or flagged and reported (``return_report=True`` and the ``molformer_kd.data`` logger), never silent.

The public names are imported from their modules on first use (PEP 562): the featurizer, the models and the
pipeline need only light modules of this layer (``molecules``, ``pretrained``, ``metrics``, ``domain``), and
importing them must not import ``datasets`` and pandas (about a second of every start-up) through this file.
"""

import importlib

# The public names, by the module of this package that defines them.
_MODULE_EXPORTS = {
    "caching": ("cache_root",),
    "conformers": ("embed_conformer", "generate_conformers"),
    "downstream": ("DOWNSTREAM_DATASETS", "DownstreamDataset", "load_downstream"),
    "geometry": ("AtomMappingError", "map_mol_positions_to_smiles", "map_positions_to_smiles", "match_atoms_to_smiles"),
    "metrics": (
        "EnergyForceMetrics",
        "accuracy",
        "gap_closed",
        "log_loss",
        "mae",
        "per_label_classification_metrics",
        "per_label_metrics",
        "rmse",
        "roc_auc",
    ),
    "molecules": ("smiles_and_positions_from_mol", "smiles_problem", "token_atom_indices"),
    "qm9": ("HARTREE_TO_EV", "QM9_LABELS", "embedded_qm9_metadata", "load_embedded_qm9", "load_qm9"),
    "records": ("DataReport", "Issue", "record_features"),
    "sdf": ("load_pcqm4mv2", "load_sdf"),
    "splits": ("murcko_scaffold", "random_split", "scaffold_split", "split_dataset", "split_indices"),
    "tabular": ("load_csv",),
    "xtb": ("energy_statistics", "load_qm9_xtb"),
}
_DEFINING_MODULE = {name: module for module, names in _MODULE_EXPORTS.items() for name in names}

__all__ = sorted(_DEFINING_MODULE)


def __getattr__(name: str) -> object:
    if name not in _DEFINING_MODULE:  # also how `from molformer_kd.data import sdf` goes on to import the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_DEFINING_MODULE[name]}", __name__), name)
    globals()[name] = value  # from now on a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
