"""Teachers and students as transformers `PreTrainedModel`s; importing this registers them with the Auto classes.

Each `modeling_*.py` registers its family (config, backbone, heads) when imported. The graph families also
register the `MoleculeFeaturizer` and the SMILES family the tokenizers, so `AutoFeatureExtractor` /
`AutoTokenizer.from_pretrained(checkpoint_dir)` resolve from the checkpoint's config.
"""

from ..tokenization import register_featurizer, register_tokenizers
from .auto import AutoModelForDenoising, AutoModelForEnergyAndForces, AutoModelForMolecularPropertyPrediction
from .configuration_gin import GINConfig
from .configuration_graphormer import GraphormerConfig
from .configuration_painn import PaiNNConfig
from .configuration_schnet import SchNetConfig
from .configuration_smiles_transformer import SmilesTransformerConfig
from .heads import PropertyPredictionHead, PropertyPredictionMixin, property_prediction_loss
from .modeling_gin import GINForMolecularPropertyPrediction, GINModel
from .modeling_graphormer import (
    GraphormerForDenoising,
    GraphormerForMolecularPropertyPrediction,
    GraphormerModel,
    add_coordinate_noise,
)
from .modeling_painn import PaiNNForEnergyAndForces, PaiNNModel
from .modeling_schnet import SchNetForEnergyAndForces, SchNetModel
from .modeling_smiles_transformer import SmilesTransformerForMolecularPropertyPrediction, SmilesTransformerModel
from .outputs import DenoisingOutput, MolecularModelOutput, MolecularPropertyOutput

for _graph_config in (GraphormerConfig, GINConfig):
    register_featurizer(_graph_config)
register_tokenizers(SmilesTransformerConfig)

__all__ = [
    "AutoModelForDenoising",
    "AutoModelForEnergyAndForces",
    "AutoModelForMolecularPropertyPrediction",
    "DenoisingOutput",
    "GINConfig",
    "GINForMolecularPropertyPrediction",
    "GINModel",
    "GraphormerConfig",
    "GraphormerForDenoising",
    "GraphormerForMolecularPropertyPrediction",
    "GraphormerModel",
    "MolecularModelOutput",
    "MolecularPropertyOutput",
    "PaiNNConfig",
    "PaiNNForEnergyAndForces",
    "PaiNNModel",
    "PropertyPredictionHead",
    "PropertyPredictionMixin",
    "SchNetConfig",
    "SchNetForEnergyAndForces",
    "SchNetModel",
    "SmilesTransformerConfig",
    "SmilesTransformerForMolecularPropertyPrediction",
    "SmilesTransformerModel",
    "add_coordinate_noise",
    "property_prediction_loss",
]
