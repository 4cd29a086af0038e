"""molformer_kd: distil 3D molecular teachers into fast 2D graph and SMILES students.

Importing the package registers every config, model, head, featurizer, tokenizer and pipeline with the
transformers Auto classes, so checkpoints load with `AutoModel.from_pretrained` and no `trust_remote_code`.
"""

from . import data, distillation, modeling, pipelines, tokenization  # noqa: F401  (imports register Auto classes)
from .modeling import AutoModelForMolecularPropertyPrediction  # noqa: F401

__version__ = "0.1.0"
