"""Check `parse_smiles` against RDKit: atom order, atom properties and the bond list (pairs and types).

Reference: `Chem.MolFromSmiles(s, sanitize=False)` for the raw graph (`parse_smiles(s, fold_hydrogens=False)`)
and, for the explicit-hydrogen rule, `Chem.RemoveHs(mol, rdkit_remove_hs_params(), sanitize=False)` against
`parse_smiles(s)`. Corpora: the MOSES test set (molsets), QM9 SMILES (qm9pack data CSVs) and every SMILES found in
`.smi`/`.csv` files under RDKit's Data and Contrib folders; or `--file` for one SMILES per line.

    python scripts/check_parser_parity.py                      # full run over all corpora
    python scripts/check_parser_parity.py --file molformer_kd/tokenization/resources/parity_sample.smi
    python scripts/check_parser_parity.py --write-sample 3000  # refresh the committed sample
"""

from __future__ import annotations

import argparse
import csv
import glob
import gzip
import importlib.util
import io
import json
import os
import random
import re
import sys
import time
from collections import Counter

from rdkit import Chem, RDConfig, RDLogger

from molformer_kd.tokenization.smiles_grammar import SmilesParseError, parse_smiles

RDLogger.DisableLog("rdApp.*")

SAMPLE_PATH = os.path.join(
    os.path.dirname(__file__), "..", "molformer_kd", "tokenization", "resources", "parity_sample.smi"
)


def rdkit_remove_hs_params() -> Chem.RemoveHsParameters:
    """RDKit's hydrogen removal configured as the module docstring of smiles_grammar states the rule."""
    params = Chem.RemoveHsParameters()
    for name in (
        "removeIsotopes",
        "removeHydrides",
        "removeMapped",
        "removeDummyNeighbors",
        "removeDefiningBondStereo",
        "removeWithWedgedBond",
        "removeNontetrahedralNeighbors",
        "removeWithQuery",
        "removeInSGroups",
        "removeNonimplicit",
    ):
        setattr(params, name, True)
    for name in ("removeDegreeZero", "removeHigherDegrees", "removeOnlyHNeighbors", "showWarnings"):
        setattr(params, name, False)
    return params


_REMOVE_HS_PARAMS = rdkit_remove_hs_params()


def rdkit_graph(smiles: str, fold_hydrogens: bool):
    """(atoms, bonds) as RDKit reads them, or None if RDKit rejects the SMILES."""
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None
    if fold_hydrogens:
        mol = Chem.RemoveHs(mol, _REMOVE_HS_PARAMS, sanitize=False)
    # RDKit's RemoveHs bumps the explicit H count of some neighbours (bracket atoms, aromatic N) and not of
    # others, so the H count is compared on the raw graph only.
    atoms = [
        (
            a.GetSymbol(),
            a.GetIsAromatic(),
            a.GetFormalCharge(),
            a.GetIsotope(),
            None if fold_hydrogens else a.GetNumExplicitHs(),
        )
        for a in mol.GetAtoms()
    ]
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), str(b.GetBondType())) for b in mol.GetBonds()]
    return atoms, bonds


def our_graph(smiles: str, fold_hydrogens: bool):
    """(atoms, bonds) from parse_smiles in the same layout as `rdkit_graph`, or None on SmilesParseError."""
    try:
        parsed = parse_smiles(smiles, fold_hydrogens=fold_hydrogens)
    except SmilesParseError as err:
        return err
    # RDKit's explicit H count: the bracket H count (RemoveHs with sanitize=False does not add folded H to it).
    atoms = [
        (a.element, a.aromatic, a.charge, a.isotope or 0, None if fold_hydrogens else a.hcount or 0)
        for a in parsed.atoms
    ]
    return atoms, list(parsed.bonds)


# Inputs RDKit reads but OpenSMILES forbids, which we reject on purpose: SMARTS' any-bond `~`, RDKit's dative
# bonds `->`/`<-`, and ring closures with two different bond orders (RDKit keeps the first).
DELIBERATE_REJECTIONS = {
    "unexpected character '~'": "SMARTS any-bond '~'",
    "unexpected character '>'": "dative bond '->'",
    "unexpected character '<'": "dative bond '<-'",
    "conflicting bond symbols": "conflicting ring-closure bond symbols",
}


