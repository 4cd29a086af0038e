"""molformer_kd: distil 3D molecular teachers into fast 2D graph and SMILES students.

Importing the package registers every config, model, head, featurizer, tokenizer and pipeline with the
transformers Auto classes, so checkpoints load with `AutoModel.from_pretrained` and no `trust_remote_code`.
`data` (datasets, loaders) and `distillation` (the trainer) register nothing and are imported on first use
(`molformer_kd.data`, PEP 562), so that predicting does not pay for training.
"""

import importlib

from . import modeling, pipelines, tokenization  # noqa: F401  (imports register Auto classes)
from .modeling import AutoModelForMolecularPropertyPrediction  # noqa: F401

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("data", "distillation")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_SUBMODULES])
