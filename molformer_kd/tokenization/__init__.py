"""SMILES grammar, graph featurizer, SMILES tokenizers and collators (no imports from modeling/)."""

from .collators import GraphCollator, PairedCollator, collect_labels
from .featurization import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, MoleculeFeaturizer, register_featurizer, smiles_to_mol
from .processors import load_processor
from .smiles_grammar import Atom, ParsedSmiles, SmilesParseError, parse_smiles
from .tokenization_smiles import SmilesTokenizer, register_tokenizers
from .tokenization_st_base import StBaseTokenizer, enumerate_random_smiles, regex_tokenize

register_tokenizers()

__all__ = [
    "ATOM_FEATURE_DIMS",
    "BOND_FEATURE_DIMS",
    "Atom",
    "GraphCollator",
    "MoleculeFeaturizer",
    "PairedCollator",
    "ParsedSmiles",
    "SmilesParseError",
    "SmilesTokenizer",
    "StBaseTokenizer",
    "collect_labels",
    "enumerate_random_smiles",
    "load_processor",
    "parse_smiles",
    "regex_tokenize",
    "register_featurizer",
    "register_tokenizers",
    "smiles_to_mol",
]
