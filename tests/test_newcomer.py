"""The README/tutorial path of a chemist with their own data, as commands only (docs/tutorial.md): a CSV with columns
SMILES, Name, logS and a split column -> a 3D teacher on generated conformers -> CCMD into a GIN -> evaluate ->
predict with the Name column kept. No Python written by the user; only the tutorial's YAML config."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tutorial" / "own_data.yaml"
DATA = REPO / "tests" / "data" / "own_data.csv"


def molformer_kd(*args, cwd, timeout=600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "molformer_kd.cli", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MOLFORMER_KD_CACHE": str(Path(cwd) / "cache")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_own_csv_teacher_on_conformers_ccmd_gin_evaluate_predict(tmp_path):
    values = yaml.safe_load(CONFIG.read_text())
    values["dataset"] = str(DATA)
    values["output_dir"] = str(tmp_path / "run")
    config = tmp_path / "own_data.yaml"
    config.write_text(yaml.safe_dump(values))

    trained = molformer_kd("distill", "--config", config, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    output = trained.stdout + trained.stderr
    assert "Traceback" not in output and "LOAD REPORT" not in output
    assert "conformers:" in trained.stderr  # the generated-conformer count is reported
    assert "evaluate " in trained.stdout and "logS_mae" in trained.stdout  # the metrics table

    with open(DATA, newline="") as handle:
        rows = list(csv.DictReader(handle))
    tests = [row for row in rows if row["split"] == "test"]
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())["metrics"]["test"]
    assert metrics["logS_count"] == len(tests)
    with open(tmp_path / "run" / "evaluate" / "predictions.csv", newline="") as handle:
        assert sorted(row["mol_id"] for row in csv.DictReader(handle)) == sorted(row["Name"] for row in tests)

    predicted = molformer_kd(
        "predict",
        "--model",
        tmp_path / "run" / "distill",
        "--input",
        DATA,
        "--output",
        tmp_path / "logS.csv",
        "--smiles-column",
        "SMILES",
        "--keep-columns",
        "Name",
        "--quiet",
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "Traceback" not in predicted.stderr and "LOAD REPORT" not in predicted.stderr
    with open(tmp_path / "logS.csv", newline="") as handle:
        out = list(csv.DictReader(handle))
    assert [row["Name"] for row in out] == [row["Name"] for row in rows]
    assert all(row["error"] == "" and float(row["logS"]) == float(row["logS"]) for row in out)
