"""A SMILES parser without RDKit: atoms in order of appearance and RDKit's bond list.

`parse_smiles(smiles)` reads the whole OpenSMILES grammar (organic subset and bracket atoms with isotope,
chirality, H count, charge and atom class; `*`; bonds `- = # $ : / \\`; branches; ring closures `0-9`, `%nn`,
`%(nnn)` with bond symbols on either side; `.` fragments) plus the RDKit extensions seen in real files
(`[#6]` atomic numbers, ring closures written after a branch as in `C(=O)1CC1`, aromatic `[si]`/`[te]`, dative
bonds `->` / `<-`).

The grammar is ASCII: every character must be printable ASCII other than the space. Whitespace, control characters
(a NUL, a byte order mark) and non-ASCII characters (superscript or Arabic-Indic digits, emoji) are errors at their
position, never skipped and never read as digits. Numbers (isotope, H count, charge, atom class, ring number) are
ASCII digits, at most 9 of them.

Atom and bond order (checked against `Chem.MolFromSmiles(s, sanitize=False)` by `scripts/check_parser_parity.py`):

* atoms are numbered in order of appearance;
* a chain bond (atom to the previous atom of its branch) is appended when its second atom is read, as
  `(previous, atom)`;
* ring-closure bonds come after all chain bonds, ordered by ring number and, for a reused number, by the order
  in which they closed (RDKit closes rings from its ring-number bookmarks after parsing). If the opening side
  carries a bond-order symbol (`- = # $ :`) the bond is `(opening atom, closing atom)`, otherwise
  `(closing atom, opening atom)`; `/` and `\\` are stereo marks, not orders;
* the type of a bond without an order symbol (implicit, `/`, `\\`) is AROMATIC when both atoms are aromatic,
  else SINGLE. Conflicting order symbols on the two sides of a ring closure (`C=1CC-1`) are an error (OpenSMILES;
  RDKit silently keeps the first);
* a dative bond is DATIVE from the donor (the arrow's tail) to the acceptor, as RDKit stores it: `N->[Fe]` and
  `[Fe]<-N` both give the bond `(N, Fe)`; on a ring closure the arrow belongs to the side it is written on
  (`C->1CC1` is `(0, 2)`, `C<-1CC1` is `(2, 0)`).

Explicit-hydrogen rule (DESIGN.md "Atom rule", shared with the graph featurizer): a hydrogen atom written as an
atom (`[H]`, `[2H]`, `[H+]`, any isotope, charge or class) that has exactly one bond, to a non-hydrogen atom, is
folded into that neighbour: it is removed from the atom and bond lists (the remaining atoms keep their relative
order) and the neighbour's `folded_hydrogens` grows by one. Every other hydrogen atom is kept as an atom: lone
`[H+]`, both atoms of `[H][H]` (the all-hydrogen molecule), bridging hydrogens of degree 2. `[CH4]` is one carbon
atom with `hcount=4`. This is RDKit's `Chem.RemoveHs(mol, params, sanitize=False)` with `removeIsotopes`,
`removeHydrides`, `removeMapped`, `removeDummyNeighbors`, `removeDefiningBondStereo`, `removeWithWedgedBond`,
`removeNontetrahedralNeighbors`, `removeWithQuery`, `removeInSGroups`, `removeNonimplicit` on and
`removeDegreeZero`, `removeHigherDegrees`, `removeOnlyHNeighbors` off (see `rdkit_remove_hs_params` in the parity
script). `parse_smiles(s, fold_hydrogens=False)` returns the unfolded graph (RDKit's own atom list).

The parser is a single loop over the tokens of one precompiled regular expression: no recursion, linear time,
so megabyte strings and deep branch nesting neither overflow the stack nor hang. Invalid input raises
`SmilesParseError` naming the SMILES, the 0-based character position and the reason.

Why one long module: the whole OpenSMILES grammar (atoms, bonds, branches, ring closures, CXSMILES tail) is one loop
whose states refer to each other; split, each part would be read without the others it depends on.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BOND_SYMBOLS",
    "ELEMENTS",
    "Atom",
    "ParsedSmiles",
    "SmilesParseError",
    "parse_smiles",
    "shorten_smiles",
]

# Periodic table in atomic-number order; index = atomic number.
ELEMENTS = [
    "*",
    "H",
    "He",
    "Li",
    "Be",
    "B",
    "C",
    "N",
    "O",
    "F",
    "Ne",
    "Na",
    "Mg",
    "Al",
    "Si",
    "P",
    "S",
    "Cl",
    "Ar",
    "K",
    "Ca",
    "Sc",
    "Ti",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "Ga",
    "Ge",
    "As",
    "Se",
    "Br",
    "Kr",
    "Rb",
    "Sr",
    "Y",
    "Zr",
    "Nb",
    "Mo",
    "Tc",
    "Ru",
    "Rh",
    "Pd",
    "Ag",
    "Cd",
    "In",
    "Sn",
    "Sb",
    "Te",
    "I",
    "Xe",
    "Cs",
    "Ba",
    "La",
    "Ce",
    "Pr",
    "Nd",
    "Pm",
    "Sm",
    "Eu",
    "Gd",
    "Tb",
    "Dy",
    "Ho",
    "Er",
    "Tm",
    "Yb",
    "Lu",
    "Hf",
    "Ta",
    "W",
    "Re",
    "Os",
    "Ir",
    "Pt",
    "Au",
    "Hg",
    "Tl",
    "Pb",
    "Bi",
    "Po",
    "At",
    "Rn",
    "Fr",
    "Ra",
    "Ac",
    "Th",
    "Pa",
    "U",
    "Np",
    "Pu",
    "Am",
    "Cm",
    "Bk",
    "Cf",
    "Es",
    "Fm",
    "Md",
    "No",
    "Lr",
    "Rf",
    "Db",
    "Sg",
    "Bh",
    "Hs",
    "Mt",
    "Ds",
    "Rg",
    "Cn",
    "Nh",
    "Fl",
    "Mc",
    "Lv",
    "Ts",
    "Og",
]
_ELEMENT_SET = frozenset(ELEMENTS[1:])
# Aromatic symbols allowed inside brackets (OpenSMILES plus RDKit's te/si); the organic subset is b c n o p s.
_AROMATIC_BRACKET = {
    "b": "B",
    "c": "C",
    "n": "N",
    "o": "O",
    "p": "P",
    "s": "S",
    "se": "Se",
    "as": "As",
    "te": "Te",
    "si": "Si",
}
# Organic-subset atoms written without brackets: symbol -> (element, aromatic).
_ORGANIC = {
    "B": ("B", False),
    "C": ("C", False),
    "N": ("N", False),
    "O": ("O", False),
    "P": ("P", False),
    "S": ("S", False),
    "F": ("F", False),
    "Cl": ("Cl", False),
    "Br": ("Br", False),
    "I": ("I", False),
    "b": ("B", True),
    "c": ("C", True),
    "n": ("N", True),
    "o": ("O", True),
    "p": ("P", True),
    "s": ("S", True),
    "*": ("*", False),
}

SINGLE, DOUBLE, TRIPLE, QUADRUPLE, AROMATIC, DATIVE = "SINGLE", "DOUBLE", "TRIPLE", "QUADRUPLE", "AROMATIC", "DATIVE"
# Bond symbols that fix a bond order; `/` and `\` only mark double-bond stereo on a single/aromatic bond.
_ORDER_SYMBOLS = {"-": SINGLE, "=": DOUBLE, "#": TRIPLE, "$": QUADRUPLE, ":": AROMATIC, "->": DATIVE, "<-": DATIVE}
BOND_SYMBOLS = ("-", "=", "#", "$", ":", "/", "\\", "->", "<-")
# Token written for a bond the SMILES leaves implicit.
_IMPLICIT_SYMBOL = {SINGLE: "-", AROMATIC: ":"}

# One token per match; the final `.` catches any other character so the loop can report it.
_TOKEN_RE = re.compile(r"Cl|Br|[BCNOPSFIbcnops*]|\[[^\[\]]*\]|->|<-|[-=#$:/\\]|[()]|[0-9]|%[0-9][0-9]|%\([0-9]+\)|\.|.")
# Anything but printable ASCII without the space: found by one scan before parsing, so that it is reported at its
# own position with its name instead of as a puzzling bracket or token error (and `str.isdigit` never sees it).
_NOT_SMILES_CHARACTER_RE = re.compile(r"[^!-~]")
_MAX_DIGITS = 9  # longer numbers are typos or attacks; int() of thousands of digits is slow and then refused

# Token kinds for the dispatch in the main loop.
_ALIPHATIC_ATOM, _AROMATIC_ATOM, _BOND, _RING, _OPEN, _CLOSE, _DOT = range(7)  # atom kinds are aromatic flags
_KIND = {sym: int(arom) for sym, (_, arom) in _ORGANIC.items()}
_KIND.update(dict.fromkeys(BOND_SYMBOLS, _BOND))
_KIND.update({str(d): _RING for d in range(10)})
_KIND.update({"(": _OPEN, ")": _CLOSE, ".": _DOT})

# Parser states: what the previous token allows next.
_START = 0  # start of input or after '.': an atom must come, no bond
_BRANCH = 1  # after '(': a bond or an atom
_BOND_AFTER_ATOM = 2  # after atom + bond: an atom or a ring-closure digit
_BOND_IN_BRANCH = 3  # after '(' + bond: an atom
_AFTER_ATOM = 4  # after an atom, ring closure or ')': anything

_CHIRAL_RE = re.compile(r"@(?:@|TH[12]|AL[12]|SP[123]|TB(?:1\d|20|[1-9])|OH(?:[12]\d|30|[1-9]))?")
_MAX_ABS_CHARGE = 15
_MAX_SHOWN_SMILES = 80


class SmilesParseError(ValueError):
    """Invalid SMILES: `.smiles` (the input), `.position` (0-based character index) and `.reason`."""

    def __init__(self, smiles: str, position: int, reason: str) -> None:
        self.smiles = smiles
        self.position = position
        self.reason = reason
        super().__init__(f"invalid SMILES {shorten_smiles(smiles, position)} at position {position}: {reason}")

    def __reduce__(
        self,
    ) -> tuple[type[SmilesParseError], tuple[str, int, str]]:  # picklable across `datasets.map(num_proc=...)` workers
        return (type(self), (self.smiles, self.position, self.reason))


def shorten_smiles(smiles: object, position: int = 0) -> str:
    """`repr` of an input for an error message, cut to a window around `position` when it is long."""
    if not isinstance(smiles, str):
        shown = repr(smiles)
        return shown if len(shown) <= _MAX_SHOWN_SMILES else f"{shown[:_MAX_SHOWN_SMILES]}... ({type(smiles).__name__})"
    if len(smiles) <= _MAX_SHOWN_SMILES:
        return repr(smiles)
    half = _MAX_SHOWN_SMILES // 2
    start = max(0, min(position - half, len(smiles) - _MAX_SHOWN_SMILES))
    window = smiles[start : start + _MAX_SHOWN_SMILES]
    return (
        f"{'...' if start else ''}{window!r}{'...' if start + _MAX_SHOWN_SMILES < len(smiles) else ''}"
        f" (length {len(smiles)})"
    )


class Atom(NamedTuple):
    """One atom as written. `hcount` is None for organic-subset atoms (implicit hydrogens)."""

    symbol: str  # as written: "C", "c", "Cl", "*", "[C@@H]", "[2H]"
    element: str  # "C", "Cl", "*"
    aromatic: bool
    charge: int
    isotope: int | None
    hcount: int | None
    chirality: str | None  # "@", "@@", "@TH1", "@OH12", ...
    atom_class: int | None
    bracket: bool
    span: tuple[int, int]  # [start, end) character offsets in the SMILES
    folded_hydrogens: int = 0  # written hydrogen atoms folded into this atom (see the module docstring)


# Bracket contents -> (element, aromatic, charge, isotope, hcount, chirality, atom_class); bracket atoms repeat a
# lot in any corpus, so each distinct one is parsed once. Bounded so adversarial input cannot grow it forever.
_BRACKET_CACHE: dict[str, tuple] = {}
_DIGITS = frozenset("0123456789")
_BRACKET_CACHE_MAX = 100_000
_ORGANIC_INFO = {sym: (el, arom, 0, None, None, None, None) for sym, (el, arom) in _ORGANIC.items()}


class _BracketError(Exception):
    """A bad bracket atom: `offset` is the character offset of the problem inside the brackets' contents."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _bracket_info_or_raise(smiles: str, tokens: list[str], k: int) -> tuple:
    """Info of bracket token k, raising SmilesParseError at the right character when it is invalid."""
    try:
        return _parse_bracket(tokens[k])
    except _BracketError as err:
        raise SmilesParseError(smiles, _position(tokens, k) + 1 + err.offset, err.reason) from None


