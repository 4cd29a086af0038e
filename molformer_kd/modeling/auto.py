"""Auto classes for the task heads transformers has no Auto class for, and one call to register a model family.

After `import molformer_kd`, `AutoModel.from_pretrained(dir)` returns the backbone of any family and
`AutoModelForMolecularPropertyPrediction.from_pretrained(dir)` the property head, with no `trust_remote_code`. These
Auto classes also take the name of a student that ships with the package (`qm9-gin`, `molformer-kd/qm9-gin`;
`data/pretrained.py`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING

from transformers import AutoConfig, AutoModel
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.models.auto.configuration_auto import CONFIG_MAPPING, CONFIG_MAPPING_NAMES

from ..data.pretrained import resolve_pretrained_name

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


class _MolecularAutoModelClass(_BaseAutoModelClass):
    """An Auto class that also resolves the names of the shipped students to their folders."""

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs
    ) -> PreTrainedModel:
        return super().from_pretrained(resolve_pretrained_name(pretrained_model_name_or_path), *model_args, **kwargs)


class AutoModelForMolecularPropertyPrediction(_MolecularAutoModelClass):
    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForDenoising(_MolecularAutoModelClass):
    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForEnergyAndForces(_MolecularAutoModelClass):
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
