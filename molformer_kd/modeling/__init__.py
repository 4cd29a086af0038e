"""Teachers and students as transformers `PreTrainedModel`s; importing this registers them with the Auto classes.

Each `modeling_*.py` registers its family (config, backbone, heads) when imported. The graph families also
register the `MoleculeFeaturizer` and the SMILES family the tokenizers, so `AutoFeatureExtractor` /
`AutoTokenizer.from_pretrained(checkpoint_dir)` resolve from the checkpoint's config.

Every model follows one contract (`modeling_utils.MolecularPreTrainedModel`, checked for every family by
tests/test_model_contract.py): `model(**batch)` with the full batch of its modality, `return_dict`, outputs from
`outputs.py`, no host-device synchronisation in `forward` (the value checks, `check_input_values`, run in
collators on the CPU batch and in `forward` only on CPU inputs).
Property heads are predictors (`heads.py`) chosen once from `config.problem_type`.
"""

from ..tokenization import register_featurizer, register_tokenizers
from .auto import AutoModelForDenoising, AutoModelForEnergyAndForces, AutoModelForMolecularPropertyPrediction
from .configuration_gin import GINConfig
from .configuration_graphormer import GraphormerConfig
from .configuration_painn import PaiNNConfig
from .configuration_schnet import SchNetConfig
from .configuration_smiles_transformer import SmilesTransformerConfig
from .heads import (
    BinaryClassificationPredictor,
    MulticlassClassificationPredictor,
    PropertyPredictionMixin,
    PropertyPredictor,
    RegressionPredictor,
    build_predictor,
    predictor_class,
)
from .modeling_gin import GINForMolecularPropertyPrediction, GINModel
from .modeling_graphormer import (
    GraphormerForDenoising,
    GraphormerForMolecularPropertyPrediction,
    GraphormerModel,
)
from .modeling_painn import (
    PaiNNForDenoising,
    PaiNNForEnergyAndForces,
    PaiNNForMolecularPropertyPrediction,
    PaiNNModel,
)
from .modeling_schnet import (
    SchNetForDenoising,
    SchNetForEnergyAndForces,
    SchNetForMolecularPropertyPrediction,
    SchNetModel,
)
from .modeling_smiles_transformer import SmilesTransformerForMolecularPropertyPrediction, SmilesTransformerModel
from .modeling_utils import BATCH_KEYS, MolecularPreTrainedModel
from .outputs import (
    AtomisticModelOutput,
    DenoisingOutput,
    EnergyAndForcesOutput,
    MolecularModelOutput,
    MolecularPropertyOutput,
)

for _graph_config in (GraphormerConfig, GINConfig):
    register_featurizer(_graph_config)
register_tokenizers(SmilesTransformerConfig)

__all__ = [
    "BATCH_KEYS",
    "AtomisticModelOutput",
    "AutoModelForDenoising",
    "AutoModelForEnergyAndForces",
    "AutoModelForMolecularPropertyPrediction",
    "BinaryClassificationPredictor",
    "DenoisingOutput",
    "EnergyAndForcesOutput",
    "GINConfig",
    "GINForMolecularPropertyPrediction",
    "GINModel",
    "GraphormerConfig",
    "GraphormerForDenoising",
    "GraphormerForMolecularPropertyPrediction",
    "GraphormerModel",
    "MolecularModelOutput",
    "MolecularPreTrainedModel",
    "MolecularPropertyOutput",
    "MulticlassClassificationPredictor",
    "PaiNNConfig",
    "PaiNNForDenoising",
    "PaiNNForEnergyAndForces",
    "PaiNNForMolecularPropertyPrediction",
    "PaiNNModel",
    "PropertyPredictionMixin",
    "PropertyPredictor",
    "RegressionPredictor",
    "SchNetConfig",
    "SchNetForDenoising",
    "SchNetForEnergyAndForces",
    "SchNetForMolecularPropertyPrediction",
    "SchNetModel",
    "SmilesTransformerConfig",
    "SmilesTransformerForMolecularPropertyPrediction",
    "SmilesTransformerModel",
    "build_predictor",
    "predictor_class",
]
