"""SMILES grammar and front door, graph featurizer, SMILES tokenizers, collators and processor loading (no imports
from modeling/)."""

from .collators import GraphCollator, PairedCollator, collect_labels
from .featurization import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, MoleculeFeaturizer, register_featurizer, smiles_to_mol
from .processors import check_processor_matches_model, load_processor, register_tokenizers
from .smiles_grammar import Atom, ParsedSmiles, SmilesParseError, parse_smiles
from .tokenization_smiles import SmilesTokenizer
from .tokenization_st_base import StBaseTokenizer, enumerate_random_smiles, regex_tokenize
from .validation import DEFAULT_MAX_ATOMS, CheckedSmiles, MoleculeTooLargeError, check_smiles

register_tokenizers()

__all__ = [
    "ATOM_FEATURE_DIMS",
    "BOND_FEATURE_DIMS",
    "DEFAULT_MAX_ATOMS",
    "Atom",
    "CheckedSmiles",
    "GraphCollator",
    "MoleculeFeaturizer",
    "MoleculeTooLargeError",
    "PairedCollator",
    "ParsedSmiles",
    "SmilesParseError",
    "SmilesTokenizer",
    "StBaseTokenizer",
    "check_processor_matches_model",
    "check_smiles",
    "collect_labels",
    "enumerate_random_smiles",
    "load_processor",
    "parse_smiles",
    "regex_tokenize",
    "register_featurizer",
    "register_tokenizers",
    "smiles_to_mol",
]
