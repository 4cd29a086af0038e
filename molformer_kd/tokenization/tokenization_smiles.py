"""`SmilesTokenizer`: the ST student's input, the SMILES pre-transformation of ST-KD §3.2.

A SMILES becomes `[V]`, its n atom tokens in SMILES order (atoms as written: `C`, `c`, `Cl`, `[C@@H]`, `[nH]`), then
its m bond tokens in RDKit's bond order (`-`, `=`, `#`, `$`, `:`, `/`, `\\`; bonds the SMILES leaves implicit become
`-` (single) or `:` (aromatic); ring-closure bonds are bond tokens like any other). Besides `input_ids` the encoding
carries the decoded structure (DESIGN.md, "SMILES batch"):

* `token_type_ids`: 0 virtual/special/pad, 1 atom, 2 bond;
* `structure_positions` (L, 2): atom j -> (j+1, 0), bond (u, v) -> (u+1, v+1), virtual/pad -> (0, 0); the model
  sums rows of one position table indexed by both columns, row 0 being zero, which gives `E[j]` for atom j and
  `E[u] + E[v]` for a bond (paper eq. 5-6);
* `atom_token_index` (N,): token position of atom j (= 1 + j), 0 at padding; `atom_mask` (N,).

Hydrogens written as atoms follow the rule of `smiles_grammar` (folded into their neighbour, not tokens). A SMILES
is read through the front door of `validation.check_smiles`, as the graph featurizer reads it: the same strings are
refused (grammar, more than `max_atoms` atoms, RDKit's valence and kekulization checks) with a `SmilesParseError`.

`SmilesTokenizer.encode_batch` (the prediction pipeline's path) encodes a batch straight into its padded int64 arrays,
each refused SMILES being its row's error; the front door's RDKit sanitization is most of its cost.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from rdkit import rdBase
from transformers import BatchEncoding, PreTrainedTokenizer
from transformers.tokenization_utils_base import TOKENIZER_CONFIG_FILE, TruncationStrategy
from transformers.utils import PaddingStrategy, cached_file

from ..data.pretrained import resolve_pretrained_name
from .smiles_grammar import BOND_SYMBOLS, parse_smiles
from .validation import DEFAULT_MAX_ATOMS, MAX_ATOMS_CEILING, Setting, check_settings, check_smiles

if TYPE_CHECKING:
    from typing import Any

    from transformers.utils import TensorType

    from .validation import CheckedSmiles

__all__ = [
    "DEFAULT_SMILES_VOCAB_FILE",
    "TOKENIZER_SETTINGS",
    "EncodedSmilesBatch",
    "JsonVocabTokenizer",
    "SmilesTokenizer",
]

RESOURCES = os.path.join(os.path.dirname(__file__), "resources")
DEFAULT_SMILES_VOCAB_FILE = os.path.join(RESOURCES, "smiles_vocab.json")
VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}

VIRTUAL, ATOM, BOND = 0, 1, 2  # token_type_ids
# What one molecule of `SmilesTokenizer.encode_batch` may fail with (the featurizer's `MOLECULE_FAILURES`): it is that
# row's error; anything else is a bug and propagates.
ROW_FAILURES = (ValueError, KeyError, IndexError, TypeError, RuntimeError)
# Symbols every vocabulary holds whatever the corpus: the organic subset, '*', the tetrahedral stereo forms of
# carbon (MOSES and QM9, the default corpus, carry no stereo, but isomeric input is common) and all bond tokens.
ORGANIC_SYMBOLS = ("C", "c", "N", "n", "O", "o", "S", "s", "P", "p", "B", "b", "F", "Cl", "Br", "I", "*")
STEREO_CARBON_SYMBOLS = ("[C@H]", "[C@@H]", "[C@]", "[C@@]")
BASE_SYMBOLS = ORGANIC_SYMBOLS + STEREO_CARBON_SYMBOLS + BOND_SYMBOLS

# Settings of our own in a saved tokenizer_config.json, and the keys transformers writes or reads there itself
# (special tokens are checked against the vocabulary by the constructor).
TOKENIZER_SETTINGS = {"max_atoms": Setting(int, 1, MAX_ATOMS_CEILING)}
_TRANSFORMERS_TOKENIZER_KEYS = (
    "added_tokens_decoder",
    "additional_special_tokens",
    "auto_map",
    "backend",
    "bos_token",
    "chat_template",
    "clean_up_tokenization_spaces",
    "cls_token",
    "eos_token",
    "extra_special_tokens",
    "mask_token",
    "model_input_names",
    "model_max_length",
    "name_or_path",
    "pad_token",
    "padding_side",
    "processor_class",
    "sep_token",
    "split_special_tokens",
    "tokenizer_class",
    "tokenizer_file",
    "truncation_side",
    "unk_token",
    "vocab_file",
)


class EncodedSmilesBatch(NamedTuple):
    """`SmilesTokenizer.encode_batch` of some SMILES: the padded batch of those that encode, and the others' errors.

    `inputs`: every key of `model_input_names` as an int64 array, one row per encoded SMILES (tokens (B, L), atoms
    (B, N), `structure_positions` (B, L, 2)), equal to `tokenizer(encoded, padding=True)`; None when none encodes.
    `encoded`: the positions (in the input list) of those rows. `errors`: per input SMILES, None or the exception
    (a `SmilesParseError` naming SMILES and position, ...). `checked`: with `keep_checked=True`, the front door's
    `CheckedSmiles` (parse and sanitized RDKit molecule) of each encoded row, else None."""

    inputs: dict[str, np.ndarray] | None
    encoded: list[int]
    errors: list[Exception | None]
    checked: list[CheckedSmiles] | None


def _padded_length(
    length: int, padding_strategy: PaddingStrategy, max_length: int | None, pad_to_multiple_of: int | None
) -> int:
    if padding_strategy == PaddingStrategy.MAX_LENGTH and max_length is not None:
        length = max(length, max_length)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    return length


class JsonVocabTokenizer(PreTrainedTokenizer):
    """Word-level tokenizer over a `vocab.json` {token: id}, shared by the ST and ST-BASE tokenizers.

    Subclasses set `default_vocab_file`, `special_tokens_order` and `base_symbols`, and implement
    `corpus_tokens(smiles) -> list[str]` (the tokens of one SMILES, without special tokens). `max_atoms` (default
    `DEFAULT_MAX_ATOMS`) is the largest molecule encoded; a larger one is a `MoleculeTooLargeError`.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    padding_side = "right"
    default_vocab_file: str = ""
    special_tokens_order: tuple[str, ...] = ()
    base_symbols: tuple[str, ...] = ()

    def __init__(self, vocab_file: str | None = None, max_atoms: int = DEFAULT_MAX_ATOMS, **kwargs) -> None:
        check_settings({"max_atoms": max_atoms}, TOKENIZER_SETTINGS, type(self).__name__)
        self.max_atoms = int(max_atoms)
        vocab_file = vocab_file or self.default_vocab_file
        with open(vocab_file, encoding="utf-8") as f:
            self.vocab: dict[str, int] = json.load(f)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        if len(self.ids_to_tokens) != len(self.vocab):
            raise ValueError(f"vocabulary {vocab_file} maps two tokens to the same id")
        for name in ("pad_token", "unk_token", "cls_token"):
            if str(kwargs[name]) not in self.vocab:  # from_pretrained passes AddedToken objects
                raise ValueError(f"vocabulary {vocab_file} lacks the {name} {str(kwargs[name])!r}")
        kwargs.setdefault("padding_side", "right")
        # Where transformers' from_pretrained found the files, not settings: saved again, they would make the saved
        # tokenizer_config.json unloadable (check_settings refuses unknown keys).
        for bookkeeping in ("is_local", "local_files_only"):
            kwargs.pop(bookkeeping, None)
        super().__init__(max_atoms=self.max_atoms, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """Load a saved tokenizer (a folder, a Hub repo or a shipped student's name); a bad or unknown setting in its
        tokenizer_config.json is a `ValueError` naming the file and the key."""
        pretrained_model_name_or_path = resolve_pretrained_name(pretrained_model_name_or_path)
        hub_kwargs = {key: kwargs[key] for key in ("revision", "token", "cache_dir", "subfolder") if key in kwargs}
        path = cached_file(
            str(pretrained_model_name_or_path),
            TOKENIZER_CONFIG_FILE,
            _raise_exceptions_for_missing_entries=False,
            **hub_kwargs,
        )
        if path is not None:
            with open(path, encoding="utf-8") as handle:
                settings = json.load(handle)
            check_settings(
                settings,
                TOKENIZER_SETTINGS,
                f"{pretrained_model_name_or_path}/{TOKENIZER_CONFIG_FILE}",
                _TRANSFORMERS_TOKENIZER_KEYS,
            )
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def corpus_tokens(cls, smiles: str) -> list[str]:
        raise NotImplementedError

    @classmethod
    def build_vocab(cls, smiles: Iterable[str], min_frequency: int = 1) -> dict[str, int]:
        """Vocabulary {token: id} of a corpus: special tokens first, then the base symbols, then the other tokens
        seen at least `min_frequency` times, most frequent first (ties alphabetical)."""
        counts: Counter = Counter()
        for s in smiles:
            counts.update(cls.corpus_tokens(s))
        tokens = [*cls.special_tokens_order, *cls.base_symbols]
        seen = set(tokens)
        for token, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            if n >= min_frequency and token not in seen:
                tokens.append(token)
                seen.add(token)
        return {t: i for i, t in enumerate(tokens)}

    @classmethod
    def write_vocab(cls, smiles: Iterable[str], vocab_file: str, min_frequency: int = 1) -> dict[str, int]:
        vocab = cls.build_vocab(smiles, min_frequency)
        with open(vocab_file, "w", encoding="utf-8") as f:
            json.dump(vocab, f, indent=0, ensure_ascii=False)
        return vocab

    @classmethod
    def from_corpus(cls, smiles: Iterable[str], save_directory: str, min_frequency: int = 1, **kwargs):
        """Build a vocabulary from `smiles`, write it to `save_directory` and return the tokenizer."""
        os.makedirs(save_directory, exist_ok=True)
        vocab_file = os.path.join(save_directory, VOCAB_FILES_NAMES["vocab_file"])
        cls.write_vocab(smiles, vocab_file, min_frequency)
        return cls(vocab_file=vocab_file, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab, **self.added_tokens_encoder)

    def _convert_token_to_id(self, token: str) -> int:
        return self.vocab.get(token, self.vocab[self.unk_token])

    def _convert_id_to_token(self, index: int) -> str:
        return self.ids_to_tokens.get(index, self.unk_token)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        path = os.path.join(
            save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILES_NAMES["vocab_file"]
        )
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, indent=0, ensure_ascii=False)
        return (path,)


