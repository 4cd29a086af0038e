"""Rebuild the default vocabularies shipped in molformer_kd/tokenization/resources/ from QM9 + MOSES SMILES.

python scripts/build_smiles_vocabs.py      # needs qm9pack and molsets (pip install --no-deps molsets)
"""

import os

# scripts/ is sys.path[0] when this file runs as a script, so its sibling imports directly.
from check_parser_parity import moses_smiles, qm9_smiles

from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer
from molformer_kd.tokenization.tokenization_st_base import StBaseTokenizer


def main() -> None:
    corpus = qm9_smiles() + moses_smiles("train") + moses_smiles("test")
    for tokenizer_class in (SmilesTokenizer, StBaseTokenizer):
        vocab = tokenizer_class.write_vocab(corpus, tokenizer_class.default_vocab_file)
        print(
            f"{tokenizer_class.__name__}: {len(vocab)} tokens from {len(corpus)} SMILES -> "
            f"{os.path.relpath(tokenizer_class.default_vocab_file)}"
        )


if __name__ == "__main__":
    main()
