"""Model cards and hub pushes of energy/force models (interatomic potentials): the card says what a potential reads
and predicts, its KD-GNN metrics, its ASE usage and its parity plot; a pushed potential loads back into the ASE
calculator from the hub; a distill.py run pushes one with that card."""

import json
import re

import numpy as np
import pytest
import torch
import yaml
from distill_cli_helpers import run_distill_cli
from fixtures_students import save_tiny_gin_student
from transformers import AutoConfig

import molformer_kd  # noqa: F401  (registers the model families)
from molformer_kd.data.xtb import energy_statistics, load_qm9_xtb
from molformer_kd.distillation.tasks.energy_forces import evaluate_energy_forces
from molformer_kd.hub import PARITY_PLOT_NAME, energy_and_forces_class, student_files, write_model_card
from molformer_kd.modeling.auto import AutoModelForEnergyAndForces
from molformer_kd.tokenization.collators import PointCloudCollator

pytest.importorskip("ase")

pytest_plugins = ["fixtures_hub"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {"hidden_size": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 5.0}
KD_GNN_METRICS = ("energy_mae_meV", "force_mae_meV_per_A", "force_cos", "efwt_percent")
TEST_MOLECULES = 16


@pytest.fixture(scope="module")
def qm9_xtb():
    return load_qm9_xtb()


def save_tiny_potential(directory, qm9_xtb, model_type="molformer_painn", **settings):
    """A tiny untrained potential with the shipped sample's energy statistics, saved with save_pretrained."""
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **TINY, **settings, **energy_statistics(qm9_xtb["train"]))
    model = AutoModelForEnergyAndForces.from_config(config).eval()
    model.save_pretrained(directory)
    return model


def parity_panels(model, rows):
    """True vs predicted energies per molecule and force components per atom, as the card's parity panels."""
    batch = PointCloudCollator()(list(rows))
    with torch.no_grad():
        outputs = model(**{key: batch[key] for key in ("atomic_numbers", "pos", "atom_mask")})
    mask = batch["atom_mask"].bool()
    return [
        {"y_true": batch["labels"]["energy"].tolist(), "y_pred": outputs.energy.tolist(), "label": "energy (eV)"},
        {
            "y_true": batch["labels"]["forces"][mask].flatten().tolist(),
            "y_pred": outputs.forces[mask].flatten().tolist(),
            "label": "force component (eV/Angstrom)",
        },
    ]


def card_sections(card: str) -> dict[str, str]:
    _, block, body = card.split("---\n", 2)
    sections = dict(re.findall(r"^## (.+?)\n\n(.*?)(?=^## |\Z)", body, flags=re.S | re.M))
    return {"metadata": yaml.safe_load(block), "intro": body.split("## ", 1)[0], **sections}


def test_energy_force_models_are_recognised_by_the_registry(tmp_path, qm9_xtb):
    save_tiny_potential(tmp_path / "painn", qm9_xtb)
    save_tiny_potential(tmp_path / "schnet", qm9_xtb, "molformer_schnet")
    save_tiny_gin_student(tmp_path / "gin")
    backbone = AutoModelForEnergyAndForces.from_pretrained(tmp_path / "painn").painn
    backbone.save_pretrained(tmp_path / "backbone")

    def recognised(name):
        model_class = energy_and_forces_class(json.loads((tmp_path / name / "config.json").read_text()))
        return model_class and model_class.__name__

    assert recognised("painn") == "PaiNNForEnergyAndForces"
    assert recognised("schnet") == "SchNetForEnergyAndForces"
    # A PaiNN backbone predicts no energy; a property student is no potential.
    assert recognised("backbone") is None and recognised("gin") is None
    # Checkpoints saved under the legacy model_type ("painn") are potentials too.
    legacy = {**json.loads((tmp_path / "painn" / "config.json").read_text()), "model_type": "painn"}
    assert energy_and_forces_class(legacy).__name__ == "PaiNNForEnergyAndForces"
    assert energy_and_forces_class({}) is None