def _parse_bracket(token: str) -> tuple:
    """Parse `[isotope? symbol chiral? hcount? charge? class?]` (cached) or raise `_BracketError`."""
    cached = _BRACKET_CACHE.get(token)
    if cached is not None:
        return cached
    body = token[1:-1]
    i = 0
    n = len(body)

    def fail(offset: int, reason: str):
        raise _BracketError(offset, reason)

    def digits_end(start: int) -> int:
        end = start
        while end < n and body[end] in _DIGITS:
            end += 1
        if end - start > _MAX_DIGITS:
            fail(start, f"number of more than {_MAX_DIGITS} digits in bracket atom {token:.40}")
        return end

    j = digits_end(i)
    isotope = int(body[i:j]) if j > i else None
    i = j
    if i >= n:
        fail(i, f"bracket atom {token} has no element symbol")
    aromatic = False
    if body[i] == "#":  # RDKit's atomic-number form [#6]
        j = digits_end(i + 1)
        number = int(body[i + 1 : j]) if j > i + 1 else 0
        if not 0 < number < len(ELEMENTS):
            fail(i, f"bad atomic number in bracket atom {token}")
        element = ELEMENTS[number]
        i = j
    elif body[i] == "*":
        element = "*"
        i += 1
    elif body[i : i + 2] in _ELEMENT_SET:
        element = body[i : i + 2]
        i += 2
    elif body[i : i + 2] in _AROMATIC_BRACKET:
        element = _AROMATIC_BRACKET[body[i : i + 2]]
        aromatic = True
        i += 2
    elif body[i] in _ELEMENT_SET:
        element = body[i]
        i += 1
    elif body[i] in _AROMATIC_BRACKET:
        element = _AROMATIC_BRACKET[body[i]]
        aromatic = True
        i += 1
    else:
        fail(i, f"unknown element in bracket atom {token}")
    chirality = None
    if i < n and body[i] == "@":
        m = _CHIRAL_RE.match(body, i)
        chirality = m.group()
        i = m.end()
        if i < n and (body[i] in _DIGITS or (body[i].isalpha() and body[i] != "H")):  # "@TH3", "@X"
            fail(i, f"bad chirality in bracket atom {token}")
    hcount = 0
    if i < n and body[i] == "H":
        j = digits_end(i + 1)
        hcount = int(body[i + 1 : j]) if j > i + 1 else 1
        i = j
    charge = 0
    if i < n and body[i] in "+-":
        sign = 1 if body[i] == "+" else -1
        j = digits_end(i + 1)
        if j > i + 1:
            charge = sign * int(body[i + 1 : j])
        elif i + 1 < n and body[i + 1] == body[i]:  # "++" / "--"
            charge = 2 * sign
            j = i + 2
        else:
            charge = sign
        if abs(charge) > _MAX_ABS_CHARGE:
            fail(i, f"bad charge {charge:+d} in bracket atom {token} (OpenSMILES allows -15..+15)")
        i = j
    atom_class = None
    if i < n and body[i] == ":":
        j = digits_end(i + 1)
        if j == i + 1:
            fail(i, f"atom class without a number in bracket atom {token}")
        atom_class = int(body[i + 1 : j])
        i = j
    if i < n:
        what = {"+": "bad charge", "-": "bad charge", "@": "bad chirality"}.get(body[i], "unexpected character")
        fail(i, f"{what} {body[i]!r} in bracket atom {token}")
    info = (element, aromatic, charge, isotope, hcount, chirality, atom_class)
    if len(_BRACKET_CACHE) < _BRACKET_CACHE_MAX:
        _BRACKET_CACHE[token] = info
    return info