class SmilesTokenizer(JsonVocabTokenizer):
    """SMILES-symbol tokenizer producing the ST student's batch (see the module docstring).

    `tokenizer(smiles)` encodes one SMILES; `tokenizer(list_of_smiles, padding=True, return_tensors="pt")` returns
    the padded batch. Refused SMILES (see the module docstring) raise `SmilesParseError` naming the SMILES and the
    position. Unknown atom
    symbols (bracket atoms absent from the vocabulary) map to `[UNK]`. `SmilesTokenizer.build_vocab(smiles_iter)`
    makes a vocabulary from a corpus; the default one (QM9 + MOSES symbols) ships in `resources/`.
    """

    model_input_names = [  # noqa: RUF012  (transformers class attribute)
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "structure_positions",
        "atom_token_index",
        "atom_mask",
    ]
    default_vocab_file = DEFAULT_SMILES_VOCAB_FILE
    special_tokens_order = ("[PAD]", "[UNK]", "[V]")
    base_symbols = BASE_SYMBOLS

    def __init__(
        self,
        vocab_file: str | None = None,
        pad_token: str = "[PAD]",
        unk_token: str = "[UNK]",
        cls_token: str = "[V]",
        max_atoms: int = DEFAULT_MAX_ATOMS,
        **kwargs,
    ) -> None:
        super().__init__(vocab_file, max_atoms, pad_token=pad_token, unk_token=unk_token, cls_token=cls_token, **kwargs)
        if self.padding_side != "right":
            raise ValueError("SmilesTokenizer pads on the right only (atom j must stay at token 1 + j)")

    @classmethod
    def corpus_tokens(cls, smiles: str) -> list[str]:
        parsed = parse_smiles(smiles)
        return parsed.atom_symbols + parsed.bond_symbols

    # ------------------------------------------------------------------------------------------- encoding

    def tokenize(self, text: str, **kwargs) -> list[str]:
        """Atom tokens in SMILES order, then bond tokens in RDKit bond order (no `[V]`), of a SMILES that passed the
        front door (`corpus_tokens` reads the grammar only, for building vocabularies)."""
        with rdBase.BlockLogs():
            parsed = check_smiles(text, self.max_atoms).parsed
        return parsed.atom_symbols + parsed.bond_symbols

    def encode_smiles(self, smiles: str, max_atoms: int | None = None) -> dict[str, list]:
        """Unpadded encoding of one SMILES as python lists (every key of `model_input_names`); `max_atoms` lowers the
        tokenizer's own limit (a pipeline passes its model's position-table size)."""
        limit = self.max_atoms if max_atoms is None else min(max_atoms, self.max_atoms)
        with rdBase.BlockLogs():  # the SmilesParseError reports refusals; RDKit's own messages would be noise
            return self._encode_checked(smiles, limit)

    def encode_batch(
        self, smiles: Sequence[str], max_atoms: int | None = None, keep_checked: bool = False
    ) -> EncodedSmilesBatch:
        """Encode a batch of SMILES straight into padded int64 arrays (`EncodedSmilesBatch`): the same batch as
        `tokenizer(smiles, padding=True)` without a python list per token, and a SMILES that is refused (or not a
        string) is that row's error instead of stopping the batch. `max_atoms` lowers the tokenizer's own limit."""
        limit = self.max_atoms if max_atoms is None else min(max_atoms, self.max_atoms)
        vocab_get, unk, cls_id = self.vocab.get, self.vocab[self.unk_token], self.vocab[self.cls_token]
        errors: list[Exception | None] = [None] * len(smiles)
        encoded, checked, ids, bond_ends, atom_counts, bond_counts = [], [], [], [], [], []
        with rdBase.BlockLogs():  # once for the batch: entering the block costs as much as a parse
            for position, one in enumerate(smiles):
                try:
                    result = check_smiles(one, limit)
                except ROW_FAILURES as err:
                    errors[position] = err
                    continue
                parsed = result.parsed
                encoded.append(position)
                if keep_checked:
                    checked.append(result)
                ids.append(cls_id)
                ids += [vocab_get(t, unk) for t in parsed.atom_symbols]
                ids += [vocab_get(t, unk) for t in parsed.bond_symbols]
                for u, v, _ in parsed.bonds:
                    bond_ends += (u, v)
                atom_counts.append(len(parsed.atom_symbols))
                bond_counts.append(len(parsed.bonds))
        inputs = self._batch_arrays(ids, bond_ends, atom_counts, bond_counts) if encoded else None
        return EncodedSmilesBatch(inputs, encoded, errors, checked if keep_checked else None)

    def _batch_arrays(
        self, ids: list[int], bond_ends: list[int], atom_counts: list[int], bond_counts: list[int]
    ) -> dict[str, np.ndarray]:
        """The padded arrays of `encode_batch` from the concatenated token ids and bond ends of its molecules."""
        atoms = np.asarray(atom_counts, dtype=np.int64)[:, None]  # (B, 1)
        lengths = 1 + atoms + np.asarray(bond_counts, dtype=np.int64)[:, None]
        token = np.arange(int(lengths.max()), dtype=np.int64)[None, :]  # (1, L)
        real = token < lengths  # (B, L), True row-major in the order of the concatenated tokens
        input_ids = np.full(real.shape, self.pad_token_id, dtype=np.int64)
        input_ids[real] = ids
        is_atom = (token >= 1) & (token <= atoms)
        is_bond = real & (token > atoms)
        token_type_ids = np.where(is_atom, ATOM, np.where(is_bond, BOND, VIRTUAL)).astype(np.int64)
        structure_positions = np.zeros((*real.shape, 2), dtype=np.int64)
        structure_positions[..., 0] = np.where(is_atom, token, 0)
        ends = np.asarray(bond_ends, dtype=np.int64).reshape(-1, 2) + 1  # atom j -> position row j + 1
        structure_positions[is_bond] = ends
        atom = np.arange(max(int(atoms.max()), 0), dtype=np.int64)[None, :]  # (1, N)
        atom_mask = atom < atoms
        return {
            "input_ids": input_ids,
            "attention_mask": real.astype(np.int64),
            "token_type_ids": token_type_ids,
            "structure_positions": structure_positions,
            "atom_token_index": np.where(atom_mask, atom + 1, 0),
            "atom_mask": atom_mask.astype(np.int64),
        }

    def _encode_checked(self, smiles: str, max_atoms: int) -> dict[str, list]:
        parsed = check_smiles(smiles, max_atoms).parsed
        vocab_get = self.vocab.get
        unk = self.vocab[self.unk_token]
        n = len(parsed.atom_symbols)
        m = len(parsed.bonds)
        input_ids = [self.vocab[self.cls_token]]
        input_ids += [vocab_get(t, unk) for t in parsed.atom_symbols]
        input_ids += [vocab_get(t, unk) for t in parsed.bond_symbols]
        positions = [[0, 0]]
        positions += [[j, 0] for j in range(1, n + 1)]
        positions += [[u + 1, v + 1] for u, v, _ in parsed.bonds]
        return {
            "input_ids": input_ids,
            "attention_mask": [1] * (1 + n + m),
            "token_type_ids": [VIRTUAL] + [ATOM] * n + [BOND] * m,
            "structure_positions": positions,
            "atom_token_index": list(range(1, n + 1)),
            "atom_mask": [1] * n,
        }

    def _encode_plus(
        self,
        text: str | list[str] | tuple[str, ...],
        text_pair: str | list[str] | None = None,
        add_special_tokens: bool = True,
        padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
        truncation_strategy: TruncationStrategy | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | TensorType | None = None,
        return_attention_mask: bool | None = None,
        return_token_type_ids: bool | None = None,
        **kwargs,
    ) -> BatchEncoding:
        if text_pair is not None:
            raise ValueError("SmilesTokenizer encodes single molecules; pairs of SMILES are not supported")
        if not add_special_tokens:
            raise ValueError(
                "SmilesTokenizer always puts the virtual token [V] first (add_special_tokens=False "
                "would shift atom j away from token 1 + j)"
            )
        if padding_side not in (None, "right"):
            raise ValueError("SmilesTokenizer pads on the right only")
        batched = isinstance(text, (list, tuple))
        texts = list(text) if batched else [text]
        for s in texts:
            if not isinstance(s, str):
                raise TypeError(f"SmilesTokenizer expects SMILES strings, got {type(s).__name__}: {s!r:.80}")
        with rdBase.BlockLogs():  # once for the batch: entering the block costs as much as a parse
            encoded = [self._encode_checked(s, self.max_atoms) for s in texts]
        if (
            max_length is not None
            and truncation_strategy is not None
            and TruncationStrategy(truncation_strategy) != TruncationStrategy.DO_NOT_TRUNCATE
        ):
            for s, enc in zip(texts, encoded):
                if len(enc["input_ids"]) > max_length:
                    raise ValueError(
                        f"SMILES {s!r:.200} needs {len(enc['input_ids'])} tokens > max_length="
                        f"{max_length}; truncating would cut atoms or bonds away"
                    )
        drop = set()
        if return_attention_mask is False:
            drop.add("attention_mask")
        if return_token_type_ids is False:
            drop.add("token_type_ids")
        if not batched and padding_strategy == PaddingStrategy.DO_NOT_PAD:
            out = {k: v for k, v in encoded[0].items() if k not in drop}
            return BatchEncoding(out, tensor_type=return_tensors, prepend_batch_axis=return_tensors is not None)
        batch = self._pad_encodings(encoded, padding_strategy, max_length, pad_to_multiple_of)
        for key in drop:
            batch.pop(key)
        if not batched:
            batch = {k: v[0] for k, v in batch.items()}
        return BatchEncoding(
            batch, tensor_type=return_tensors, prepend_batch_axis=not batched and return_tensors is not None
        )

    # ------------------------------------------------------------------------------------------- padding

    def _pad_encodings(
        self,
        encoded: list[dict],
        padding_strategy: PaddingStrategy,
        max_length: int | None,
        pad_to_multiple_of: int | None,
    ) -> dict[str, list]:
        """Right-pad token keys to a common L and atom keys to a common N (lists of python lists)."""
        lengths = [len(e["input_ids"]) for e in encoded]
        atoms = [len(e["atom_token_index"]) for e in encoded]
        if padding_strategy == PaddingStrategy.DO_NOT_PAD:
            return {k: [e[k] for e in encoded] for k in encoded[0]} if encoded else {}
        if padding_strategy == PaddingStrategy.MAX_LENGTH and max_length is not None and max(lengths) > max_length:
            raise ValueError(f"a sequence has {max(lengths)} tokens > max_length={max_length}")
        seq_len = _padded_length(max(lengths), padding_strategy, max_length, pad_to_multiple_of)
        num_atoms = max(atoms)
        pad_id = self.pad_token_id
        batch: dict[str, list] = {}
        for key in encoded[0]:
            if key in ("atom_token_index", "atom_mask"):
                batch[key] = [e[key] + [0] * (num_atoms - len(e[key])) for e in encoded]
            elif key == "structure_positions":
                batch[key] = [e[key] + [[0, 0] for _ in range(seq_len - len(e[key]))] for e in encoded]
            else:
                fill = pad_id if key == "input_ids" else 0
                batch[key] = [e[key] + [fill] * (seq_len - len(e[key])) for e in encoded]
        return batch

    def pad(
        self,
        encoded_inputs: BatchEncoding | list[dict[str, Any]] | dict[str, list],
        padding: bool | str | PaddingStrategy = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | TensorType | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad encodings made by this tokenizer (a list of per-molecule dicts, e.g. rows of a `datasets.Dataset`
        mapped with it, or a dict of lists) to the "SMILES batch" contract; used by `DataCollatorWithPadding`."""
        if padding_side not in (None, "right"):
            raise ValueError("SmilesTokenizer pads on the right only")
        if isinstance(encoded_inputs, dict):
            keys = list(encoded_inputs)
            encoded_inputs = [dict(zip(keys, values)) for values in zip(*encoded_inputs.values())]
        rows = []
        for row in encoded_inputs:
            row = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
            n = len(row["input_ids"])
            row.setdefault("attention_mask", [1] * n)
            if "atom_token_index" in row:
                row.setdefault("atom_mask", [1] * len(row["atom_token_index"]))
            rows.append(row)
        padding_strategy, _, max_length, _ = self._get_padding_truncation_strategies(
            padding=padding, max_length=max_length, verbose=verbose
        )
        if padding_strategy == PaddingStrategy.DO_NOT_PAD:
            padding_strategy = PaddingStrategy.LONGEST  # tensors need a common length
        batch = self._pad_encodings(rows, padding_strategy, max_length, pad_to_multiple_of)
        if return_attention_mask is False:
            batch.pop("attention_mask", None)
        return BatchEncoding(batch, tensor_type=return_tensors)
