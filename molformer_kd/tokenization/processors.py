"""Loading the processor saved beside a checkpoint: the graph featurizer or the SMILES tokenizer.

Shared by the distillation stages and the pipelines (both sit right of tokenization/), for directories and Hub repos.
"""

import json

from transformers import AutoFeatureExtractor, AutoTokenizer
from transformers.tokenization_utils_base import TOKENIZER_CONFIG_FILE
from transformers.utils import FEATURE_EXTRACTOR_NAME, cached_file

from .featurization import MoleculeFeaturizer
from .tokenization_smiles import SmilesTokenizer
from .tokenization_st_base import StBaseTokenizer

# Tokenizer classes by the `tokenizer_class` name saved in tokenizer_config.json.
MOLECULAR_TOKENIZERS = {cls.__name__: cls for cls in (SmilesTokenizer, StBaseTokenizer)}


def _json_file(model_id, filename, **hub_kwargs) -> dict | None:
    """A JSON file of a checkpoint directory or Hub repo, or None when the checkpoint has no such file."""
    path = cached_file(str(model_id), filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_processor(model_id, revision: str | None = None, token: str | None = None):
    """The processor saved with a student: its `MoleculeFeaturizer` (preprocessor_config.json, graph students) or
    its SMILES tokenizer (tokenizer_config.json, SMILES students)."""
    hub_kwargs = {"revision": revision, "token": token}
    featurizer_settings = _json_file(model_id, FEATURE_EXTRACTOR_NAME, **hub_kwargs)
    if featurizer_settings is not None:
        if (
            featurizer_settings.get("feature_extractor_type", MoleculeFeaturizer.__name__)
            == MoleculeFeaturizer.__name__
        ):
            return MoleculeFeaturizer.from_pretrained(model_id, **hub_kwargs)
        return AutoFeatureExtractor.from_pretrained(model_id, **hub_kwargs)
    tokenizer_settings = _json_file(model_id, TOKENIZER_CONFIG_FILE, **hub_kwargs)
    if tokenizer_settings is not None:
        tokenizer_class = MOLECULAR_TOKENIZERS.get(tokenizer_settings.get("tokenizer_class"), AutoTokenizer)
        return tokenizer_class.from_pretrained(model_id, **hub_kwargs)
    raise OSError(
        f"{model_id} has no processor: neither {FEATURE_EXTRACTOR_NAME} (graph featurizer) nor "
        f"{TOKENIZER_CONFIG_FILE} (SMILES tokenizer). Save the featurizer or tokenizer beside the model with "
        "save_pretrained(dir)."
    )
