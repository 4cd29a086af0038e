"""The one front door for SMILES, and the checks of processor settings.

Every processor (the graph featurizer, the ST and ST-BASE tokenizers) and through them the pipeline and the CLI read
a SMILES through `check_smiles`, so a string gets the same verdict whichever student runs:

1. grammar: `parse_smiles` (ASCII only; whitespace, control and non-ASCII characters are errors at their position).
   The one space allowed is the one before a CXSMILES extension block that ends the string (`CC |$;Cl_p$|`): the
   grammar reads the SMILES before it, RDKit reads both, and the tokenizers see the SMILES only;
2. size: more than `max_atoms` atoms (after the atom rule) is a `MoleculeTooLargeError` at the first atom over the
   limit, decided from the linear-time parse before any quadratic or cubic work;
3. chemistry: RDKit sanitization (valence, kekulization, aromaticity), the check the graph students always needed
   for their features. The SMILES students run it too, although they only need the grammar: otherwise an ST student
   would predict a value for `C(C)(C)(C)(C)C` (five-valent carbon) that a GIN student refuses. The error points at
   the atom RDKit names.

Every refusal is a `SmilesParseError` (a `ValueError`) naming the input, cut to a window around the position, the
0-based position and the reason. `MAX_ATOMS_CEILING` bounds any configured limit: a molecule's graph features and
attention grow with the square of its atom count.

Processor settings read from `preprocessor_config.json` / `tokenizer_config.json` go through `check_settings`: each
known key's type and bounds, and no unknown keys, with a one-line `ValueError` naming the file and the key.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from rdkit import Chem

from ..data.molecules import apply_atom_rule
from .smiles_grammar import ParsedSmiles, SmilesParseError, parse_smiles, shorten_smiles

__all__ = [
    "DEFAULT_MAX_ATOMS",
    "MAX_ATOMS_CEILING",
    "CheckedSmiles",
    "MoleculeTooLargeError",
    "Setting",
    "check_settings",
    "check_smiles",
]

# The default atom limit of the featurizer and the tokenizers, far above drug-like molecules (a few dozen heavy atoms);
# its worst case, a 512-atom chain, featurizes in about half a second (a 1,024-atom one in about 2 s, measured on a
# shared 2-core machine). SMILES Transformer students further cap it at their `max_atoms` position table.
DEFAULT_MAX_ATOMS = 512
MAX_ATOMS_CEILING = 4096
# A CXSMILES extension block ending the string, after one space.
_CXSMILES_EXTENSION_RE = re.compile(r" \|[!-~]*\|\Z")


class MoleculeTooLargeError(SmilesParseError):
    """A SMILES with more atoms than the processor's `max_atoms`; `.position` is the first atom over the limit."""


class CheckedSmiles(NamedTuple):
    """A SMILES that passed the front door: its parse (atoms in SMILES order) and its sanitized RDKit molecule, both
    after the atom rule (DESIGN.md), so `parsed.num_atoms == mol.GetNumAtoms()`."""

    parsed: ParsedSmiles
    mol: Chem.Mol


def check_smiles(smiles: str, max_atoms: int | None = DEFAULT_MAX_ATOMS) -> CheckedSmiles:
    """Parse, size-check and sanitize one SMILES (see the module docstring); raises `SmilesParseError`.

    RDKit's own log messages are not blocked here (blocking costs as much as a parse): callers that check many
    SMILES block them once around the loop with `rdBase.BlockLogs()`.
    """
    if not isinstance(smiles, str):
        raise TypeError(f"expected a SMILES string, got {type(smiles).__name__}: {smiles!r:.80}")
    extension = _CXSMILES_EXTENSION_RE.search(smiles)
    core = smiles[: extension.start()] if extension is not None else smiles
    try:
        parsed = parse_smiles(core)
    except SmilesParseError as err:
        raise SmilesParseError(smiles, err.position, err.reason) from None
    if max_atoms is not None and parsed.num_atoms > max_atoms:
        raise MoleculeTooLargeError(
            smiles,
            parsed.atom_starts[max_atoms],
            f"{parsed.num_atoms} atoms, more than the limit of {max_atoms} (max_atoms of the processor or model)",
        )
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise _chemistry_error(smiles, len(core))
    return CheckedSmiles(parsed, apply_atom_rule(mol, name=shorten_smiles(smiles)))


def _chemistry_error(smiles: str, core_length: int) -> SmilesParseError:
    """Why RDKit refuses a SMILES the grammar accepts, at the first atom it names (rare path: parses again).
    `core_length` is the length of the SMILES before a CXSMILES extension (the whole length without one)."""
    unsanitized = Chem.MolFromSmiles(smiles, sanitize=False)
    if unsanitized is None:
        if core_length < len(smiles):
            return SmilesParseError(smiles, core_length + 1, "RDKit cannot read the CXSMILES extension")
        return SmilesParseError(smiles, 0, "RDKit cannot read it")
    problems = Chem.DetectChemistryProblems(unsanitized)
    if not problems:
        return SmilesParseError(smiles, 0, "RDKit cannot sanitize it")
    problem = problems[0]
    if hasattr(problem, "GetAtomIdx"):
        atom = problem.GetAtomIdx()
    elif hasattr(problem, "GetAtomIndices"):
        atom = min(problem.GetAtomIndices())
    else:
        atom = 0
    # RDKit numbers the atoms as written, as the parse does before folding hydrogens.
    starts = parse_smiles(smiles[:core_length], fold_hydrogens=False).atom_starts
    position = starts[atom] if atom < len(starts) else 0
    return SmilesParseError(smiles, position, f"RDKit rejects the chemistry: {problem.Message()}")


# ---------------------------------------------------------------------------------------------------- settings


class Setting(NamedTuple):
    """A processor setting: `kind` is `int`, `bool` or `str`; ints lie in [low, high], strings in `choices`."""

    kind: type
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()


def check_settings(
    settings: Mapping[str, Any], known: Mapping[str, Setting], source: str, passed_through: Iterable[str] = ()
) -> None:
    """Raise a one-line `ValueError` naming `source` and the key for an unknown key (not in `known` or
    `passed_through`, the keys another layer checks) or a value of the wrong type or out of bounds."""
    passed_through = set(passed_through)
    for key, value in settings.items():
        if key in passed_through:
            continue
        setting = known.get(key)
        if setting is None:
            raise ValueError(f"{source}: unknown setting {key!r}; the known ones are {sorted(known)}")
        problem = _setting_problem(setting, value)
        if problem is not None:
            raise ValueError(f"{source}: setting {key!r} {problem}, got {value!r:.80}")


def _setting_problem(setting: Setting, value: Any) -> str | None:
    if setting.kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if setting.kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return "must be an integer"
        if not setting.low <= value <= setting.high:
            return f"must lie in [{setting.low}, {setting.high}]"
        return None
    return None if value in setting.choices else f"must be one of {list(setting.choices)}"