class ParsedSmiles:
    """Atoms in SMILES order and bonds in RDKit order, stored as flat lists for speed.

    `atom_symbols[j]` is atom j as written; `bonds[k] = (i, j, type)` with type one of
    SINGLE/DOUBLE/TRIPLE/QUADRUPLE/AROMATIC; `bond_symbols[k]` is the bond token (the symbol as written, or `-` /
    `:` for an implicit single / aromatic bond). `atom_starts` (first character of each atom) and `atoms` (full
    `Atom` records) are computed on first access.
    """

    __slots__ = (
        "_atom_tokens",
        "_atoms",
        "_folded",
        "_starts",
        "_tokens",
        "atom_symbols",
        "bond_symbols",
        "bonds",
        "smiles",
    )

    def __init__(
        self,
        smiles: str,
        atom_symbols: list[str],
        bonds: list[tuple[int, int, str]],
        bond_symbols: list[str],
        tokens: list[str],
        atom_tokens: list[int] | None = None,
        folded: dict[int, int] | None = None,
    ) -> None:
        self.smiles = smiles
        self.atom_symbols = atom_symbols
        self.bonds = bonds
        self.bond_symbols = bond_symbols
        self._tokens = tokens  # the SMILES split into tokens
        self._atom_tokens = atom_tokens  # token index of each atom, when hydrogens were folded away
        self._folded = folded  # {atom index: folded hydrogen count} or None
        self._starts = None
        self._atoms = None

    @property
    def num_atoms(self) -> int:
        return len(self.atom_symbols)

    @property
    def has_folded_hydrogens(self) -> bool:
        """Whether hydrogens written as atoms were folded into their neighbours (the atom rule): RDKit's molecule of
        the same SMILES then holds atoms this parse does not."""
        return self._folded is not None

    @property
    def num_bonds(self) -> int:
        return len(self.bonds)

    @property
    def atom_starts(self) -> list[int]:
        if self._starts is None:
            offsets = [0, *itertools.accumulate(map(len, self._tokens))]
            self._starts = [offsets[k] for k in self.atom_token_indices()]
        return self._starts

    def atom_token_indices(self) -> list[int]:
        """Index of each atom in the token list (atoms are the organic-subset and bracket tokens)."""
        if self._atom_tokens is not None:
            return self._atom_tokens
        return [k for k, tok in enumerate(self._tokens) if tok in _ORGANIC or (tok[0] == "[" and len(tok) > 1)]

    @property
    def atoms(self) -> list[Atom]:
        if self._atoms is None:
            folded = self._folded or {}
            atoms = []
            for j, (symbol, start) in enumerate(zip(self.atom_symbols, self.atom_starts)):
                info = _ORGANIC_INFO.get(symbol)
                bracket = info is None
                if bracket:
                    info = _parse_bracket(symbol)
                element, aromatic, charge, isotope, hcount, chirality, atom_class = info
                atoms.append(
                    Atom(
                        symbol,
                        element,
                        aromatic,
                        charge,
                        isotope,
                        hcount,
                        chirality,
                        atom_class,
                        bracket,
                        (start, start + len(symbol)),
                        folded.get(j, 0),
                    )
                )
            self._atoms = atoms
        return self._atoms

    def __repr__(self) -> str:
        return f"ParsedSmiles({self.smiles!r}, num_atoms={self.num_atoms}, num_bonds={self.num_bonds})"


