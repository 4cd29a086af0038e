"""Loading the processor saved beside a checkpoint (the graph featurizer or the SMILES tokenizer) and checking it
against the model it serves.

Shared by the distillation stages and the pipelines (both sit right of tokenization/), for directories and Hub repos.
The featurizer and tokenizers check their own settings (type, bounds, unknown keys) when loaded; `load_processor`
also checks them against the checkpoint's config.json (`check_processor_matches_model`), so a processor that would
silently change predictions or exhaust memory is refused with a one-line error naming the file and the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from transformers import AutoFeatureExtractor, AutoTokenizer
from transformers.models.auto import tokenization_auto
from transformers.tokenization_utils_base import TOKENIZER_CONFIG_FILE
from transformers.utils import CONFIG_NAME, FEATURE_EXTRACTOR_NAME, cached_file

from ..data.pretrained import resolve_pretrained_name
from .featurization import MoleculeFeaturizer
from .point_cloud import PointCloudFeaturizer
from .tokenization_smiles import SmilesTokenizer
from .tokenization_st_base import StBaseTokenizer

if TYPE_CHECKING:
    import os

    from transformers import PretrainedConfig

__all__ = ["MOLECULAR_TOKENIZERS", "check_processor_matches_model", "load_processor", "register_tokenizers"]

# Tokenizer classes by the `tokenizer_class` name saved in tokenizer_config.json.
MOLECULAR_TOKENIZERS = {cls.__name__: cls for cls in (SmilesTokenizer, StBaseTokenizer)}
# The models that read point clouds (`PointCloudFeaturizer`), and only they.
POINT_CLOUD_MODEL_TYPES = ("molformer_painn", "molformer_schnet", "painn", "schnet")
# The tokenizer each SMILES Transformer variant reads.
_TOKENIZER_OF_VARIANT = {"st_kd": SmilesTokenizer, "st_base": StBaseTokenizer}


def register_tokenizers(config_class: type[PretrainedConfig] | None = None) -> None:
    """Make `AutoTokenizer.from_pretrained(dir)` resolve `"tokenizer_class": "SmilesTokenizer"` (and
    `StBaseTokenizer`) from `tokenizer_config.json`; with `config_class`, also map that model config to
    `SmilesTokenizer` so a model directory without a tokenizer_class entry resolves too."""
    # AutoTokenizer.register needs a config class, which the tokenizer layer does not own; the name registry it
    # fills is what `tokenizer_class_from_name` reads for the `tokenizer_class` field.
    for tokenizer_class in MOLECULAR_TOKENIZERS.values():
        tokenization_auto.REGISTERED_TOKENIZER_CLASSES[tokenizer_class.__name__] = tokenizer_class
    if config_class is not None:
        AutoTokenizer.register(config_class, tokenizer_class=SmilesTokenizer, exist_ok=True)


def _json_file(model_id: str | os.PathLike, filename: str, **hub_kwargs) -> dict | None:
    """A JSON file of a checkpoint directory or Hub repo, or None when the checkpoint has no such file."""
    path = cached_file(str(model_id), filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_processor(
    model_id: str | os.PathLike, revision: str | None = None, token: str | None = None
) -> MoleculeFeaturizer | PointCloudFeaturizer | SmilesTokenizer | StBaseTokenizer:
    """The processor saved with a model: its `MoleculeFeaturizer` (preprocessor_config.json, graph students), its
    `PointCloudFeaturizer` (the same file, all-atom 3D property models) or its SMILES tokenizer
    (tokenizer_config.json, SMILES students), checked against the checkpoint's config.json when it has one
    (`check_processor_matches_model`). `model_id` may name a shipped student (`qm9-gin`)."""
    model_id = resolve_pretrained_name(model_id)
    hub_kwargs = {"revision": revision, "token": token}
    featurizer_settings = _json_file(model_id, FEATURE_EXTRACTOR_NAME, **hub_kwargs)
    if featurizer_settings is not None:
        source = f"{model_id}/{FEATURE_EXTRACTOR_NAME}"
        featurizer_type = featurizer_settings.get("feature_extractor_type", MoleculeFeaturizer.__name__)
        if featurizer_type == MoleculeFeaturizer.__name__:
            processor = MoleculeFeaturizer.from_pretrained(model_id, **hub_kwargs)
        elif featurizer_type == PointCloudFeaturizer.__name__:
            processor = PointCloudFeaturizer.from_pretrained(model_id, **hub_kwargs)
        else:
            processor = AutoFeatureExtractor.from_pretrained(model_id, **hub_kwargs)
    else:
        tokenizer_settings = _json_file(model_id, TOKENIZER_CONFIG_FILE, **hub_kwargs)
        if tokenizer_settings is None:
            raise OSError(
                f"{model_id} has no processor: neither {FEATURE_EXTRACTOR_NAME} (graph featurizer) nor "
                f"{TOKENIZER_CONFIG_FILE} (SMILES tokenizer). Save the featurizer or tokenizer beside the model with "
                "save_pretrained(dir)."
            )
        source = f"{model_id}/{TOKENIZER_CONFIG_FILE}"
        tokenizer_class = MOLECULAR_TOKENIZERS.get(tokenizer_settings.get("tokenizer_class"), AutoTokenizer)
        processor = tokenizer_class.from_pretrained(model_id, **hub_kwargs)
    model_config = _json_file(model_id, CONFIG_NAME, **hub_kwargs)
    if model_config is not None:
        check_processor_matches_model(processor, model_config, source)
    return processor


def check_processor_matches_model(processor: Any, model_config: Any, source: str) -> None:
    """Raise a one-line `ValueError` naming `source` when the processor disagrees with the model config (a
    `PretrainedConfig` or its config.json dict): a point-cloud featurizer for SchNet/PaiNN only, with the hydrogens
    the model reads; a 2D Graphormer's `multi_hop_max_dist` / `max_spatial`, a
    Graphormer's geometry (`use_3d`), a SMILES Transformer's tokenizer class (variant), vocabulary size and pad id."""
    config = model_config if isinstance(model_config, Mapping) else model_config.to_dict()
    model_type = config.get("model_type")
    point_cloud_model = model_type in POINT_CLOUD_MODEL_TYPES
    if isinstance(processor, PointCloudFeaturizer) != point_cloud_model:
        raise ValueError(
            f"{source}: a {type(processor).__name__} cannot serve a {model_type!r} model; SchNet and PaiNN read the "
            "point clouds of a PointCloudFeaturizer, and only they do"
        )
    if point_cloud_model and processor.hydrogens != config.get("hydrogens", True):
        raise ValueError(
            f"{source}: hydrogens = {processor.hydrogens} but the model's config has hydrogens = "
            f"{config.get('hydrogens', True)}; the point clouds must hold the atoms the model was trained on"
        )
    if isinstance(processor, MoleculeFeaturizer):
        if model_type != "molformer_graphormer":
            return
        geometry = config.get("geometry", "2d")
        model_reads_coordinates = geometry in ("3d", "2d+3d")
        model_reads_graph = geometry in ("2d", "2d+3d")
        # Only a Graphormer with the 2D view reads the shortest paths and path bonds that these two settings shape.
        for key in ("multi_hop_max_dist", "max_spatial") if model_reads_graph else ():
            if key in config and getattr(processor, key) != config[key]:
                raise ValueError(
                    f"{source}: {key} = {getattr(processor, key)} but the model's config has {key} = {config[key]}; "
                    "the featurizer must encode graphs the way the model was trained on them"
                )
        if model_reads_graph and not processor.graph_encodings:
            raise ValueError(
                f"{source}: graph_encodings=False, but a Graphormer with the 2D view reads the spatial_pos, "
                "attn_edge_type and edge_input it skips; use a featurizer with graph_encodings=True"
            )
        if processor.use_3d != model_reads_coordinates:
            raise ValueError(
                f"{source}: use_3d = {processor.use_3d} but the model's config has geometry = "
                f"{config.get('geometry')!r}"
            )
    elif isinstance(processor, (SmilesTokenizer, StBaseTokenizer)) and model_type == "molformer_smiles_transformer":
        expected = _TOKENIZER_OF_VARIANT.get(config.get("variant"))
        if expected is not None and not isinstance(processor, expected):
            raise ValueError(
                f"{source}: tokenizer_class = {type(processor).__name__} but the model's variant "
                f"{config.get('variant')!r} reads {expected.__name__}"
            )
        vocab_size = config.get("vocab_size")
        if vocab_size is not None and len(processor) > vocab_size:
            raise ValueError(
                f"{source}: the vocabulary has {len(processor)} tokens but the model's config has vocab_size = "
                f"{vocab_size}; token ids beyond it have no embedding"
            )
        pad_token_id = config.get("pad_token_id")
        if pad_token_id is not None and processor.pad_token_id != pad_token_id:
            raise ValueError(
                f"{source}: pad_token = {processor.pad_token!r} has id {processor.pad_token_id} but the model's "
                f"config has pad_token_id = {pad_token_id}"
            )
