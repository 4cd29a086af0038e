"""The shared CSV/TSV reader: records named by their first physical line, cells as pandas reads them."""

import csv
import gzip
import io

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from molformer_kd.data import load_csv
from molformer_kd.data.tabular import TableRow, iter_table_rows, read_table


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MOLFORMER_KD_CACHE", str(tmp_path / "cache"))


def _pandas_frame(path, sep):
    """What read_table returned when it was pandas: every cell a string, blank lines kept as rows."""
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False)


def _assert_same_cells(frame, expected):
    assert list(frame.columns) == list(expected.columns)
    assert frame.to_numpy().tolist() == expected.to_numpy().tolist()


# A name quoted over lines 3-4 (as in B3DB's TSVs), then an invalid SMILES on line 5 (pandas' row k + 2 said 4).
QUOTED_NAME_CSV = (
    'smiles,name,y\nCCO,ethanol,1.0\nCCN,"ethyl\namine",2.0\nC1CC,broken ring,3.0\n'
    'c1ccccc1,"benzene, ""the"" ring",4.0\n'
)


def test_load_csv_names_the_true_line_after_a_cell_spanning_two_lines(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text(QUOTED_NAME_CSV)
    data, report = load_csv(path, label_columns=["y"], split=None, return_report=True)
    assert data["train"]["mol_id"] == ["mols.csv:2", "mols.csv:3", "mols.csv:6"]
    assert data["train"]["y"] == [1.0, 2.0, 4.0]
    assert [str(issue) for issue in report.skipped] == [f"{path} line 5: invalid SMILES 'C1CC': SMILES syntax error"]
    with pytest.raises(ValueError, match=r"mols\.csv line 5: invalid SMILES 'C1CC'"):
        load_csv(path, label_columns=["y"], on_invalid="raise")
    path.write_text(QUOTED_NAME_CSV.replace("4.0", "four"))
    with pytest.raises(ValueError, match=r"mols\.csv line 6: label column 'y' holds 'four'"):
        load_csv(path, label_columns=["y"])


def test_read_table_indexes_records_by_first_line_and_matches_pandas_cells(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text(QUOTED_NAME_CSV)
    frame = read_table(path)
    assert frame.index.name == "line" and frame.index.tolist() == [2, 3, 5, 6]
    assert frame["name"].tolist() == ["ethanol", "ethyl\namine", "broken ring", 'benzene, "the" ring']
    _assert_same_cells(frame, _pandas_frame(path, ","))
    assert frame.dtypes.tolist() == _pandas_frame(path, ",").dtypes.tolist()


def test_iter_table_rows_yields_header_then_records_with_problems(tmp_path):
    path = tmp_path / "mols.tsv.gz"
    with gzip.open(path, "wt", newline="") as handle:  # gzip, CRLF, byte order mark, blank line, short row
        handle.write('\ufeffSMILES\tname\r\nCCO\t"a\r\nb"\r\n\r\nCCC\r\nCCN\tamine\r\n')
    rows = list(iter_table_rows(path))  # tab sniffed
    assert rows == [
        TableRow(1, ["SMILES", "name"]),
        TableRow(2, ["CCO", "a\r\nb"]),
        TableRow(5, None, "1 fields where the header has 2"),
        TableRow(6, ["CCN", "amine"]),
    ]
    with_blank = list(iter_table_rows(path, "\t", skip_blank_lines=False))
    assert with_blank[2] == TableRow(4, ["", ""])
    with pytest.raises(ValueError, match=r"mols\.tsv\.gz line 5: 1 fields where the header has 2"):
        read_table(path)


def test_blank_lines_stay_rows_of_load_csv_named_by_their_line(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text('smiles,note\nCCO,"two\nlines"\n\nCCN,x\n')
    frame = read_table(path)
    _assert_same_cells(frame, _pandas_frame(path, ","))
    assert frame.index.tolist() == [2, 4, 5]
    data, report = load_csv(path, label_columns=[], split=None, return_report=True)
    assert data["train"]["mol_id"] == ["gaps.csv:2", "gaps.csv:5"]
    assert report.n_records == 3 and [issue.where for issue in report.skipped] == [f"{path} line 4"]
    assert "invalid SMILES ''" in report.skipped[0].reason


def test_header_names_are_made_unique_as_pandas_does(tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("smiles,y,y,\nCCO,1,2,3\n")
    frame = read_table(path)
    assert list(frame.columns) == ["smiles", "y", "y.1", "Unnamed: 3"]
    _assert_same_cells(frame, _pandas_frame(path, ","))


def test_unreadable_tables_are_errors_naming_file_and_line(tmp_path):
    long_row = tmp_path / "long.csv"
    long_row.write_text("smiles,y\nCCO,1\nCCN,2,3\n")
    with pytest.raises(ValueError, match=r"long\.csv line 3: 3 fields where the header has 2"):
        read_table(long_row)
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('smiles,name\nCCO,ethanol\nCCN,"ethyl\namine\nCCC,propane\n')
    with pytest.raises(ValueError, match=r"unclosed\.csv line 3: a quoted cell starting in this record is never"):
        read_table(unclosed)
    closed_at_end = tmp_path / "closed.csv"  # a last record over two lines whose quote is closed is fine
    closed_at_end.write_text('smiles,name\nCCO,"ethyl\nalcohol"\n')
    assert read_table(closed_at_end)["name"].tolist() == ["ethyl\nalcohol"]
    header_only = tmp_path / "header.csv"
    header_only.write_text("smiles,y\n")
    with pytest.raises(ValueError, match=r"header\.csv: has a header \(smiles, y\) but no data rows"):
        list(iter_table_rows(header_only))
    blank = tmp_path / "blank.csv"
    blank.write_text("\n  \n")
    with pytest.raises(ValueError, match=r"blank\.csv: file is empty"):
        next(iter_table_rows(blank))
    with pytest.raises(FileNotFoundError, match=r"missing\.csv: no such file"):
        next(iter_table_rows(tmp_path / "missing.csv"))


_CELL_TEXT = st.text(alphabet='ab ,;\t"\n', max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), sep=st.sampled_from([",", "\t", ";"]), crlf=st.booleans())
def test_cells_and_lines_agree_with_pandas_and_an_independent_line_count(tmp_path, data, sep, crlf):
    n_columns = data.draw(st.integers(1, 3))
    header = [f"c{k}" for k in range(n_columns)]
    records = data.draw(st.lists(st.lists(_CELL_TEXT, min_size=n_columns, max_size=n_columns), min_size=1, max_size=5))
    newline = "\r\n" if crlf else "\n"
    text = io.StringIO()
    csv.writer(text, delimiter=sep, lineterminator=newline).writerows([header, *records])
    path = tmp_path / "table.txt"
    path.write_bytes(text.getvalue().encode())  # cells keep their own "\n" whichever line end the rows use
    frame = read_table(path, sep)
    _assert_same_cells(frame, _pandas_frame(path, sep))
    # Record k starts after the header line and the physical lines of records 0..k-1 (1 + newlines in their cells).
    expected_lines, line = [], 2
    for cells in records:
        expected_lines.append(line)
        line += 1 + sum(cell.count("\n") for cell in cells)
    assert frame.index.tolist() == expected_lines


def test_load_csv_takes_mol_ids_and_extra_columns_from_the_file(tmp_path):
    path = tmp_path / "own.csv"
    path.write_text("name,smiles,gap,fold\nethanol,CCO,1.5,train\n,c1ccccc1,2.0, test \nwater,O,3.0,train\n")
    records = load_csv(path, label_columns=["gap"], id_column="name", extra_columns=["fold"], split=None)["train"]
    assert records["mol_id"] == ["ethanol", "own.csv:3", "water"]  # an empty id falls back to file:line
    assert records["fold"] == ["train", "test", "train"]
    with pytest.raises(ValueError, match=r"own\.csv: id/extra column\(s\) \['batch'\] not found"):
        load_csv(path, label_columns=["gap"], extra_columns=["batch"], split=None)
