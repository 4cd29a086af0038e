"""SMILES grammar, graph featurizer, SMILES tokenizers and collators (no imports from modeling/)."""
