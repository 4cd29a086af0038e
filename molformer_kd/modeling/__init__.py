"""Teachers and students as transformers `PreTrainedModel`s; importing this registers them with the Auto classes."""

from .heads import PropertyPredictionHead, PropertyPredictionMixin, property_prediction_loss
from .outputs import DenoisingOutput, MolecularModelOutput, MolecularPropertyOutput

__all__ = [
    "DenoisingOutput",
    "MolecularModelOutput",
    "MolecularPropertyOutput",
    "PropertyPredictionHead",
    "PropertyPredictionMixin",
    "property_prediction_loss",
]