def test_direct_force_potential_card(tmp_path, qm9_xtb):
    model_dir = tmp_path / "tiny-painn"
    model = save_tiny_potential(model_dir, qm9_xtb)
    test_rows = qm9_xtb["test"].select(range(TEST_MOLECULES))
    metrics = evaluate_energy_forces(model, test_rows)
    teacher = {name: 0.5 * value for name, value in metrics.items()}
    info = {
        # The usage snippet below is run as written: "from_pretrained(<model_name>)" then loads the local folder.
        "model_name": str(model_dir),
        "data": "QM9/xTB sample shipped with molformer_kd (GFN2-xTB energies and forces).",
        "datasets": ["qm9_xtb"],
        "teacher": "PaiNN d=32, 2 layers",
        "metrics": {"test": metrics},
        "comparison": {"teacher": teacher},
        "parity": parity_panels(model, test_rows),
    }
    card = write_model_card(model_dir, info).read_text()
    sections = card_sections(card)

    assert "interatomic-potential" in sections["metadata"]["tags"]
    assert sections["metadata"]["metrics"] == sorted(KD_GNN_METRICS)
    intro = sections["intro"]
    assert "3D interatomic potential of type `molformer_painn` (PaiNNForEnergyAndForces)" in intro
    for phrase in ("atomic numbers and positions (Angstrom)", "hydrogens included", "any order", "energy (eV)"):
        assert phrase in intro
    assert "force on each atom (eV/Angstrom)" in intro
    assert "direct force head" in intro and "not conservative" in intro and "NVE" in intro
    assert "SMILES only" not in card and "molecular-property-prediction" not in card
    assert "- cutoff: 5.0 Angstrom" in sections["Model"]

    for name in KD_GNN_METRICS:
        assert f"| {name} | {metrics[name]:.4g} |" in sections["Metrics"]
        comparison_row = f"| {name} | {metrics[name]:.4g} | {teacher[name]:.4g} |"
        assert comparison_row in sections["Comparison on the same test split"]
        assert f"- `{name}`: " in sections["Metrics"]
    assert "0.02 eV" in sections["Metrics"] and "0.03 eV/Angstrom" in sections["Metrics"]

    assert f"![parity plot]({PARITY_PLOT_NAME})" in sections["Parity plot"]
    assert (model_dir / PARITY_PLOT_NAME).read_bytes().startswith(PNG_MAGIC)
    # energy_statistics fits reference energies for exactly the training split's elements.
    assert "- elements: H, C, N, O, F (those with a fitted reference energy" in sections["Applicability domain"]

    usage = sections["Usage"]
    assert f'MolformerCalculator.from_pretrained("{model_dir}", force_source="gradient")' in usage
    snippet = usage.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(snippet, "card usage", "exec"), namespace)  # the card's own code, run as written
    atoms = namespace["atoms"]
    assert namespace["forces"].shape == (len(atoms), 3) and np.isfinite(atoms.get_potential_energy())


@pytest.mark.parametrize("model_type", ["molformer_painn", "molformer_schnet"])
def test_gradient_force_potential_card(tmp_path, qm9_xtb, model_type):
    settings = {"direct_forces": False} if model_type == "molformer_painn" else {}
    save_tiny_potential(tmp_path, qm9_xtb, model_type, **settings)
    sections = card_sections(write_model_card(tmp_path, {"model_name": "tester/potential"}).read_text())
    assert "-dE/dx of the predicted energy (autograd): conservative" in sections["intro"]
    assert "direct force head" not in sections["intro"]
    assert 'MolformerCalculator.from_pretrained("tester/potential")' in sections["Usage"]
    assert "Metrics" not in sections and "Parity plot" not in sections