def parse_smiles(smiles: str, fold_hydrogens: bool = True) -> ParsedSmiles:
    """Parse one SMILES string; raises `SmilesParseError` on invalid input (see the module docstring)."""
    if not isinstance(smiles, str):
        raise TypeError(f"parse_smiles expects a str, got {type(smiles).__name__}: {smiles!r:.80}")
    if not smiles:
        raise SmilesParseError(smiles, 0, "empty input")
    bad_character = _NOT_SMILES_CHARACTER_RE.search(smiles)
    if bad_character is not None:
        raise SmilesParseError(smiles, bad_character.start(), _describe_character(bad_character.group()))
    tokens = _TOKEN_RE.findall(smiles)
    kind_of = _KIND.get
    bracket_info = _BRACKET_CACHE.get
    symbols: list[str] = []
    aromatic: list[bool] = []
    parent: list[int] = []  # chain-bond neighbour written before each atom (-1 if none): duplicate-bond check
    bonds: list[tuple] = []
    bond_symbols: list[str] = []
    add_symbol, add_aromatic, add_parent = symbols.append, aromatic.append, parent.append
    add_bond, add_bond_symbol = bonds.append, bond_symbols.append
    ring_open: dict[int, tuple] = {}  # ring number -> (atom, bond symbol or None, token index of the digit)
    ring_bonds: list[tuple] = []  # (ring number, begin, end, type, symbol)
    ring_pairs: set = set()
    branch_stack: list[tuple] = []  # (atom, token index of '(')
    has_hydrogen = False
    prev = -1  # atom the next bond starts from; -1 at the start and after '.'
    bond = None  # pending bond symbol
    bond_k = 0
    state = _START
    for k, tok in enumerate(tokens):
        kind = kind_of(tok)
        if kind is None:
            if tok[0] == "[" and len(tok) > 1:
                info = bracket_info(tok) or _bracket_info_or_raise(smiles, tokens, k)
                kind = info[1]
                if info[0] == "H":
                    has_hydrogen = True
            elif tok[0] == "%" and len(tok) > 1:
                kind = _RING
            else:
                raise SmilesParseError(smiles, _position(tokens, k), _unexpected(tok))
        if kind <= _AROMATIC_ATOM:  # an atom; kind is its aromatic flag
            is_arom = kind
            idx = len(symbols)
            add_symbol(tok)
            add_aromatic(is_arom)
            add_parent(prev)
            if prev >= 0:
                if bond is None:
                    if is_arom and aromatic[prev]:
                        add_bond((prev, idx, AROMATIC))
                        add_bond_symbol(":")
                    else:
                        add_bond((prev, idx, SINGLE))
                        add_bond_symbol("-")
                else:
                    btype = _ORDER_SYMBOLS.get(bond)
                    if btype is None:  # '/' or '\'
                        btype = AROMATIC if is_arom and aromatic[prev] else SINGLE
                    add_bond((idx, prev, btype) if bond == "<-" else (prev, idx, btype))
                    add_bond_symbol(bond)
                    bond = None
            prev = idx
            state = _AFTER_ATOM
        elif kind == _RING:
            if state != _AFTER_ATOM and state != _BOND_AFTER_ATOM:
                raise SmilesParseError(smiles, _position(tokens, k), f"ring-closure {tok!r} without a preceding atom")
            if len(tok) > _MAX_DIGITS + 3:  # '%(' + digits + ')'
                raise SmilesParseError(smiles, _position(tokens, k), f"ring number of more than {_MAX_DIGITS} digits")
            number = int(tok) if len(tok) == 1 else int(tok[1:3] if tok[1] != "(" else tok[2:-1])
            opened = ring_open.pop(number, None)
            if opened is None:
                ring_open[number] = (prev, bond, k)
            else:
                other, other_bond, _ = opened
                if other == prev:
                    raise SmilesParseError(
                        smiles, _position(tokens, k), f"ring closure {tok!r} bonds atom {prev} to itself"
                    )
                pair = (other, prev) if other < prev else (prev, other)
                if parent[prev] == other or parent[other] == prev or pair in ring_pairs:
                    raise SmilesParseError(
                        smiles,
                        _position(tokens, k),
                        f"ring closure {tok!r} duplicates the bond between atoms {other} and {prev}",
                    )
                ring_pairs.add(pair)
                ring_bonds.append((number,) + _ring_bond(smiles, tokens, k, other, other_bond, prev, bond, aromatic))
            bond = None
            state = _AFTER_ATOM
        elif kind == _OPEN:
            if state != _AFTER_ATOM:
                raise SmilesParseError(
                    smiles,
                    _position(tokens, k),
                    "branch '(' without a preceding atom" if bond is None else f"branch '(' after bond {bond!r}",
                )
            branch_stack.append((prev, k))
            state = _BRANCH
        elif kind == _CLOSE:
            if state == _AFTER_ATOM:
                if not branch_stack:
                    raise SmilesParseError(
                        smiles, _position(tokens, k), "unbalanced parenthesis: ')' without a matching '('"
                    )
                prev = branch_stack.pop()[0]
            else:
                raise SmilesParseError(
                    smiles,
                    _position(tokens, k),
                    {
                        _BRANCH: "empty branch '()'",
                        _START: "')' without a preceding atom",
                    }.get(state, f"dangling bond {bond!r} before ')'"),
                )
        elif kind == _BOND:
            if state == _AFTER_ATOM:
                state = _BOND_AFTER_ATOM
            elif state == _BRANCH:
                state = _BOND_IN_BRANCH
            elif state == _START:
                raise SmilesParseError(
                    smiles,
                    _position(tokens, k),
                    f"bond {tok!r} "
                    + ("at the start of the SMILES" if k == 0 else "right after '.' (no atom to bond from)"),
                )
            else:
                raise SmilesParseError(
                    smiles, _position(tokens, k), f"two bond symbols in a row ({bond!r} then {tok!r})"
                )
            bond = tok
            bond_k = k
        else:  # '.'
            if state != _AFTER_ATOM:
                raise SmilesParseError(
                    smiles,
                    _position(tokens, k),
                    "'.' without a preceding atom" if bond is None else f"dangling bond {bond!r} before '.'",
                )
            prev = -1
            state = _START
    if state != _AFTER_ATOM:
        if state == _START:
            raise SmilesParseError(smiles, len(smiles) - 1, "'.' at the end of the SMILES")
        if state == _BRANCH:
            raise SmilesParseError(smiles, len(smiles) - 1, "unclosed branch: '(' at the end of the SMILES")
        raise SmilesParseError(
            smiles, _position(tokens, bond_k), f"bond {bond!r} at the end of the SMILES (no atom follows)"
        )
    if branch_stack:
        raise SmilesParseError(
            smiles, _position(tokens, branch_stack[-1][1]), "unbalanced parenthesis: '(' is never closed"
        )
    if ring_open:
        number, (_, _, digit_k) = min(ring_open.items(), key=lambda item: item[1][2])
        raise SmilesParseError(
            smiles, _position(tokens, digit_k), f"unclosed ring: ring bond {number} is opened but never closed"
        )
    if ring_bonds:
        ring_bonds.sort(key=_ring_number)  # stable: a reused number keeps its closing order
        for _, begin, end, btype, symbol in ring_bonds:
            add_bond((begin, end, btype))
            add_bond_symbol(symbol)
    parsed = ParsedSmiles(smiles, symbols, bonds, bond_symbols, tokens)
    if has_hydrogen and fold_hydrogens:
        parsed = _fold_hydrogens(parsed)
    return parsed