def compare(smiles: str) -> tuple[str, bool] | None:
    """None when both graphs (raw and hydrogen-folded) agree with RDKit, else (mismatch category, deliberate)."""
    for fold in (False, True):
        ref = rdkit_graph(smiles, fold)
        ours = our_graph(smiles, fold)
        if ref is None or isinstance(ours, SmilesParseError):
            if ref is None and isinstance(ours, SmilesParseError):
                return None  # both reject
            if ref is None:
                return "rdkit rejects, we accept", False
            for marker, what in DELIBERATE_REJECTIONS.items():
                if marker in ours.reason:
                    return f"we reject on purpose: {what}", True
            return f"we reject, rdkit accepts ({ours.reason})", False
        if ref[0] != ours[0]:
            return f"atoms differ ({'folded' if fold else 'raw'})", False
        if ref[1] != ours[1]:
            return f"bonds differ ({'folded' if fold else 'raw'})", False
    return None


# ----------------------------------------------------------------------------------------------------- corpora


def _package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)  # locate without importing (moses pulls heavy dependencies)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed (pip install --no-deps molsets / pip install qm9pack)")
    return next(iter(spec.submodule_search_locations))


def moses_smiles(split: str = "test") -> list[str]:
    path = os.path.join(_package_dir("moses"), "dataset", "data", f"{split}.csv.gz")
    with gzip.open(path, "rt") as f:
        return [row["SMILES"] for row in csv.DictReader(f)]


def qm9_smiles() -> list[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(_package_dir("qm9pack"), "data", "qm9_part*.csv"))):
        with open(path, newline="") as f:
            out.extend(row["SMILES"] for row in csv.DictReader(f))
    return out


_NOT_SMILES = re.compile(r"^[\d.eE+-]*$")  # numbers and ids


def rdkit_data_smiles() -> list[str]:
    """Every whitespace/comma separated field of RDKit's .smi/.csv data files that RDKit reads as a SMILES."""
    found = []
    for root in (RDConfig.RDDataDir, RDConfig.RDContribDir):
        for path in sorted(
            glob.glob(os.path.join(root, "**", "*.smi"), recursive=True)
            + glob.glob(os.path.join(root, "**", "*.csv"), recursive=True)
        ):
            with open(path, errors="replace") as f:
                for line in f:
                    if line.startswith("#"):
                        continue
                    for field in re.split(r"[\s,]+", line.strip()):
                        field = field.strip('"')
                        if (
                            field
                            and not _NOT_SMILES.match(field)
                            and Chem.MolFromSmiles(field, sanitize=False) is not None
                        ):
                            found.append(field)
    return found


_RING_DIGIT = re.compile(r"(\[[^\]]*\])|(?<!%)(?<!%\d)(\d)")


def rdkit_written_smiles(source: list[str], n: int, seed: int = 0) -> list[str]:
    """SMILES written by RDKit with the features the plain corpora lack: random atom order, stereo (random
    tetrahedral and E/Z assignments), Kekule form, all bonds explicit, explicit [H] atoms, isotopes, charges and
    two-digit ring closures (`%1d` / `%(10d)` substituted for ring digit d)."""
    from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

    rng = random.Random(seed)
    out = []
    for smiles in rng.sample(source, min(n, len(source))):
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            continue
        isomers = list(
            EnumerateStereoisomers(
                mol,
                options=StereoEnumerationOptions(
                    maxIsomers=1, rand=rng.randrange(2**31), unique=True, tryEmbedding=False
                ),
            )
        )
        mol = Chem.Mol(isomers[0] if isomers else mol)
        if rng.random() < 0.3:
            atom = mol.GetAtomWithIdx(rng.randrange(mol.GetNumAtoms()))
            atom.SetIsotope(rng.choice([2, 13, 15]) if atom.GetAtomicNum() > 1 else 2)
        if rng.random() < 0.2:
            atom = mol.GetAtomWithIdx(rng.randrange(mol.GetNumAtoms()))
            atom.SetFormalCharge(rng.choice([-1, 1, 2]))
            atom.SetNoImplicit(True)
        if rng.random() < 0.2:
            mol = Chem.AddHs(mol, onlyOnAtoms=[rng.randrange(mol.GetNumAtoms())])
        kekule = rng.random() < 0.3
        if kekule:
            try:
                Chem.Kekulize(mol, clearAromaticFlags=True)
            except Chem.KekulizeException:  # a charge put on an aromatic atom can make it unkekulizable
                kekule = False
        written = Chem.MolToSmiles(
            mol,
            doRandom=True,
            canonical=False,
            kekuleSmiles=kekule,
            allBondsExplicit=rng.random() < 0.3,
            allHsExplicit=rng.random() < 0.3,
        )
        if rng.random() < 0.3:
            fmt = rng.choice(["%1{}", "%(10{})"])
            written = _RING_DIGIT.sub(lambda m, fmt=fmt: m.group(1) or fmt.format(m.group(2)), written)
        out.append(written)
    return out


