"""`molformer-kd predict|embed`: streamed files in, exactly one output row per input row, errors in a column."""

import csv
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from fixtures_students import LABEL_NAMES, save_tiny_gin_student

import molformer_kd  # noqa: F401  (registers the model families)
from molformer_kd.cli import (
    MAX_DEFAULT_THREADS,
    busy_cores,
    choose_threads,
    choose_workers,
    default_threads,
    main,
    read_smiles,
)
from molformer_kd.data.qm9 import read_embedded_qm9
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline

# Invalid for different reasons: unclosed ring, unknown element, pentavalent carbon, unbalanced branch, empty,
# non-kekulizable aromatic ring.
INVALID_SMILES = ["C1CC", "CXc", "C(C)(C)(C)(C)C", "CC(C", "", "c1cccc1"]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_gin_cli")
    save_tiny_gin_student(directory)
    return directory


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """The CLI runs here with `--threads 1` (robust on a busy 2-core machine); give the next tests their setting."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def qm9_smiles():
    _, records = read_embedded_qm9()
    return [record["smiles"] for record in records]


def write_csv_gz(path, smiles):
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mol_id", "SMILES", "note"])
        for i, smi in enumerate(smiles):
            writer.writerow([f"m{i}", smi, "quoted, with a comma"])


def read_csv_columns(path):
    """Columns of a CSV output as lists of strings."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {column: [row[column] for row in rows] for column in rows[0]}


def to_floats(values):
    return np.array([float(v) if v else np.nan for v in values])


def test_10k_rows_with_1_percent_invalid_keep_count_order_and_errors(tmp_path, student_dir, qm9_smiles):
    n_rows, n_invalid = 10_000, 100
    rng = np.random.default_rng(0)
    invalid_rows = np.sort(rng.choice(n_rows, size=n_invalid, replace=False))
    smiles = [qm9_smiles[i % len(qm9_smiles)] for i in range(n_rows)]
    for k, row in enumerate(invalid_rows):
        smiles[row] = INVALID_SMILES[k % len(INVALID_SMILES)]
    input_path, output_path = tmp_path / "mols.csv.gz", tmp_path / "preds.parquet"
    write_csv_gz(input_path, smiles)

    code = main(
        ["predict", "--model", str(student_dir), "--input", str(input_path), "--output", str(output_path)]
        + ["--batch-size", "256", "--chunk-size", "3000", "--threads", "1", "--quiet"]
    )
    assert code == 0
    table = pq.read_table(output_path).to_pydict()
    assert len(table["row"]) == n_rows
    assert table["row"] == list(range(n_rows))
    assert table["smiles"] == smiles
    errors = table["error"]
    assert [i for i, e in enumerate(errors) if e is not None] == invalid_rows.tolist()
    for row in invalid_rows:
        assert repr(smiles[row]) in errors[row]
        assert all(table[name][row] is None for name in LABEL_NAMES)

    reference = MolecularPropertyPredictionPipeline.from_pretrained(student_dir)
    unique = sorted(set(qm9_smiles))
    by_smiles = dict(zip(unique, reference(unique, batch_size=256)))
    valid = np.setdiff1d(np.arange(n_rows), invalid_rows)
    for name in LABEL_NAMES:
        got = np.array([table[name][i] for i in valid])
        want = np.array([by_smiles[smiles[i]][name] for i in valid])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_smi_input_embed_to_csv_with_names(tmp_path, student_dir, capsys):
    lines = ["CCO ethanol", "C1CC broken ring", "", "c1ccncc1 pyridine", "O"]
    input_path, output_path = tmp_path / "mols.smi", tmp_path / "emb.csv"
    input_path.write_text("\n".join(lines) + "\n")
    assert main(["embed", "--model", str(student_dir), "--input", str(input_path), "--output", str(output_path)]) == 0
    assert "2 of 5 rows have an error" in capsys.readouterr().err
    with open(output_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # every line is a row, the empty one too (with an error), so that row + 1 is the line number
    assert [row["smiles"] for row in rows] == ["CCO", "C1CC", "", "c1ccncc1", "O"]
    assert [row["row"] for row in rows] == ["0", "1", "2", "3", "4"]
    assert [row["name"] for row in rows] == ["ethanol", "broken ring", "", "pyridine", ""]
    assert [bool(row["error"]) for row in rows] == [False, True, True, False, False]
    embedding_columns = [c for c in rows[0] if c.startswith("embedding_")]
    reference = MolecularPropertyPredictionPipeline.from_pretrained(student_dir).embed(["CCO", "c1ccncc1", "O"])
    assert len(embedding_columns) == reference.shape[1]
    got = np.array([[float(rows[i][c]) for c in embedding_columns] for i in (0, 3, 4)])
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)
    assert all(rows[i][c] == "" for c in embedding_columns for i in (1, 2))


