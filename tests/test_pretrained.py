"""Students that ship inside the package (molformer_kd/pretrained/): shipping one, loading it by name offline, the
applicability-domain flags, `molformer-kd models` / `predict --model NAME`, and each shipped model reproducing the
test sample it was shipped with.

The machinery is tested on tiny students shipped into a temporary folder (one trained here with distill.py, one
untrained); only the last test reads the real shipped folders, one case per shipped model (none before `make
pretrained` has shipped any).
"""

import ast
import csv
import fnmatch
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml
from distill_cli_helpers import run_distill_cli
from fixtures_students import save_tiny_gin_student

import molformer_kd  # noqa: F401  (registers the model families and the pipelines)
from molformer_kd import AutoModelForMolecularPropertyPrediction
from molformer_kd.cli import main
from molformer_kd.data import pretrained
from molformer_kd.data.domain import ApplicabilityDomain
from molformer_kd.data.pretrained import (
    DEFAULT_MODEL,
    PRETRAINED_DIR,
    pretrained_path,
    resolve_pretrained_name,
    shipped_model,
    shipped_models,
)
from molformer_kd.modeling import GINForMolecularPropertyPrediction
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline, check_shipped_sample
from molformer_kd.tokenization.processors import load_processor
from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer

REPO = Path(__file__).resolve().parents[1]
LABELS = ["homo", "lumo", "gap"]
TEST_SIZE = 48
SAMPLE_SIZE = 20
TINY_CONFIG = {
    "stages": ["finetune", "evaluate"],
    "student_config": {"model_type": "molformer_gin", "preset": "tiny"},
    "dataset": "qm9_embedded",
    "label_columns": LABELS,
    "max_train_samples": 128,
    "max_test_samples": TEST_SIZE,
    "use_cpu": True,
    "seed": 0,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 2.0e-3,
    "max_steps": 3,
    "save_strategy": "no",
    "report_to": "none",
}
# Hand-picked: in the QM9 domain, and out of it for one reason each.
DOMAIN_CASES = {
    "CCO": None,
    "c1ccccc1Cl": "element Cl",
    "C" * 20: "20 heavy atoms",
    "[NH4+]": "net charge +1",
}