def test_potential_domain_prefers_config_then_card_info(tmp_path, qm9_xtb):
    save_tiny_potential(tmp_path, qm9_xtb)
    stated = card_sections(write_model_card(tmp_path, {"training_elements": ["H", "C", "O"]}).read_text())
    assert "- elements: H, C, O\n" in stated["Applicability domain"]
    config = json.loads((tmp_path / "config.json").read_text())
    config["applicability_domain"] = {"elements": ["C", "N"], "max_heavy_atoms": 9, "source": "training split"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    recorded = card_sections(write_model_card(tmp_path, {"training_elements": ["H", "C", "O"]}).read_text())
    domain = recorded["Applicability domain"]
    assert "(training split) span:" in domain and "- heavy-atom elements: C, N" in domain
    assert "- heavy atoms: 0 to 9" in domain and "H, C, O" not in domain


PUSH_AND_LOAD_POTENTIAL = """
import json, sys
import torch
torch.set_num_threads(1)
from ase import Atoms
from huggingface_hub import HfApi, hf_hub_download
from molformer_kd.calculators import MolformerCalculator
from molformer_kd.hub import push_student_to_hub

model_dir, card_info, atoms = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
push_student_to_hub(model_dir, "tester/tiny-painn", card_info=card_info)
molecule = Atoms(numbers=atoms["numbers"], positions=atoms["positions"])
molecule.calc = MolformerCalculator.from_pretrained("tester/tiny-painn", device="cpu")
out = {"files": sorted(HfApi().list_repo_files("tester/tiny-painn")),
       "card": open(hf_hub_download("tester/tiny-painn", "README.md")).read(),
       "energy": molecule.get_potential_energy(), "forces": molecule.get_forces().tolist()}
print("RESULT" + json.dumps(out))
"""


def test_push_potential_then_ase_calculator_from_the_hub(tmp_path, qm9_xtb, hub_python):
    from ase import Atoms

    from molformer_kd.calculators import MolformerCalculator

    model_dir = tmp_path / "tiny-painn"
    model = save_tiny_potential(model_dir, qm9_xtb)
    (model_dir / "trainer_state.json").write_text("{}")  # training state stays local
    assert {path.name for path in student_files(model_dir)} == {"config.json", "model.safetensors"}
    rows = qm9_xtb["test"].select(range(4))
    card_info = {"model_name": "tester/tiny-painn", "parity": parity_panels(model, rows)}
    row = rows[0]
    molecule = Atoms(numbers=row["atomic_numbers"], positions=row["positions"])
    molecule.calc = MolformerCalculator.from_pretrained(model_dir, device="cpu")

    atoms = json.dumps({"numbers": row["atomic_numbers"], "positions": row["positions"]})
    result = hub_python(PUSH_AND_LOAD_POTENTIAL, args=[model_dir, json.dumps(card_info), atoms])
    out = json.loads(result.stdout.split("RESULT", 1)[1])

    assert out["files"] == sorted(["README.md", "config.json", "model.safetensors", PARITY_PLOT_NAME])
    assert "3D interatomic potential" in out["card"]
    assert 'MolformerCalculator.from_pretrained("tester/tiny-painn", force_source="gradient")' in out["card"]
    # The same weights in a fresh process: the same float32 energy and forces (ASE reports them in float64).
    assert out["energy"] == pytest.approx(molecule.get_potential_energy(), rel=1e-6)
    np.testing.assert_allclose(out["forces"], molecule.get_forces(), rtol=1e-5, atol=1e-6)


def test_distill_run_pushes_a_potential_with_its_card(tmp_path, qm9_xtb, hub_env, hub_python):
    """distill.py's push_to_hub (evaluate stage of a saved PaiNN) writes the potential's card with its metrics."""
    model_dir = tmp_path / "painn"
    save_tiny_potential(model_dir, qm9_xtb)
    config = {
        "stages": ["evaluate"],
        "output_dir": str(tmp_path / "run"),
        "dataset": "qm9_xtb",
        "evaluate_name_or_path": str(model_dir),
        "max_test_samples": TEST_MOLECULES,
        "per_device_eval_batch_size": TEST_MOLECULES,
        "use_cpu": True,
        "push_to_hub": True,
        "hub_model_id": "tester/distilled-painn",
        "report_to": "none",
        "disable_tqdm": True,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_distill_cli(path, env={**hub_env, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    card = hub_python(
        """
        import sys
        from huggingface_hub import HfApi, hf_hub_download
        assert "parity_plot.png" in HfApi().list_repo_files(sys.argv[1])
        print(open(hf_hub_download(sys.argv[1], "README.md")).read())
        """,
        args=["tester/distilled-painn"],
    ).stdout
    sections = card_sections(card)
    assert "3D interatomic potential" in sections["intro"] and "direct force head" in sections["intro"]
    for name in KD_GNN_METRICS:
        assert re.search(rf"^\| {name} \| \S+ \|$", sections["Metrics"], flags=re.M), name
    assert "MolformerCalculator.from_pretrained" in sections["Usage"]
    assert "- elements: H, C, N, O, F" in sections["Applicability domain"]
    assert "Parity plot" in sections