def _ring_number(ring_bond: tuple) -> int:
    return ring_bond[0]


def _position(tokens: list[str], k: int) -> int:
    """Character position of token k (positions are only needed for errors and `atoms`, so not tracked)."""
    return sum(map(len, tokens[:k]))


def _ring_bond(
    smiles: str,
    tokens: list[str],
    k: int,
    opener: int,
    open_bond: str | None,
    closer: int,
    close_bond: str | None,
    aromatic: Sequence[bool],
) -> tuple[int, int, str, str]:
    """(begin, end, type, symbol) of a ring-closure bond, following RDKit's begin/end convention."""
    open_type = _ORDER_SYMBOLS.get(open_bond)
    close_type = _ORDER_SYMBOLS.get(close_bond)
    # A dative arrow points from the donor to the acceptor on the side it is written on.
    open_arrow = {"->": (opener, closer), "<-": (closer, opener)}.get(open_bond)
    close_arrow = {"->": (closer, opener), "<-": (opener, closer)}.get(close_bond)
    if open_type is not None and close_type is not None and (open_type != close_type or open_arrow != close_arrow):
        raise SmilesParseError(
            smiles, _position(tokens, k), f"ring closure with conflicting bond symbols {open_bond!r} and {close_bond!r}"
        )
    if open_arrow or close_arrow:
        return *(open_arrow or close_arrow), DATIVE, open_bond if open_arrow else close_bond
    if open_type is not None:
        return opener, closer, open_type, open_bond
    both_aromatic = aromatic[opener] and aromatic[closer]
    if close_type is not None:
        return closer, opener, close_type, close_bond
    symbol = close_bond or open_bond  # a stereo mark ('/' or '\') or nothing
    btype = AROMATIC if both_aromatic else SINGLE
    return closer, opener, btype, symbol or _IMPLICIT_SYMBOL[btype]