def test_reader_and_errors_name_the_file(tmp_path, student_dir, capsys):
    tsv = tmp_path / "mols.tsv"
    tsv.write_text("id\tsmiles\n1\tCCO\n\n2\n")
    assert [row[:3] for row in read_smiles(tsv)] == [("CCO", None, None), ("", None, None)]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,structure\n1,CCO\n")
    assert main(["predict", "--model", str(student_dir), "--input", str(bad), "--output", str(tmp_path / "o.csv")]) == 1
    message = capsys.readouterr().err
    assert str(bad) in message and "'smiles'" in message and "--smiles-column" in message
    assert (
        main(["predict", "--model", str(student_dir), "--input", str(bad), "--output", str(tmp_path / "o.json")]) == 1
    )
    assert "unsupported output format" in capsys.readouterr().err


def test_accelerate_two_processes_shard_and_merge_in_order(tmp_path, student_dir, qm9_smiles):
    smiles = qm9_smiles[:57] + ["C1CC"] + qm9_smiles[57:80]  # odd count: the shards differ in length
    input_path = tmp_path / "mols.csv"
    input_path.write_text("smiles\n" + "\n".join(smiles) + "\n")
    single, sharded = tmp_path / "single.csv", tmp_path / "sharded.csv"
    common = ["--model", str(student_dir), "--input", str(input_path), "--batch-size", "8", "--chunk-size", "16"]
    common += ["--threads", "1"]
    assert main(["predict", *common, "--output", str(single), "--quiet"]) == 0

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    result = subprocess.run(
        [*launch, "-m", "molformer_kd.cli", "predict", *common, "--output", str(sharded), "--quiet"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Loading weights" not in result.stderr  # one progress bar (the rows'), and none with --quiet
    expected, got = read_csv_columns(single), read_csv_columns(sharded)
    assert got["row"] == expected["row"] == [str(i) for i in range(len(smiles))]
    assert got["smiles"] == expected["smiles"] == smiles
    assert got["error"] == expected["error"] and bool(got["error"][57])
    for name in LABEL_NAMES:  # different batch compositions: equal up to float rounding
        np.testing.assert_allclose(to_floats(got[name]), to_floats(expected[name]), rtol=1e-5, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if ".shard-" in p.name] == []  # merged shards are deleted


def test_missing_local_model_folder_says_so_without_asking_the_hub(tmp_path, capsys):
    smi = tmp_path / "in.smi"
    smi.write_text("CCO\n")
    for model in (str(tmp_path / "no_such_student"), "./runs/typo/distill"):
        assert main(["predict", "--model", model, "--input", str(smi), "--output", str(tmp_path / "o.csv")]) == 1
        err = capsys.readouterr().err
        assert f"--model {model!r}: no such local folder" in err
        assert "Traceback" not in err and "http" not in err


def test_keep_columns_travel_to_the_output(tmp_path, student_dir):
    table = tmp_path / "in.csv"
    table.write_text("ID,SMILES,Name\nA1,CCO,ethanol\nA2,not a smiles,junk\nA3,c1ccccc1,benzene\n")
    out = tmp_path / "out.csv"
    argv = [
        "predict",
        "--model",
        str(student_dir),
        "--input",
        str(table),
        "--output",
        str(out),
        "--smiles-column",
        "SMILES",
        "--keep-columns",
        "ID",
        "Name",
        "--quiet",
    ]
    assert main(argv) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["ID"], r["Name"], bool(r["error"])) for r in rows] == [
        ("A1", "ethanol", False),
        ("A2", "junk", True),
        ("A3", "benzene", False),
    ]
    assert main([*argv[:-4], "--keep-columns", "gap", "--quiet"]) == 1  # a name the output already has


