"""Model card, parity plot, push to a local HF-Hub-compatible server and load back by repo id."""

import json

import numpy as np
import pytest
import yaml
from fixtures_students import LABEL_NAMES, save_tiny_gin_student

import molformer_kd  # noqa: F401  (registers the model families)
from molformer_kd.hub import (
    PARITY_PLOT_NAME,
    UnsafeCheckpointError,
    make_parity_plot,
    student_files,
    write_model_card,
)
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline

pytest_plugins = ["fixtures_hub"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "C1CC1N", "OCC#N", "c1ccncc1", "O=C=O"]
CARD_INFO = {
    "model_name": "tiny-gin-student",
    "data": "Embedded QM9 subset (3,000 molecules, HOMO-LUMO gap in eV).",
    "datasets": ["qm9"],
    "teacher": "Graphormer-3D (12 layers, d=768)",
    "objective": "CCMD: L1 on global and atom tokens, f(N) = 1/N",
    "metrics": {"test": {"mae": 0.123456, "r2": 0.9}, "validation": {"mae": 0.2}},
}


def read_front_matter(text):
    assert text.startswith("---\n")
    _, block, body = text.split("---\n", 2)
    return yaml.safe_load(block), body


def test_parity_plot_is_a_png_and_checks_its_inputs(tmp_path):
    path = make_parity_plot([1.0, 2.0, np.nan, 4.0], [1.1, 1.9, 3.0, 4.2], tmp_path / "p.png", label="gap (eV)")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="2 values but y_pred has 3"):
        make_parity_plot([1.0, 2.0], [1.0, 2.0, 3.0], tmp_path / "q.png")
    with pytest.raises(ValueError, match="no finite"):
        make_parity_plot([np.nan], [1.0], tmp_path / "r.png")


def test_model_card_has_metadata_sections_metrics_and_plot(tmp_path):
    save_tiny_gin_student(tmp_path)
    rng = np.random.default_rng(0)
    y_true = rng.normal(6.8, 1.3, size=50)
    info = {**CARD_INFO, "parity": {"y_true": y_true, "y_pred": y_true + rng.normal(0, 0.1, 50), "label": "gap"}}
    card = write_model_card(tmp_path, info).read_text()
    metadata, body = read_front_matter(card)
    assert metadata["library_name"] == "molformer_kd"
    assert "molformer_gin" in metadata["tags"] and metadata["datasets"] == ["qm9"]
    assert metadata["metrics"] == ["mae", "r2"]
    for text in (CARD_INFO["data"], CARD_INFO["teacher"], CARD_INFO["objective"], "`gap`, `homo`"):
        assert text in body
    assert "| metric | test | validation |" in body
    assert "| mae | 0.1235 | 0.2 |" in body and "| r2 | 0.9 |  |" in body
    assert f"![parity plot]({PARITY_PLOT_NAME})" in body
    assert (tmp_path / PARITY_PLOT_NAME).read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(TypeError, match="unknown model card field"):
        write_model_card(tmp_path, {"teacher_name": "x"})


def test_student_files_are_safetensors_config_and_processor_only(tmp_path):
    save_tiny_gin_student(tmp_path)
    (tmp_path / "optimizer.pt").write_bytes(b"not shared")
    (tmp_path / "trainer_state.json").write_text("{}")
    names = {path.name for path in student_files(tmp_path)}
    assert names == {"config.json", "model.safetensors", "preprocessor_config.json"}
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin"):
        student_files(tmp_path)


PUSH_AND_LOAD = """
import json, sys
import torch
torch.set_num_threads(1)
import molformer_kd
from huggingface_hub import CommitOperationAdd, HfApi
from transformers import pipeline
from molformer_kd.hub import UnsafeCheckpointError, push_student_to_hub
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline

student_dir, pickle_dir, smiles, card_info = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
commit = push_student_to_hub(student_dir, "tester/tiny-gin", card_info=card_info, private=True)
api = HfApi()
out = {"commit": commit.oid, "files": sorted(api.list_repo_files("tester/tiny-gin")),
       "private": api.model_info("tester/tiny-gin").private}
by_class = MolecularPropertyPredictionPipeline.from_pretrained("tester/tiny-gin")
by_factory = pipeline("molecular-property-prediction", model="tester/tiny-gin", device=-1)
out["by_class"] = by_class(smiles, batch_size=len(smiles))
out["by_factory"] = by_factory(smiles, batch_size=len(smiles))
out["revision"] = MolecularPropertyPredictionPipeline.from_pretrained("tester/tiny-gin", revision=commit.oid)(smiles[0])

api.create_repo("tester/pickle-only")
api.create_commit("tester/pickle-only", commit_message="pickle weights only", operations=[
    CommitOperationAdd(name, f"{pickle_dir}/{name}")
    for name in ("config.json", "pytorch_model.bin", "preprocessor_config.json")])
try:
    MolecularPropertyPredictionPipeline.from_pretrained("tester/pickle-only")
    out["pickle_refused"] = None
except UnsafeCheckpointError as err:
    out["pickle_refused"] = str(err)
print("RESULT" + json.dumps(out))
"""


def test_push_then_load_by_repo_id_gives_identical_predictions(tmp_path, local_hub, hub_python):
    import torch

    student_dir, pickle_dir = tmp_path / "student", tmp_path / "pickle"
    model, _ = save_tiny_gin_student(student_dir)
    (student_dir / "optimizer.pt").write_bytes(b"training state stays local")
    save_tiny_gin_student(pickle_dir)
    torch.save(model.state_dict(), pickle_dir / "pytorch_model.bin")

    in_memory = MolecularPropertyPredictionPipeline.from_pretrained(student_dir)(SMILES, batch_size=len(SMILES))
    card = json.dumps({**CARD_INFO, "parity": {"y_true": [1.0, 2.0, 3.0], "y_pred": [1.1, 2.1, 2.8]}})
    result = hub_python(PUSH_AND_LOAD, args=[student_dir, pickle_dir, json.dumps(SMILES), card])
    out = json.loads(result.stdout.split("RESULT", 1)[1])

    assert out["files"] == sorted(
        ["README.md", "config.json", "model.safetensors", "preprocessor_config.json", PARITY_PLOT_NAME]
    )
    assert out["private"] is True
    for loaded in (out["by_class"], out["by_factory"]):
        assert [r["error"] for r in loaded] == [None] * len(SMILES)
        np.testing.assert_allclose(
            [[r[n] for n in LABEL_NAMES] for r in loaded],
            [[r[n] for n in LABEL_NAMES] for r in in_memory],
            rtol=1e-6,
            atol=1e-6,
        )
    # A pinned revision (the commit sha) loads the same weights; one molecule alone vs. in a batch: float rounding.
    revision = [out["revision"][n] for n in LABEL_NAMES]
    np.testing.assert_allclose(revision, [in_memory[0][n] for n in LABEL_NAMES], rtol=1e-5)
    assert out["pickle_refused"] and "pytorch_model.bin" in out["pickle_refused"]
    # The upload went through the preupload + NDJSON commit endpoints and downloads through resolve/.
    assert any("/preupload/main" in line for line in local_hub.request_log)
    assert any(line.startswith("GET /tester/tiny-gin/resolve/") for line in local_hub.request_log)
