"""The students that ship inside the package, and loading them by name.

`molformer_kd/pretrained/<name>/` holds one shipped student each, exactly what `save_pretrained` writes (config.json,
model.safetensors, the featurizer or tokenizer files) plus its model card (README.md), parity plot, `provenance.json`
(the commit and config that built it, its data split, test metrics beside the teacher's and chemprop's) and
`test_sample.csv` (a sample of its test split with the predictions measured when it was shipped).
`scripts/ship_pretrained.py` writes such a folder and `make pretrained` rebuilds them all.

A shipped student loads by its name, short (`qm9-gin`) or Hub-style (`molformer-kd/qm9-gin`), wherever molformer_kd
loads a checkpoint: `AutoModelForMolecularPropertyPrediction.from_pretrained`, the model classes' `from_pretrained`,
the processors, `MolecularPropertyPredictionPipeline.from_pretrained` (which defaults to `DEFAULT_MODEL`) and
`molformer-kd predict --model`. No network, no `trust_remote_code`. A local folder of the same name comes first (a
path is a path); other names go on to the Hub as before. transformers' own `AutoModel` and `pipeline()` do not know
the names: pass them `pretrained_path(name)`.

This module sits in the first layer (stdlib only) because every later layer that loads a checkpoint resolves names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MODEL",
    "HUB_NAMESPACE",
    "PRETRAINED_DIR",
    "PROVENANCE_FILE",
    "SAMPLE_ATOL",
    "TEST_SAMPLE_FILE",
    "ShippedModel",
    "pretrained_path",
    "resolve_pretrained_name",
    "shipped_model",
    "shipped_models",
]

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
# `molformer-kd/<name>` names a shipped model too (the Hub id it would have).
HUB_NAMESPACE = "molformer-kd"
# What `MolecularPropertyPredictionPipeline.from_pretrained()` and `pipeline("molecular-property-prediction")` load
# when no model is given.
DEFAULT_MODEL = "qm9-gin"
PROVENANCE_FILE = "provenance.json"
TEST_SAMPLE_FILE = "test_sample.csv"
# How far a shipped student's predictions and sample metrics may move from those measured when it was shipped (label
# units, eV for the QM9 students): float32 CPU kernels of different torch builds and thread counts differ far less.
SAMPLE_ATOL = 1e-3


@dataclass(frozen=True)
class ShippedModel:
    """One shipped student: its name, folder and `provenance.json` (empty when the folder has none)."""

    name: str
    path: Path
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def hub_id(self) -> str:
        return f"{HUB_NAMESPACE}/{self.name}"

    @property
    def test_metrics(self) -> dict[str, float]:
        """Metrics on the whole test split of its data, measured when it was shipped."""
        return dict(self.provenance.get("metrics", {}).get("test", {}))

    @property
    def label_names(self) -> list[str]:
        return list(self.config().get("label_names") or [])

    def config(self) -> dict[str, Any]:
        """Its config.json."""
        return json.loads((self.path / "config.json").read_text(encoding="utf-8"))

    def weights_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.path.glob("*.safetensors"))


def _root(root: str | os.PathLike | None) -> Path:
    # Read PRETRAINED_DIR at call time, so that tests (and a relocated install) can point it elsewhere.
    return Path(root) if root is not None else PRETRAINED_DIR


def _short_name(name: str) -> str | None:
    """`qm9-gin` of `qm9-gin` or `molformer-kd/qm9-gin`; None for anything that cannot be a shipped name."""
    if name.startswith(HUB_NAMESPACE + "/"):
        name = name[len(HUB_NAMESPACE) + 1 :]
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    return name


def _load(folder: Path) -> ShippedModel:
    provenance_file = folder / PROVENANCE_FILE
    provenance = json.loads(provenance_file.read_text(encoding="utf-8")) if provenance_file.is_file() else {}
    return ShippedModel(folder.name, folder, provenance)


def shipped_models(root: str | os.PathLike | None = None) -> list[ShippedModel]:
    """Every shipped student (a folder of `root`, default `PRETRAINED_DIR`, with a config.json; hidden folders are
    half-shipped ones), sorted by name."""
    root = _root(root)
    if not root.is_dir():
        return []
    return [
        _load(folder)
        for folder in sorted(root.iterdir())
        if not folder.name.startswith(".") and (folder / "config.json").is_file()
    ]


def shipped_model(name: str | os.PathLike, root: str | os.PathLike | None = None) -> ShippedModel | None:
    """The shipped student called `name` (`qm9-gin` or `molformer-kd/qm9-gin`), or None."""
    short = _short_name(os.fspath(name)) if isinstance(name, (str, os.PathLike)) else None
    if short is None:
        return None
    folder = _root(root) / short
    return _load(folder) if (folder / "config.json").is_file() else None


def pretrained_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of the shipped student `name`, for any `from_pretrained`; a KeyError lists what ships."""
    model = shipped_model(name, root)
    if model is None:
        names = [m.name for m in shipped_models(root)]
        shipped = ", ".join(names) if names else "none (build them with `make pretrained`)"
        raise KeyError(f"no shipped model {name!r}; the shipped models: {shipped}")
    return model.path


def resolve_pretrained_name(
    name_or_path: str | os.PathLike | None, root: str | os.PathLike | None = None
) -> str | os.PathLike | None:
    """The shipped folder when `name_or_path` names a shipped student and is not an existing local folder; otherwise
    `name_or_path` unchanged (a local folder, a Hub repo id, None)."""
    if name_or_path is None or not isinstance(name_or_path, (str, os.PathLike)):
        return name_or_path
    if os.path.isdir(name_or_path):
        return name_or_path
    model = shipped_model(name_or_path, root)
    return str(model.path) if model is not None else name_or_path
