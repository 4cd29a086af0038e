"""Auto classes for the task heads transformers has no Auto class for, and one call to register a model family.

After `import molformer_kd`, `AutoModel.from_pretrained(dir)` returns the backbone of any family and
`AutoModelForMolecularPropertyPrediction.from_pretrained(dir)` the property head, with no `trust_remote_code`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from transformers import AutoConfig, AutoModel
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.models.auto.configuration_auto import CONFIG_MAPPING, CONFIG_MAPPING_NAMES

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


class AutoModelForMolecularPropertyPrediction(_BaseAutoModelClass):
    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForDenoising(_BaseAutoModelClass):
    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForEnergyAndForces(_BaseAutoModelClass):
    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


def register_family(
    config_class: type[PretrainedConfig],
    model_class: type[PreTrainedModel],
    property_class: type[PreTrainedModel] | None = None,
    denoising_class: type[PreTrainedModel] | None = None,
    energy_class: type[PreTrainedModel] | None = None,
    legacy_model_types: tuple[str, ...] = (),
) -> None:
    """Register a family's config, backbone and heads with the Auto classes (idempotent on re-import).

    `legacy_model_types`: earlier names of the family's `model_type` (checkpoints saved under them still load, and
    are saved again under the current name).
    """
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for legacy in legacy_model_types:
        # AutoConfig.register insists on the config's own model_type; the mapping itself takes any name.
        CONFIG_MAPPING.register(legacy, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    for auto_class, head_class in (
        (AutoModelForMolecularPropertyPrediction, property_class),
        (AutoModelForDenoising, denoising_class),
        (AutoModelForEnergyAndForces, energy_class),
    ):
        if head_class is not None:
            auto_class.register(config_class, head_class, exist_ok=True)
