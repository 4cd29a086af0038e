"""ST-BASE tokenizer: the standard regex SMILES tokens behind a `[CLS]` global token (ST-KD §4.1 baseline).

Tokens are those of the widely used SMILES regular expression (Schwaller et al., Molecular Transformer): bracket
atoms whole, `Br`/`Cl` as one token, organic-subset atoms, bond symbols, ring-closure digits with `%nn` whole,
parentheses, `.` and the few SMARTS/reaction characters the expression also lists. The encoding is
`input_ids` + `attention_mask`; positions are sinusoidal and computed in the model. `enumerate_random_smiles`
gives the random-SMILES augmentation (5 per molecule in the paper). Encoding reads each SMILES through the front door
of `validation.check_smiles` first, so the ST-BASE student refuses exactly what the other students refuse.
"""

from __future__ import annotations

import os
import re

from rdkit import Chem, rdBase

from .smiles_grammar import SmilesParseError
from .tokenization_smiles import ORGANIC_SYMBOLS, RESOURCES, STEREO_CARBON_SYMBOLS, JsonVocabTokenizer
from .validation import DEFAULT_MAX_ATOMS, check_smiles

__all__ = ["DEFAULT_ST_BASE_VOCAB_FILE", "StBaseTokenizer", "enumerate_random_smiles", "regex_tokenize"]

DEFAULT_ST_BASE_VOCAB_FILE = os.path.join(RESOURCES, "st_base_vocab.json")

# The regular expression of the Molecular Transformer, with `%(nnn)` ring closures and the `<` of dative bonds
# (`[Fe]<-N`) added; a final `.` catches characters it does not know so that they are reported instead of silently
# dropped.
SMILES_REGEX = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|<|\*|\$|"
    r"%\([0-9]+\)|%[0-9]{2}|[0-9])"
)
_REGEX_WITH_CATCH_ALL = re.compile(SMILES_REGEX[:-1] + r"|(.))", re.DOTALL)


def regex_tokenize(smiles: str) -> list[str]:
    """The regex tokens of `smiles`; raises `SmilesParseError` at the first character the regex cannot read."""
    if not smiles:
        raise SmilesParseError(smiles, 0, "empty input")
    tokens = []
    for match in _REGEX_WITH_CATCH_ALL.finditer(smiles):
        if match.group(2) is not None:
            raise SmilesParseError(smiles, match.start(), f"unexpected character {match.group(2)!r}")
        tokens.append(match.group(1))
    return tokens


BASE_REGEX_SYMBOLS = (
    *ORGANIC_SYMBOLS,
    *STEREO_CARBON_SYMBOLS,
    "(",
    ")",
    ".",
    "=",
    "#",
    "-",
    "+",
    "\\",
    "/",
    ":",
    "~",
    "@",
    "?",
    ">",
    "$",
    *map(str, range(10)),
)


class StBaseTokenizer(JsonVocabTokenizer):
    """Regex SMILES tokenizer for the ST-BASE baseline: `[CLS]` then the regex tokens.

    `tokenizer(smiles_list, padding=True, return_tensors="pt")` gives `input_ids` and `attention_mask`.
    """

    model_input_names = ["input_ids", "attention_mask"]  # noqa: RUF012  (transformers class attribute)
    default_vocab_file = DEFAULT_ST_BASE_VOCAB_FILE
    special_tokens_order = ("[PAD]", "[UNK]", "[CLS]", "[MASK]")
    base_symbols = BASE_REGEX_SYMBOLS

    def __init__(
        self,
        vocab_file: str | None = None,
        pad_token: str = "[PAD]",
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        max_atoms: int = DEFAULT_MAX_ATOMS,
        **kwargs,
    ) -> None:
        super().__init__(
            vocab_file,
            max_atoms,
            pad_token=pad_token,
            unk_token=unk_token,
            cls_token=cls_token,
            mask_token=mask_token,
            **kwargs,
        )

    @classmethod
    def corpus_tokens(cls, smiles: str) -> list[str]:
        return regex_tokenize(smiles)

    def tokenize(self, text: str, **kwargs) -> list[str]:
        """The regex tokens of a SMILES that passed the front door (of the SMILES before a CXSMILES extension).

        Overrides transformers' `tokenize`, which would split special-token text such as `[PAD]` out of the string
        before the front door could see the whole SMILES."""
        with rdBase.BlockLogs():
            core = check_smiles(text, self.max_atoms).parsed.smiles
        return regex_tokenize(core)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        if token_ids_1 is not None:
            raise ValueError("StBaseTokenizer encodes single molecules; pairs of SMILES are not supported")
        return [self.cls_token_id] + token_ids_0

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [int(i in special) for i in token_ids_0]
        return [1] + [0] * len(token_ids_0)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 1


def enumerate_random_smiles(smiles: str, n: int = 5, seed: int = 0) -> list[str]:
    """`n` random (non-canonical) SMILES of the molecule, written by RDKit from random atom orders; reproducible
    for a given `seed`. Small molecules have few distinct writings, so the list can repeat itself."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot read SMILES {smiles!r:.200} for random-SMILES enumeration")
    return list(Chem.MolToRandomSmilesVect(mol, n, randomSeed=seed))
