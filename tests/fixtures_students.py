"""Tiny randomly initialised students saved the way a distillation run saves them (weights + processor)."""

import torch

from molformer_kd.modeling.configuration_gin import GINConfig
from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

LABEL_NAMES = ["gap", "homo"]


def tiny_gin_student(seed: int = 0, problem_type: str = "regression") -> GINForMolecularPropertyPrediction:
    """A 2-layer d=32 GIN-virtual with a 2-label head: regression (label statistics in the config) or
    `multi_label_classification`."""
    torch.manual_seed(seed)
    statistics = {"label_mean": [6.8, -6.5], "label_std": [1.3, 0.6]} if problem_type == "regression" else {}
    config = GINConfig.from_preset(
        "tiny", num_labels=2, label_names=LABEL_NAMES, problem_type=problem_type, **statistics
    )
    model = GINForMolecularPropertyPrediction(config)
    # Non-trivial BatchNorm statistics, so that eval mode (per-molecule, batch-independent) is what gets tested.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def save_tiny_gin_student(directory, seed: int = 0):
    """Save a tiny GIN student and its featurizer into `directory`; returns (model, featurizer)."""
    model = tiny_gin_student(seed)
    featurizer = MoleculeFeaturizer()
    model.save_pretrained(directory)
    featurizer.save_pretrained(directory)
    return model, featurizer


def tiny_st_student(seed: int = 0):
    """A 1+1-layer d=32 SMILES Transformer (ST-KD) with the same 2-label regression head."""
    from molformer_kd.modeling.configuration_smiles_transformer import SmilesTransformerConfig
    from molformer_kd.modeling.modeling_smiles_transformer import SmilesTransformerForMolecularPropertyPrediction

    torch.manual_seed(seed)
    config = SmilesTransformerConfig.from_preset(
        "tiny", num_labels=2, label_names=LABEL_NAMES, label_mean=[6.8, -6.5], label_std=[1.3, 0.6]
    )
    return SmilesTransformerForMolecularPropertyPrediction(config).eval()


def save_tiny_st_student(directory, seed: int = 0):
    """Save a tiny ST student and its SMILES tokenizer into `directory`; returns (model, tokenizer)."""
    from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer

    model, tokenizer = tiny_st_student(seed), SmilesTokenizer()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer
