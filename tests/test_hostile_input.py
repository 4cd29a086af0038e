"""Hostile input never costs a screening run: one SMILES front door, size limits and reader faults as row errors."""

import csv
import gzip
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from fixtures_students import LABEL_NAMES, save_tiny_gin_student, save_tiny_st_student, tiny_gin_student
from rdkit import Chem

import molformer_kd  # noqa: F401  (registers the model families)
from molformer_kd.cli import main, read_smiles
from molformer_kd.data.qm9 import read_embedded_qm9
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline
from molformer_kd.tokenization import (
    DEFAULT_MAX_ATOMS,
    MoleculeFeaturizer,
    MoleculeTooLargeError,
    SmilesParseError,
    SmilesTokenizer,
    StBaseTokenizer,
    check_smiles,
)
from molformer_kd.tokenization.shortest_paths import chunk_distances


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """The CLI runs here with `--threads 1`; give the next tests their setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def processors():
    return {"featurizer": MoleculeFeaturizer(), "st": SmilesTokenizer(), "st_base": StBaseTokenizer()}


def verdict(processor, smiles):
    """None when the processor accepts the SMILES, else its SmilesParseError (any other exception fails the test)."""
    try:
        if isinstance(processor, MoleculeFeaturizer):
            processor.featurize(smiles)
        else:
            processor(smiles)
    except SmilesParseError as err:
        return err
    return None


# ---------------------------------------------------------------------------------------------------- front door

REFUSED = [
    ("C C", 1, "whitespace"),
    ("CCO\x00", 3, "control character"),
    ("c1ccccc1\U0001f600", 8, "non-ASCII"),
    ("\ufeffCCO", 0, "byte order mark"),
    ("[\u0661\u0663C]", 1, "non-ASCII"),
    ("C%\u0661\u0662CC%12", 2, "non-ASCII"),
    ("[\u00b9\u00b3C]", 1, "non-ASCII"),
    ("C(C)(C)(C)(C)C", 0, "valence"),  # five-valent carbon: refused by the SMILES students too
    ("CC(C)(C)(C)(C)C", 1, "valence"),
    ("c1cccc1", 0, "kekulize"),
]


@pytest.mark.parametrize("smiles, position, reason", REFUSED)
def test_every_processor_refuses_the_same_strings_at_the_same_position(processors, smiles, position, reason):
    for name, processor in processors.items():
        err = verdict(processor, smiles)
        assert err is not None, (name, smiles)
        assert err.position == position and reason.lower() in str(err).lower(), (name, str(err))


@pytest.mark.parametrize("smiles", ["N->[Fe]", "[Fe]<-N", "[NH3]->[Pt]<-[NH3]", "CC |$;Cl_p$|", "CCO", "[13CH4]"])
def test_every_processor_accepts_dative_bonds_and_cxsmiles(processors, smiles):
    for name, processor in processors.items():
        assert verdict(processor, smiles) is None, (name, smiles)
    assert check_smiles(smiles).parsed.num_atoms == check_smiles(smiles).mol.GetNumAtoms()


def test_too_many_atoms_is_refused_before_any_quadratic_work(processors):
    polymer = "C" * 10_000
    start = time.perf_counter()
    for name, processor in processors.items():
        err = verdict(processor, polymer)
        assert isinstance(err, MoleculeTooLargeError), name
        assert err.position == DEFAULT_MAX_ATOMS and "10000 atoms" in err.reason
        assert len(str(err)) < 400  # the 10,000-character input is cut to a window
    # Featurizing the polymer itself takes minutes; refusing it takes a parse (milliseconds, here 10x margin x 3).
    assert time.perf_counter() - start < 30
    assert MoleculeFeaturizer(max_atoms=3).featurize("CCC")["input_nodes"].shape == (3, 9)
    err = verdict(SmilesTokenizer(max_atoms=3), "[H]OC(C)CN")  # the folded hydrogen does not count
    assert isinstance(err, MoleculeTooLargeError) and err.position == 8
    with pytest.raises(ValueError, match="more than the limit of 2"):
        MoleculeFeaturizer(max_atoms=2).featurize(Chem.MolFromSmiles("CCC"))


def _qm9_sample(n):
    _, records = read_embedded_qm9()
    return [record["smiles"] for record in records[:n]]


def test_bfs_distances_equal_rdkit_distance_matrix():
    corpus = _qm9_sample(300) + [
        "c1ccc2cc3ccccc3cc2c1",
        "C1CC2CC1C2",
        "CC(=O)[O-].[Na+]",
        "[H+].[Cl-]",
        "C.C.C",
        "C1CC1.c1ccccc1CCN",
        "O=C(O)C[C@H](O)C[C@H](O)CCn2c(c(c(c2c1ccc(F)cc1)c3ccccc3)C(=O)Nc4ccccc4)C(C)C",
        "C" * 70,
        "[Na+]",
    ]
    mols = [check_smiles(smiles).mol for smiles in corpus]
    sizes = np.array([mol.GetNumAtoms() for mol in mols])
    atom_start, pair_start = np.cumsum(sizes) - sizes, np.cumsum(sizes**2) - sizes**2
    molecule, source, target = [], [], []
    for m, mol in enumerate(mols):
        for bond in mol.GetBonds():
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            molecule += [m, m]
            source += [i, j]
            target += [j, i]
    distance = chunk_distances(
        sizes,
        atom_start,
        pair_start,
        np.array(molecule, dtype=np.int64),
        np.array(source, dtype=np.int64),
        np.array(target, dtype=np.int64),
    )
    for m, mol in enumerate(mols):
        n = sizes[m]
        got = distance[pair_start[m] : pair_start[m] + n * n].reshape(n, n)
        np.testing.assert_array_equal(got, Chem.GetDistanceMatrix(mol).astype(np.int64), err_msg=corpus[m])


# ---------------------------------------------------------------------------------------------------- readers

BAD_UTF8 = b"C\xff\xfeC"


def _write(path, text_bytes: bytes):
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(text_bytes)
    else:
        path.write_bytes(text_bytes)


@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.smi", "in.csv.gz", "in.tsv.gz", "in.smi.gz"])
def test_readers_strip_the_bom_and_make_reader_faults_row_errors(tmp_path, name):
    path = tmp_path / name
    smi = ".smi" in name
    sep = b"\t" if ".tsv" in name else b","
    huge = b"C" * 10_000_001
    lines = [b"CCO", BAD_UTF8, b"c1ccccc1", huge, b"O"]
    body = (
        b"\n".join(lines)
        if smi
        else b"\xef\xbb\xbfsmiles" + sep + b"id\n" + b"\n".join(line + sep + b"%d" % k for k, line in enumerate(lines))
    )
    _write(path, b"\xef\xbb\xbf" + body + b"\n" if smi else body + b"\n")
    rows = list(read_smiles(path))
    assert [row.smiles for row in rows] == ["CCO", None, "c1ccccc1", None, "O"]
    first_line = 1 if smi else 2
    assert f"{path} line {first_line + 1}: bytes that are not UTF-8" in rows[1].error
    assert f"{path} line {first_line + 3}" in rows[3].error and "10,000,000 characters" in rows[3].error
    assert rows[0].error is None and rows[2].error is None and rows[4].error is None


@pytest.mark.parametrize(
    "content, message",
    [
        (b"smiles\nCCO\n\x00\x01\x02binary", "line 3: a NUL byte"),
        (b"\xff\xfes\x00m\x00i\x00", "UTF-16"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 3: a NUL byte"),
    ],
)
def test_a_file_that_is_not_text_is_one_error_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "mols.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        list(read_smiles(path))
    assert str(path) in str(info.value)


def test_a_truncated_gzip_file_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "mols.smi.gz"
    full = gzip.compress(b"".join(b"CCO m%d\n" % k for k in range(20_000)))
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match="cannot decompress") as info:
        list(read_smiles(path))
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------------- pipeline


def test_a_batch_that_cannot_be_padded_or_run_is_predicted_one_molecule_at_a_time(tmp_path):
    model = tiny_gin_student()
    pipe = MolecularPropertyPredictionPipeline(model=model, feature_extractor=MoleculeFeaturizer())
    smiles = ["CCO", "c1ccccc1", "CC(=O)O"]
    expected = pipe(smiles)
    # Features of different multi_hop_max_dist cannot share a batch: each molecule is padded and run alone.
    items = [pipe.preprocess(s) for s in smiles]
    items[1]["features"] = MoleculeFeaturizer(multi_hop_max_dist=3).featurize(smiles[1])
    results = pipe.postprocess(pipe.forward(pipe.collate(items)))
    for got, want in zip(results, expected):
        assert got["error"] is None
        np.testing.assert_allclose([got[n] for n in LABEL_NAMES], [want[n] for n in LABEL_NAMES], rtol=1e-5)

    forward = model.forward

    def fails_on_six_atoms(**inputs):  # the model's own input checks refusing one molecule of the batch
        if (inputs["attention_mask"].sum(dim=1) == 6).any():
            raise ValueError("six atoms are not allowed")
        return forward(**inputs)

    model.forward = fails_on_six_atoms
    results = pipe(smiles)
    assert [r["error"] is None for r in results] == [True, False, True]
    assert "'c1ccccc1'" in results[1]["error"] and "six atoms are not allowed" in results[1]["error"]
    assert np.isnan(results[1][LABEL_NAMES[0]])
    for i in (0, 2):
        np.testing.assert_allclose(results[i][LABEL_NAMES[0]], expected[i][LABEL_NAMES[0]], rtol=1e-5)


def test_smiles_transformer_molecules_beyond_its_position_table_are_row_errors(tmp_path):
    model, tokenizer = save_tiny_st_student(tmp_path)
    pipe = MolecularPropertyPredictionPipeline(model=model, tokenizer=tokenizer)
    results = pipe(["CCO", "C" * (model.config.max_atoms + 1), "C" * model.config.max_atoms])
    assert [r["error"] is None for r in results] == [True, False, True]
    assert f"more than the limit of {model.config.max_atoms}" in results[1]["error"]


# ---------------------------------------------------------------------------------------------------- screening


SCREENING_ROWS = [
    ("CCO", False),
    ("C" * 3000, True),  # a 3,000-atom chain: cubic distances took minutes
    ("c1ccccc1", False),
    ("C" * 200_000, True),  # a field longer than the csv module's default limit
    ("C C", True),
    ("[\u0661\u0663C]", True),  # Arabic-Indic digits
    ("", True),
    ("CC(=O)O", False),
    ("C(C)(C)(C)(C)C", True),  # five-valent carbon
    ("N->[Fe]", False),
]


@pytest.mark.parametrize("student", ["gin", "st"])
def test_screening_file_with_hostile_rows_exits_0_with_one_row_per_input(tmp_path, student):
    model_dir = tmp_path / student
    (save_tiny_gin_student if student == "gin" else save_tiny_st_student)(model_dir)
    input_path, output_path = tmp_path / "screen.csv", tmp_path / "preds.parquet"
    with open(input_path, "w", encoding="utf-8-sig", newline="") as handle:  # Excel's BOM
        writer = csv.writer(handle)
        writer.writerow(["smiles", "id"])
        writer.writerows([smiles, f"m{k}"] for k, (smiles, _) in enumerate(SCREENING_ROWS))
    start = time.perf_counter()
    code = main(
        [
            "predict",
            "--model",
            str(model_dir),
            "--input",
            str(input_path),
            "--output",
            str(output_path),
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--quiet",
        ]
    )
    elapsed = time.perf_counter() - start
    assert code == 0
    assert elapsed < 120  # the bound; it takes seconds
    table = pq.read_table(output_path).to_pydict()
    assert table["row"] == list(range(len(SCREENING_ROWS)))
    assert table["smiles"] == [smiles for smiles, _ in SCREENING_ROWS]
    assert [error is not None for error in table["error"]] == [bad for _, bad in SCREENING_ROWS]
    for error, (_, bad) in zip(table["error"], SCREENING_ROWS):
        assert not bad or len(error) < 600  # a 200,000-character input is not echoed
    for name in LABEL_NAMES:
        assert [value is not None for value in table[name]] == [not bad for _, bad in SCREENING_ROWS]