def test_choose_threads_uses_free_cores_leaves_workers_theirs_and_caps():
    assert choose_threads(available_cores=2, busy_cores=0.0, num_workers=0) == 2
    assert choose_threads(available_cores=2, busy_cores=1.4, num_workers=0) == 1  # the other core is busy
    assert choose_threads(available_cores=64, busy_cores=0.0, num_workers=0) == MAX_DEFAULT_THREADS
    assert choose_threads(available_cores=8, busy_cores=0.0, num_workers=6) == 2  # workers keep their cores
    assert choose_threads(available_cores=1, busy_cores=5.0, num_workers=3) == 1  # never below one
    assert 1 <= default_threads(num_workers=0) <= min(len(os.sched_getaffinity(0)), MAX_DEFAULT_THREADS)
    with pytest.raises(SystemExit, match="--threads"):
        main(["predict", "--model", "m", "--input", "in.smi", "--output", "out.csv", "--threads", "0"])


def test_predict_without_threads_sets_the_default_and_int8_stays_close(tmp_path, student_dir, qm9_smiles, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(64)  # whatever was set before, the run chooses for this machine
    input_path = tmp_path / "mols.smi"
    input_path.write_text("\n".join(qm9_smiles[:300]) + "\n")
    outputs = {}
    for name, extra in (("default", []), ("int8", ["--quantize", "int8", "--threads", "1"])):
        outputs[name] = tmp_path / f"{name}.csv"
        argv = ["predict", "--model", str(student_dir), "--input", str(input_path), "--output", str(outputs[name])]
        assert main(argv + ["--quiet", *extra]) == 0
        if name == "default":
            assert 1 <= torch.get_num_threads() <= min(len(os.sched_getaffinity(0)), MAX_DEFAULT_THREADS)
    exact, quantized = (read_csv_columns(outputs[name]) for name in ("default", "int8"))
    for label in LABEL_NAMES:
        assert np.corrcoef(to_floats(exact[label]), to_floats(quantized[label]))[0, 1] > 0.99


def test_choose_workers_featurizes_in_a_worker_only_with_two_free_cores():
    assert choose_workers(available_cores=2, busy_cores=0.0) == 1
    assert choose_workers(available_cores=2, busy_cores=0.3) == 1  # rounding: a core mostly idle is free
    assert choose_workers(available_cores=2, busy_cores=1.2) == 0  # the other core is busy
    assert choose_workers(available_cores=1, busy_cores=0.0) == 0
    assert choose_workers(available_cores=8, busy_cores=6.6) == 0


def test_busy_cores_counts_another_process_spinning_now():
    """busy_cores reads the machine's CPU use over a short window (this process sleeps meanwhile): a spinning child
    process shows up at once, where the 1-minute load average would lag."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_cores(window=0.5) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()


def test_busy_cores_over_a_past_window_leaves_this_process_out(monkeypatch):
    """busy_cores(since=...) counts the machine's non-idle time since the sample, less this process's own CPU time
    (the start-up work it did meanwhile), and sleeps only to complete a window shorter than `window`."""
    from molformer_kd import cli

    ticks = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(cli, "available_cores", lambda: 2)
    start = cli.CpuTimes(non_idle=1_000, total=10_000, own=5.0)
    # One second on 2 cores (2 * ticks), 1.5 cores busy of which 1 core is this process: 0.5 core busy elsewhere.
    end = cli.CpuTimes(non_idle=1_000 + 1.5 * ticks, total=10_000 + 2 * ticks, own=6.0)
    monkeypatch.setattr(cli, "cpu_times", lambda: end)
    slept = []
    monkeypatch.setattr(cli.time, "sleep", slept.append)
    assert cli.busy_cores(window=0.2, since=start) == pytest.approx(0.5)
    assert slept == []  # the window was long enough
    just_started = cli.CpuTimes(non_idle=end.non_idle, total=end.total - 0.1 * ticks, own=end.own)
    cli.busy_cores(window=0.2, since=just_started)
    assert slept == [pytest.approx(0.2 - 0.05)]  # 0.1 tick-seconds over 2 cores: 0.05 s elapsed
    # Never below zero (this process's own ticks are counted at a finer grain than /proc/stat's).
    assert cli.busy_cores(since=cli.CpuTimes(end.non_idle, start.total, end.own - 1.0)) == 0.0


def test_result_columns_are_built_without_pa_array(monkeypatch):
    """pa.array imports pandas on first use (0.2-0.5 s of every start-up): the table is built from buffers, and the
    columns equal pa.array's."""
    import pyarrow as pa

    from molformer_kd import cli

    strings = ["CCO", None, "", "ünïcode Ω", "x" * 1000, None]
    numbers = np.array([1.5, np.nan, -2.0, 0.0, 1e30, 7.0])
    null = np.array([False, True, False, False, False, True])
    expected = {
        "strings": pa.array(strings, pa.string()),
        "floats": pa.array(numbers, pa.float64(), mask=null),
        "floats32": pa.array(numbers.astype(np.float32), pa.float32(), mask=null),
        "ints": pa.array(list(range(6)), pa.int64()),
        "booleans": pa.array([True, None, False, True, None, False], pa.bool_()),
        "ascii": pa.array(["a", "bc", None], pa.string()),
    }

    def refuse(*args, **kwargs):
        raise AssertionError("pa.array called")

    monkeypatch.setattr(pa, "array", refuse)
    got = {
        "strings": cli.arrow_strings(strings),
        "floats": cli.arrow_numbers(numbers, pa.float64(), null),
        "floats32": cli.arrow_numbers(numbers, pa.float32(), null),
        "ints": cli.arrow_numbers(range(6), pa.int64()),
        "booleans": cli.arrow_booleans([True, None, False, True, None, False]),
        "ascii": cli.arrow_strings(["a", "bc", None]),
    }
    for name, array in got.items():
        array.validate(full=True)
        assert array.equals(expected[name]), name
    from molformer_kd.pipelines import PredictionColumns

    table = cli.ResultTable("predict", ["gap"], 0, with_name=True, kept_columns=("id",), domain_columns=True)
    inputs = [cli.InputRow("CCO", "ethanol", kept=("m0",)), cli.InputRow(None, error="bad line", kept=(None,))]
    results = PredictionColumns(np.array([[1.0], [np.nan]]), [None, "bad line"], [True, None], [None, None])
    built = table.build([0, 1], inputs, results)
    assert built.to_pylist() == [
        {"row": 0, "smiles": "CCO", "name": "ethanol", "id": "m0", "gap": 1.0, "in_domain": True}
        | {"domain_reason": None, "error": None},
        {"row": 1, "smiles": None, "name": None, "id": None, "gap": None, "in_domain": None}
        | {"domain_reason": None, "error": "bad line"},
    ]


def test_a_smiles_transformer_with_a_domain_through_the_cli(tmp_path):
    """The SMILES path end to end: one row per input row in order, the front door's errors naming SMILES and position,
    domain flags on predicted rows only, values equal to the pipeline's per-molecule results."""
    from fixtures_students import save_tiny_st_student

    from molformer_kd.data.domain import DOMAIN_CONFIG_KEY, ApplicabilityDomain

    save_tiny_st_student(tmp_path / "st")
    config = tmp_path / "st" / "config.json"
    settings = json.loads(config.read_text())
    settings[DOMAIN_CONFIG_KEY] = ApplicabilityDomain.from_smiles(["CCO", "CC(C)N", "c1ccccc1O"]).to_dict()
    config.write_text(json.dumps(settings))
    smiles = ["CCO", "C1CC", "c1ccccc1Cl", "[2H]C([2H])([2H])O", "C" * 40, "CC(C)N", *INVALID_SMILES, "O=C=O.O"]
    input_path, output_path = tmp_path / "mols.csv", tmp_path / "preds.csv"
    with open(input_path, "w", newline="") as handle:
        csv.writer(handle).writerows([["smiles"], *([s] for s in smiles)])
    options = ["--threads", "1", "--quiet", "--batch-size", "4"]
    for workers in ("0", "1"):
        argv = ["predict", "--model", str(tmp_path / "st"), "--input", str(input_path), "--output", str(output_path)]
        assert main([*argv, *options, "--num-workers", workers]) == 0
        columns = read_csv_columns(output_path)
        assert columns["row"] == [str(i) for i in range(len(smiles))] and columns["smiles"] == smiles
        expected = MolecularPropertyPredictionPipeline.from_pretrained(tmp_path / "st")(smiles)
        assert columns["error"] == [r["error"] or "" for r in expected]
        assert "'C1CC' at position" in columns["error"][1]
        assert columns["in_domain"] == ["" if r["in_domain"] is None else str(r["in_domain"]).lower() for r in expected]
        assert columns["domain_reason"] == [r["domain_reason"] or "" for r in expected]
        assert columns["in_domain"][:4] == ["true", "", "false", "true"]
        for name in LABEL_NAMES:
            np.testing.assert_allclose(to_floats(columns[name]), [r[name] for r in expected], rtol=1e-6)