def all_corpora() -> dict[str, list[str]]:
    corpora = {"moses_test": moses_smiles("test"), "qm9": qm9_smiles(), "rdkit_data": rdkit_data_smiles()}
    corpora["rdkit_written"] = rdkit_written_smiles(corpora["moses_test"][:50_000] + corpora["qm9"][:50_000], 10_000)
    return corpora


# --------------------------------------------------------------------------------------------------------- main


def run(corpora: dict[str, list[str]], max_examples: int = 5) -> dict:
    report = {}
    for name, smiles_list in corpora.items():
        unique = list(dict.fromkeys(smiles_list))
        reasons: Counter = Counter()
        examples: dict[str, list[str]] = {}
        both_reject = deliberate = 0
        for s in unique:
            result = compare(s)
            if result is not None:
                why, on_purpose = result
                deliberate += on_purpose
                reasons[why] += 1
                examples.setdefault(why, [])
                if len(examples[why]) < max_examples:
                    examples[why].append(s)
            elif Chem.MolFromSmiles(s, sanitize=False) is None:
                both_reject += 1
        report[name] = {
            "smiles": len(smiles_list),
            "unique": len(unique),
            "mismatches": sum(reasons.values()) - deliberate,
            "deliberate_rejections": deliberate,
            "both_reject": both_reject,
            "reasons": dict(reasons),
            "examples": examples,
        }
    return report


def _is_hard(smiles: str) -> bool:
    return any(ch in smiles for ch in "[%@/\\+.#") or bool(re.search(r"-\D", smiles))


def write_sample(corpora: dict[str, list[str]], size: int, seed: int = 0) -> list[str]:
    """A mixed sample: half 'hard' SMILES (brackets, %nn, stereo, charges, fragments) spread over the corpora."""
    rng = random.Random(seed)
    per_corpus = size // len(corpora)
    sample: list[str] = []
    for smiles_list in corpora.values():
        unique = sorted(set(smiles_list))
        hard = [s for s in unique if _is_hard(s)]
        pick = rng.sample(hard, min(len(hard), per_corpus // 2))
        rest = [s for s in unique if s not in set(pick)]
        pick += rng.sample(rest, min(len(rest), per_corpus - len(pick)))
        sample.extend(pick)
    with open(SAMPLE_PATH, "w") as f:
        f.write("\n".join(sample) + "\n")
    return sample


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", help="one SMILES per line (first whitespace-separated field) instead of the corpora")
    ap.add_argument("--write-sample", type=int, metavar="N", help=f"write an N-SMILES sample to {SAMPLE_PATH}")
    ap.add_argument("--json", help="also write the report as JSON here")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    if args.file:
        with open(args.file) as f:
            corpora = {os.path.basename(args.file): [line.split()[0] for line in f if line.strip()]}
    else:
        corpora = all_corpora()
    if args.write_sample:
        sample = write_sample(corpora, args.write_sample)
        print(f"wrote {len(sample)} SMILES to {os.path.normpath(SAMPLE_PATH)}")
        return 0
    report = run(corpora)
    total = sum(r["unique"] for r in report.values())
    bad = sum(r["mismatches"] for r in report.values())
    out = io.StringIO()
    for name, r in report.items():
        print(
            f"{name}: {r['unique']} unique SMILES ({r['smiles']} rows), {r['mismatches']} mismatches, "
            f"{r['deliberate_rejections']} deliberate rejections, {r['both_reject']} rejected by both",
            file=out,
        )
        for why, n in r["reasons"].items():
            print(f"  {n:6d} {why}: e.g. {r['examples'][why][:3]}", file=out)
    print(f"total: {total} unique SMILES, {bad} mismatches, {time.perf_counter() - start:.1f} s", file=out)
    print(out.getvalue(), end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