def _describe_character(character: str) -> str:
    """Why a character outside printable ASCII cannot be part of a SMILES."""
    code = f"U+{ord(character):04X}"
    if character == "\ufeff":
        return f"byte order mark ({code}); the file was probably saved by a spreadsheet with a BOM"
    if character.isspace():
        return f"whitespace {character!r} ({code}); a SMILES holds no spaces (is this 'SMILES name'?)"
    if ord(character) < 0x20 or 0x7F <= ord(character) < 0xA0:
        return f"control character {character!r} ({code})"
    return f"non-ASCII character {character!r} ({code}); SMILES are ASCII (digits are 0-9)"


def _unexpected(tok: str) -> str:
    if tok == "[":
        return "unclosed bracket atom: '[' without a matching ']'"
    if tok == "]":
        return "']' without a matching '['"
    if tok == "%":
        return "'%' must be followed by two digits or '(digits)'"
    if tok.isalpha():
        return f"unknown element {tok!r} (symbols outside the organic subset must be in brackets)"
    return f"unexpected character {tok!r}"


def _fold_hydrogens(parsed: ParsedSmiles) -> ParsedSmiles:
    """Apply the explicit-hydrogen rule of the module docstring."""
    atoms = parsed.atoms
    degree = [0] * len(atoms)
    neighbor = [-1] * len(atoms)
    for i, j, _ in parsed.bonds:
        degree[i] += 1
        degree[j] += 1
        neighbor[i] = j
        neighbor[j] = i
    is_h = [a.element == "H" for a in atoms]
    folded = [is_h[k] and degree[k] == 1 and not is_h[neighbor[k]] for k in range(len(atoms))]
    if not any(folded):
        return parsed
    new_index = []
    count = 0
    for f in folded:
        new_index.append(-1 if f else count)
        count += not f
    folded_counts: dict[int, int] = {}
    for k, f in enumerate(folded):
        if f:
            target = new_index[neighbor[k]]
            folded_counts[target] = folded_counts.get(target, 0) + 1
    symbols = [s for s, f in zip(parsed.atom_symbols, folded) if not f]
    atom_tokens = [t for t, f in zip(parsed.atom_token_indices(), folded) if not f]
    bonds, bond_symbols = [], []
    for (i, j, btype), symbol in zip(parsed.bonds, parsed.bond_symbols):
        if not (folded[i] or folded[j]):
            bonds.append((new_index[i], new_index[j], btype))
            bond_symbols.append(symbol)
    return ParsedSmiles(parsed.smiles, symbols, bonds, bond_symbols, parsed._tokens, atom_tokens, folded_counts)