def load_ship_script():
    spec = importlib.util.spec_from_file_location("ship_pretrained", REPO / "scripts" / "ship_pretrained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_metrics(path, count, mae=0.1):
    metrics = {f"{label}_mae": mae for label in LABELS} | {f"{label}_count": count for label in LABELS}
    path.write_text(json.dumps({"metrics": {"test": metrics}}))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny GIN trained on HOMO, LUMO and gap of the embedded QM9 set with distill.py (finetune + evaluate)."""
    work = tmp_path_factory.mktemp("pretrained")
    config_path = work / "tiny_gin.yaml"
    config_path.write_text(yaml.safe_dump({**TINY_CONFIG, "output_dir": str(work / "run")}))
    result = run_distill_cli(config_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return config_path, work


@pytest.fixture(scope="module")
def shipped_root(trained_run):
    """Two students shipped into a temporary folder: the trained GIN (compared with a 'teacher') as qm9-gin, and an
    untrained SMILES Transformer (tokenizer path) as qm9-smiles-transformer."""
    from molformer_kd.modeling.configuration_smiles_transformer import SmilesTransformerConfig
    from molformer_kd.modeling.modeling_smiles_transformer import SmilesTransformerForMolecularPropertyPrediction

    config_path, work = trained_run
    root = work / "shipped"
    ship = load_ship_script()
    teacher = write_metrics(work / "teacher_metrics.json", TEST_SIZE)
    # benchmarks/chemprop_qm9.py's report: metrics under "test_metrics", other numbers beside them.
    chemprop = work / "chemprop_qm9.json"
    chemprop.write_text(json.dumps({"threads": 1, "test_metrics": {"gap_mae": 0.2, "gap_count": TEST_SIZE}}))
    common = ["--config", str(config_path), "--destination", str(root), "--sample-size", str(SAMPLE_SIZE)]
    ship.main([*common, "--name", "qm9-gin", "--compare", f"teacher={teacher}", "--compare", f"chemprop={chemprop}"])

    torch.manual_seed(0)
    tokenizer = SmilesTokenizer()
    st_config = SmilesTransformerConfig.from_preset(
        "tiny", num_labels=3, label_names=LABELS, label_mean=[-6.5, 0.3, 6.8], label_std=[0.6, 1.3, 1.3]
    )
    st_dir = work / "st_student"
    SmilesTransformerForMolecularPropertyPrediction(st_config).save_pretrained(st_dir)
    tokenizer.save_pretrained(st_dir)
    ship.main([*common, "--name", "qm9-smiles-transformer", "--student", str(st_dir)])
    return root


def test_the_card_compares_with_the_students_own_teacher(tmp_path):
    ship = load_ship_script()
    run = tmp_path / "painn_teacher_run"
    (run / "teacher").mkdir(parents=True)
    chemprop = ["chemprop=chemprop.json"]
    assert ship.with_own_teacher(chemprop, run / "teacher") == chemprop  # no evaluate stage: no teacher row
    metrics = write_metrics((run / "evaluate").mkdir() or run / "evaluate" / "metrics.json", TEST_SIZE)
    assert ship.with_own_teacher(chemprop, run / "teacher") == [*chemprop, f"teacher={metrics.as_posix()}"]
    given = ["teacher=other.json"]
    assert ship.with_own_teacher(given, run / "teacher") == given  # an explicit teacher file wins
    assert ship.with_own_teacher(chemprop, None) == chemprop  # a student trained alone


@pytest.fixture
def registry(shipped_root, monkeypatch):
    """The registry reads the temporary shipped folder instead of molformer_kd/pretrained/."""
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", shipped_root)
    return shipped_root


# ---------------------------------------------------------------------------------------------------- shipping


def test_training_stages_store_the_domain_of_their_training_split(trained_run):
    _, work = trained_run
    config = json.loads((work / "run" / "finetune" / "config.json").read_text())
    domain = ApplicabilityDomain.from_config(config)
    assert domain.molecules == TINY_CONFIG["max_train_samples"]
    assert set(domain.elements) <= {"C", "N", "O", "F"} and domain.max_heavy_atoms <= 9
    assert domain.net_charges == (0,)


def test_ship_writes_weights_processor_card_plot_sample_and_provenance(shipped_root, trained_run):
    config_path, work = trained_run
    folder = shipped_root / "qm9-gin"
    names = {path.name for path in folder.iterdir()}
    assert names == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "parity_plot.png",
        "provenance.json",
        "test_sample.csv",
    }
    assert not [path for path in shipped_root.iterdir() if path.name.startswith(".")]  # no staging folder left

    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["name"] == "qm9-gin" and provenance["hub_id"] == "molformer-kd/qm9-gin"
    assert len(provenance["built"]["commit"]) == 40 and isinstance(provenance["built"]["dirty"], bool)
    assert provenance["config"] == {"path": config_path.as_posix(), "text": config_path.read_text()}
    assert provenance["data"]["dataset"] == "qm9_embedded" and provenance["data"]["label_columns"] == LABELS
    assert provenance["data"]["sizes"]["test"] == TEST_SIZE and provenance["data"]["units"]["gap"] == "eV"
    test_metrics = provenance["metrics"]["test"]
    assert {f"{label}_{m}" for label in LABELS for m in ("mae", "rmse", "count")} == set(test_metrics)
    assert test_metrics["gap_count"] == TEST_SIZE
    assert provenance["comparison"]["teacher"]["gap_mae"] == 0.1
    assert provenance["comparison"]["chemprop"] == {"gap_mae": 0.2, "gap_count": TEST_SIZE}
    assert provenance["source"]["stage_marker"]["global_step"] == TINY_CONFIG["max_steps"]

    # The run's own evaluate stage tested this student on the same split: the pipeline reproduces it.
    evaluated = json.loads((work / "run" / "evaluate" / "metrics.json").read_text())["metrics"]["test"]
    assert test_metrics["gap_mae"] == pytest.approx(evaluated["gap_mae"], abs=1e-5)

    config = json.loads((folder / "config.json").read_text())
    assert config["applicability_domain"] == provenance["applicability_domain"]
    assert provenance["applicability_domain"]["molecules"] == TINY_CONFIG["max_train_samples"]
    with open(folder / "test_sample.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == SAMPLE_SIZE == provenance["sample"]["rows"]
    assert list(rows[0]) == ["mol_id", "smiles", *LABELS, *(f"{label}_pred" for label in LABELS)]
    assert provenance["sample"]["metrics"]["gap_count"] == SAMPLE_SIZE
    assert provenance["files"]["model.safetensors"]["bytes"] == (folder / "model.safetensors").stat().st_size

    card = (folder / "README.md").read_text()
    for section in (
        "# molformer-kd/qm9-gin",
        "## Training data",
        "## Metrics",
        "## Comparison on the same test split",
        "| metric | this model | teacher | chemprop |",
        "## Parity plot",
        "## Intended use",
        "## Applicability domain",
        "`in_domain`",
        "## Limitations",
        'MolecularPropertyPredictionPipeline.from_pretrained("qm9-gin")',
        "molformer-kd predict --model qm9-gin",
        provenance["built"]["commit"],
    ):
        assert section in card, section
    assert (folder / "parity_plot.png").read_bytes().startswith(b"\x89PNG")


def test_every_shipped_file_is_package_data(shipped_root):
    tree = ast.parse((REPO / "setup.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    call = next(node for node in calls if getattr(node.func, "id", "") == "setup")
    package_data = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_data"))
    for folder in shipped_root.iterdir():
        for path in folder.iterdir():
            relative = f"pretrained/{folder.name}/{path.name}"
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in package_data["molformer_kd"]), relative


def test_ship_refuses_a_comparison_on_another_split(trained_run, tmp_path):
    config_path, _ = trained_run
    other = write_metrics(tmp_path / "other.json", TEST_SIZE + 1)
    arguments = ["--config", str(config_path), "--name", "qm9-gin", "--destination", str(tmp_path / "shipped")]
    with pytest.raises(SystemExit, match=f"measured on {TEST_SIZE + 1} molecules .* this test split has {TEST_SIZE}"):
        load_ship_script().main([*arguments, "--compare", f"chemprop={other}"])
    assert list((tmp_path / "shipped").iterdir()) == []  # nothing half-shipped


def test_ship_refuses_pickle_weights_and_oversized_models(trained_run, tmp_path):
    from molformer_kd.hub import UnsafeCheckpointError

    config_path, work = trained_run
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((work / "run" / "finetune" / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    arguments = ["--config", str(config_path), "--name", "x", "--destination", str(tmp_path / "shipped")]
    with pytest.raises(UnsafeCheckpointError):
        load_ship_script().main([*arguments, "--student", str(pickled)])
    with pytest.raises(SystemExit, match="MB of weights, more than --max-mb 0.001"):
        load_ship_script().main([*arguments, "--max-mb", "0.001"])


# ---------------------------------------------------------------------------------------------------- loading


def test_shipped_students_load_by_name_offline(registry):
    assert [model.name for model in shipped_models()] == ["qm9-gin", "qm9-smiles-transformer"]
    for name in ("qm9-gin", "molformer-kd/qm9-gin"):
        model = AutoModelForMolecularPropertyPrediction.from_pretrained(name)
        assert isinstance(model, GINForMolecularPropertyPrediction)
        assert Path(model.name_or_path) == registry / "qm9-gin"
    assert isinstance(GINForMolecularPropertyPrediction.from_pretrained("qm9-gin"), GINForMolecularPropertyPrediction)
    assert isinstance(load_processor("qm9-smiles-transformer"), SmilesTokenizer)
    assert isinstance(SmilesTokenizer.from_pretrained("molformer-kd/qm9-smiles-transformer"), SmilesTokenizer)
    assert pretrained_path("qm9-gin") == registry / "qm9-gin"
    assert shipped_model("molformer-kd/qm9-gin").test_metrics["gap_count"] == TEST_SIZE


def test_names_that_are_not_shipped_pass_through_and_local_folders_come_first(registry, tmp_path, monkeypatch):
    assert resolve_pretrained_name("someone/qm9-gin") == "someone/qm9-gin"  # a Hub repo
    assert resolve_pretrained_name("molformer-kd/other") == "molformer-kd/other"
    assert resolve_pretrained_name(None) is None
    with pytest.raises(KeyError, match="no shipped model 'other'; the shipped models: qm9-gin, qm9-smiles-transformer"):
        pretrained_path("other")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qm9-gin").mkdir()
    assert resolve_pretrained_name("qm9-gin") == "qm9-gin"  # a local folder of that name wins


def test_the_pipeline_defaults_to_the_shipped_gin(registry, monkeypatch):
    predict = MolecularPropertyPredictionPipeline.from_pretrained()
    assert Path(predict.model.name_or_path) == registry / DEFAULT_MODEL
    assert predict.label_names == LABELS

    from transformers import pipeline
    from transformers.pipelines import PIPELINE_REGISTRY

    task = PIPELINE_REGISTRY.supported_tasks["molecular-property-prediction"]
    assert task["default"]["model"] == (str(PRETRAINED_DIR / DEFAULT_MODEL), None)
    monkeypatch.setitem(task["default"], "model", (str(registry / DEFAULT_MODEL), None))
    by_task = pipeline("molecular-property-prediction")
    assert by_task("CCO")["gap"] == pytest.approx(predict("CCO")["gap"], abs=1e-6)


def test_no_model_and_no_shipped_default_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(OSError, match="the default shipped student 'qm9-gin' is not in this installation"):
        MolecularPropertyPredictionPipeline.from_pretrained()


def test_predictions_carry_domain_flags(registry):
    predict = MolecularPropertyPredictionPipeline.from_pretrained("qm9-gin")
    smiles = [*DOMAIN_CASES, "C1CC"]
    results = predict(smiles)
    for one, result in zip(DOMAIN_CASES, results):
        reason = DOMAIN_CASES[one]
        assert result["in_domain"] is (reason is None), one
        assert (result["domain_reason"] or "").startswith(reason or ""), one
        assert result["error"] is None and all(isinstance(result[label], float) for label in LABELS)
    invalid = results[-1]
    assert invalid["error"] is not None and invalid["in_domain"] is None and invalid["domain_reason"] is None
    assert list(results[0]) == [*LABELS, "in_domain", "domain_reason", "error"]
    assert predict("CCO", mode="embed")["in_domain"] is True


def test_a_model_without_a_domain_gets_no_flags(tmp_path):
    save_tiny_gin_student(tmp_path / "student")
    predict = MolecularPropertyPredictionPipeline.from_pretrained(str(tmp_path / "student"))
    assert predict.applicability_domain is None
    assert "in_domain" not in predict("c1ccccc1Cl")
    (tmp_path / "mols.smi").write_text("CCO\n")
    assert main(["predict", "--model", str(tmp_path / "student"), "--input", str(tmp_path / "mols.smi")] + [
        "--output", str(tmp_path / "out.csv"), "--quiet", "--threads", "1"
    ]) == 0  # fmt: skip
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == '"row","smiles","name","gap","homo","error"'


def test_the_shipped_samples_reproduce(registry):
    for name in ("qm9-gin", "qm9-smiles-transformer"):
        check = check_shipped_sample(name)
        assert check.ok, check.summary()
        assert check.max_prediction_change < 1e-5 and set(check.expected) == set(check.measured)


# ---------------------------------------------------------------------------------------------------- command line


def test_cli_models_lists_what_ships_with_test_metrics(registry, capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    metrics = shipped_model("qm9-gin").test_metrics
    for expected in (
        "qm9-gin  (also molformer-kd/qm9-gin)",
        "qm9-smiles-transformer",
        "this model",
        "teacher",
        f"{metrics['gap_mae']:.4f}",
        "applicability domain: heavy-atom elements:",
    ):
        assert expected in text, expected
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in listed] == ["qm9-gin", "qm9-smiles-transformer"]
    assert listed[0]["metrics"]["test"] == metrics


def test_cli_models_says_when_nothing_ships(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "none")
    assert main(["models"]) == 0
    assert "no students ship with this installation" in capsys.readouterr().out


def test_cli_predict_with_a_shipped_name_writes_domain_columns(registry, tmp_path):
    input_path, output_path = tmp_path / "mols.smi", tmp_path / "preds.csv"
    input_path.write_text("".join(f"{smiles} m{i}\n" for i, smiles in enumerate([*DOMAIN_CASES, "C1CC"])))
    arguments = ["--input", str(input_path), "--output", str(output_path), "--quiet", "--threads", "1"]
    assert main(["predict", "--model", "qm9-gin", *arguments]) == 0
    with open(output_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["row", "smiles", "name", *LABELS, "in_domain", "domain_reason", "error"]
    for row, reason in zip(rows, DOMAIN_CASES.values()):
        assert row["in_domain"] == ("true" if reason is None else "false")
        assert row["domain_reason"].startswith(reason or "") and row["error"] == "" and row["gap"] != ""
    assert rows[-1]["in_domain"] == "" and rows[-1]["domain_reason"] == "" and rows[-1]["error"] != ""
    assert main(["predict", "--model", "qm9-smiles-transformer", *arguments]) == 0
    assert main(["embed", "--model", "molformer-kd/qm9-gin", *arguments]) == 0
    with open(output_path, newline="") as handle:
        header = next(csv.reader(handle))
    assert header[3] == "embedding_0" and header[-3:] == ["in_domain", "domain_reason", "error"]


def test_cli_predict_names_what_ships_for_an_unknown_name(registry, tmp_path, capsys):
    (tmp_path / "mols.smi").write_text("CCO\n")
    arguments = ["--input", str(tmp_path / "mols.smi"), "--output", str(tmp_path / "out.csv")]
    assert main(["predict", "--model", "qm9-nope", *arguments]) == 1
    assert "shipped: qm9-gin, qm9-smiles-transformer" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- the real ones


@pytest.mark.parametrize("name", [model.name for model in shipped_models()])
def test_each_shipped_model_loads_offline_and_reproduces_its_test_sample(name):
    """molformer_kd/pretrained/<name>: loads by name with no network, reproduces the predictions and metrics of its
    committed test sample, carries its domain and provenance, and is small enough to ship."""
    model = shipped_model(name)
    assert model.provenance["name"] == name and model.provenance["built"]["commit"]
    assert model.provenance["config"]["text"] and model.test_metrics
    assert ApplicabilityDomain.from_config(model.config()) is not None
    assert model.weights_bytes() < 8e6
    card = (model.path / "README.md").read_text()
    assert "## Applicability domain" in card and "## Comparison on the same test split" in card
    check = check_shipped_sample(name)
    assert check.ok, check.summary()


def test_ship_picks_the_candidate_with_the_best_validation_metric(tmp_path):
    """Several --config candidates: the one whose student had the lowest validation metric (its stage marker's best
    checkpoint) ships, the others become comparison rows, and the card says how the pick was made."""
    ship = load_ship_script()
    candidates = []
    for name, value in (("distilled", 0.19), ("alone", 0.17)):
        stage_dir = tmp_path / name / "finetune"
        stage_dir.mkdir(parents=True)
        best = {"metric": "eval_gap_mae", "value": value, "greater_is_better": False, "global_step": 4}
        (stage_dir / "stage_complete.json").write_text(json.dumps({"summary": {"best_checkpoint": best}}))
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({"stages": ["finetune"], "output_dir": str(tmp_path / name)}))
        candidates.append(config)
    chosen, compare, sentence = ship.pick_on_validation(candidates, None)
    assert chosen == candidates[1]
    assert compare == [f"distilled={tmp_path / 'distilled' / 'evaluate' / 'metrics.json'}"]
    assert "eval_gap_mae" in sentence and "0.1900" in sentence and "0.1700" in sentence

    (tmp_path / "alone" / "finetune" / "stage_complete.json").write_text(json.dumps({"summary": {}}))
    with pytest.raises(SystemExit, match="no best-checkpoint record"):
        ship.pick_on_validation(candidates, None)
