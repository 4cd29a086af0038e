"""All-atom 3D teachers (SchNet, PaiNN) of the property task: the point-cloud featurizer, the property models, the
paired batch with a 2D student, the objectives' token alignment, the teacher cache, and the distill.py stages."""

import json

import numpy as np
import pytest
import torch
from distill_cli_helpers import FAST, log_history, write_config
from rdkit import Chem
from trainer_helpers import assert_trained_alike, live_and_cached_runs

from molformer_kd import distill_command as distill_run
from molformer_kd.distillation.objectives import CCMDObjective, DenoiseAndDistillObjective, TaskObjective
from molformer_kd.distillation.tasks import label_statistics
from molformer_kd.distillation.teacher_cache import TeacherCache
from molformer_kd.distillation.trainer import DistillationModel
from molformer_kd.modeling import AutoModelForMolecularPropertyPrediction
from molformer_kd.modeling.configuration_gin import GINConfig
from molformer_kd.modeling.configuration_painn import PaiNNConfig
from molformer_kd.modeling.configuration_schnet import SchNetConfig
from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction
from molformer_kd.modeling.modeling_painn import PaiNNForMolecularPropertyPrediction, PaiNNModel
from molformer_kd.modeling.modeling_schnet import SchNetForMolecularPropertyPrediction
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline
from molformer_kd.tokenization import load_processor
from molformer_kd.tokenization.collators import PairedCollator, SingleModelCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer
from molformer_kd.tokenization.point_cloud import PointCloudFeaturizer


@pytest.fixture(scope="module")
def rows(embedded_qm9):
    return embedded_qm9["train"].select(range(12))


def painn_config(rows=None, **overrides):
    statistics = label_statistics(rows, ["gap"]) if rows is not None else {}
    return PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8, **statistics, **overrides)


def teacher_model(seed=0):
    torch.manual_seed(seed)
    return PaiNNModel(painn_config()).eval()


def test_featurizer_puts_token_atoms_first_then_hydrogens(rows):
    row = rows[0]
    mol = Chem.MolFromSmiles(row["smiles"])
    heavy = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    hydrogens = sum(atom.GetTotalNumHs() for atom in mol.GetAtoms())
    assert len(row["h_pos"]) == hydrogens > 0

    cloud = PointCloudFeaturizer().featurize_record(row)
    assert cloud["atomic_numbers"].tolist() == heavy + [1] * hydrogens
    np.testing.assert_allclose(cloud["positions"], np.concatenate([row["pos"], row["h_pos"]]), atol=1e-6)
    assert cloud["shared_atoms"] == len(heavy)
    # Every hydrogen sits about 1 Angstrom (C-H, N-H, O-H bonds) from its nearest token atom: real DFT positions.
    nearest = np.linalg.norm(np.asarray(row["h_pos"])[:, None] - np.asarray(row["pos"])[None], axis=-1).min(1)
    assert np.all((nearest > 0.9) & (nearest < 1.15))

    heavy_only = PointCloudFeaturizer(hydrogens=False).featurize_record({**row, "h_pos": None})
    assert heavy_only["atomic_numbers"].tolist() == heavy


def test_featurizer_errors_name_the_row(rows):
    row = dict(rows[0])
    featurizer = PointCloudFeaturizer()
    with pytest.raises(ValueError, match=r"has no 'h_pos'.*\[mol_id 'qm9_"):
        featurizer.featurize_record({**row, "h_pos": None})
    with pytest.raises(ValueError, match=r"h_pos has shape \(\d+, 3\), expected \(\d+, 3\) \(one row per hydrogen\)"):
        featurizer.featurize_record({**row, "h_pos": row["h_pos"][1:]})
    with pytest.raises(ValueError, match="pos has shape"):
        featurizer.featurize_record({**row, "pos": row["pos"][:-1]})
    with pytest.raises(ValueError, match="NaN or infinite"):
        featurizer.featurize_record({**row, "h_pos": [[float("nan")] * 3] + row["h_pos"][1:]})
    with pytest.raises(ValueError, match="unknown setting 'hydrogen'"):
        PointCloudFeaturizer(hydrogen=True)


@pytest.mark.parametrize("model_class", [PaiNNForMolecularPropertyPrediction, SchNetForMolecularPropertyPrediction])
def test_property_model_reads_hydrogens_and_is_invariant(model_class, rows, tmp_path):
    config_class = PaiNNConfig if model_class is PaiNNForMolecularPropertyPrediction else SchNetConfig
    torch.manual_seed(0)
    model = model_class(config_class(hidden_size=16, num_layers=2, num_rbf=8, **label_statistics(rows, ["gap"])))
    model.eval()
    collator = SingleModelCollator(PointCloudFeaturizer(), label_columns=["gap"])
    batch = collator([rows[i] for i in range(4)])
    inputs = batch["student_inputs"]
    with torch.no_grad():
        out = model(**inputs, labels=batch["labels"])
        rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))[0]
        moved = model(**{**inputs, "pos": inputs["pos"] @ rotation.T + torch.tensor([1.0, -2.0, 0.5])})
        heavy_only = SingleModelCollator(PointCloudFeaturizer(hydrogens=False))([rows[i] for i in range(4)])
        without_h = model(**heavy_only["student_inputs"])
    assert out.logits.shape == (4, 1) and torch.isfinite(out.loss)
    torch.testing.assert_close(moved.logits, out.logits, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(without_h.logits, out.logits)  # the hydrogens reach the prediction
    # One load path: saved with its featurizer, loaded by name through the Auto class and load_processor.
    model.save_pretrained(tmp_path)
    PointCloudFeaturizer().save_pretrained(tmp_path)
    loaded = AutoModelForMolecularPropertyPrediction.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, model_class) and isinstance(load_processor(tmp_path), PointCloudFeaturizer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, out.logits)
    # SMILES carry no coordinates: the prediction pipeline of the 2D students refuses the model in one line.
    with pytest.raises(ValueError, match="is an all-atom 3D model: it reads the coordinates of every atom"):
        MolecularPropertyPredictionPipeline.from_pretrained(tmp_path)


def test_processor_must_match_the_model_family(rows, tmp_path):
    GINForMolecularPropertyPrediction(GINConfig.from_preset("tiny", num_labels=1)).save_pretrained(tmp_path / "gin")
    PointCloudFeaturizer().save_pretrained(tmp_path / "gin")
    with pytest.raises(ValueError, match="cannot serve a 'molformer_gin' model"):
        load_processor(tmp_path / "gin")
    PaiNNForMolecularPropertyPrediction(painn_config(rows)).save_pretrained(tmp_path / "painn")
    MoleculeFeaturizer(use_3d=True).save_pretrained(tmp_path / "painn")
    with pytest.raises(ValueError, match="SchNet and PaiNN read the point clouds"):
        load_processor(tmp_path / "painn")
    # A model trained on the token atoms alone must not be fed hydrogens, nor one trained with them go without.
    PointCloudFeaturizer(hydrogens=True).save_pretrained(tmp_path / "painn")
    PaiNNConfig(hidden_size=16, num_layers=2, hydrogens=False).save_pretrained(tmp_path / "painn")
    with pytest.raises(ValueError, match="hydrogens = True but the model's config has hydrogens = False"):
        load_processor(tmp_path / "painn")


def test_new_processor_follows_the_config(rows):
    from molformer_kd.distillation.tasks.property import new_processor

    assert new_processor(painn_config()).hydrogens
    assert not new_processor(painn_config(hydrogens=False)).hydrogens
    assert not new_processor(SchNetConfig(hidden_size=16, num_layers=2, hydrogens=False)).hydrogens


def test_paired_batch_aligns_token_atoms(rows):
    collator = PairedCollator(PointCloudFeaturizer(), MoleculeFeaturizer(graph_encodings=False), ["gap"])
    batch = collator([rows[i] for i in range(5)])
    teacher, student = batch["teacher_inputs"], batch["student_inputs"]
    assert set(teacher) == {"atomic_numbers", "pos", "atom_mask"}
    torch.testing.assert_close(batch["shared_atom_mask"], student["attention_mask"].long())
    heavy_atoms = student["attention_mask"].sum(1)
    assert bool((teacher["atom_mask"].sum(1) > heavy_atoms).all())  # the hydrogens come on top
    for b in range(5):  # token atoms first: the teacher's atom types there are the student's elements
        n = int(heavy_atoms[b])
        assert bool((teacher["atomic_numbers"][b, :n] > 1).all()) and bool(
            (teacher["atomic_numbers"][b, n:] <= 1).all()
        )
        torch.testing.assert_close(teacher["pos"][b, :n], torch.tensor(rows[b]["pos"]))
    # Atom j of the teacher must be atom j of the student: a row whose coordinates belong to another molecule fails.
    wrong = {**rows[0], "smiles": rows[1]["smiles"]}
    if len(rows[0]["pos"]) != Chem.MolFromSmiles(rows[1]["smiles"]).GetNumAtoms():
        with pytest.raises(ValueError, match="pos has shape"):
            collator([wrong])


def test_ccmd_reads_only_the_shared_atoms(rows):
    """CCMD with an all-atom teacher equals CCMD computed by hand on the teacher's global token and its token atoms
    (eq. 7 and 8 with f(N) = 1/N for a GIN), the hydrogens' tokens left out."""
    teacher = teacher_model()
    student_config = GINConfig.from_preset("tiny", num_labels=1)
    torch.manual_seed(2)
    student = GINForMolecularPropertyPrediction(student_config).eval()
    objective = CCMDObjective(teacher.config, student_config, layers="all", variant="coordinated")
    batch = PairedCollator(PointCloudFeaturizer(), MoleculeFeaturizer(graph_encodings=False))(
        [rows[i] for i in range(4)]
    )
    with torch.no_grad():
        t = teacher(**batch["teacher_inputs"], output_hidden_states=True)
        s = student(**batch["student_inputs"], output_hidden_states=True)
        losses = objective(t, s, batch)
        expected_global, expected_local = [], []
        for b in range(4):
            n = int(batch["shared_atom_mask"][b].sum())
            global_term = local_term = 0.0
            for (t_layer, s_layer), proj in zip(objective.layer_pairs, objective.projections):
                teacher_tokens = t.hidden_states[t_layer][b, : 1 + n]  # global token + token atoms, no hydrogens
                student_tokens = proj(s.hidden_states[s_layer][b, : 1 + n])
                l1 = (teacher_tokens - student_tokens).abs().mean(-1)
                global_term += l1[0]
                local_term += l1[1:].sum()
            expected_global.append(global_term)
            expected_local.append(local_term / n)
    torch.testing.assert_close(losses["ccmd_global"], torch.stack(expected_global).mean())
    torch.testing.assert_close(losses["ccmd_local"], torch.stack(expected_local).mean())


def test_cached_all_atom_teacher_trains_like_the_live_one(embedded_qm9, tmp_path):
    """CCMD + D&D + task from a PaiNN teacher with and without the teacher cache: equal logged losses and weights;
    the cache keeps the global token and the token atoms only."""
    train, validation = embedded_qm9["train"].select(range(12)), embedded_qm9["validation"].select(range(6))

    def build():
        teacher = teacher_model()
        torch.manual_seed(1)
        # LayerNorm: the cache is written in batches of another size than training's, which changes a PaiNN's
        # outputs in the last bits (BLAS blocking); BatchNorm's running variances would magnify that in evaluation.
        student_config = GINConfig.from_preset("tiny", norm="layer", **label_statistics(train, ["gap"]))
        student = GINForMolecularPropertyPrediction(student_config)
        objectives = {
            "task": TaskObjective(),
            "ccmd": CCMDObjective(teacher.config, student_config),
            "dnd": DenoiseAndDistillObjective(teacher.config, student_config),
        }
        model = DistillationModel(student, objectives, {"task": 1.0, "ccmd": 0.5, "dnd": 0.1})
        return (
            model,
            teacher,
            PairedCollator(PointCloudFeaturizer(), MoleculeFeaturizer(graph_encodings=False), ["gap"]),
        )

    live, cached = live_and_cached_runs(tmp_path, build, train, validation)
    assert isinstance(cached.teacher_cache, TeacherCache)
    heavy_atoms = sum(Chem.MolFromSmiles(s).GetNumAtoms() for s in [*train["smiles"], *validation["smiles"]])
    tokens = cached.teacher_cache.padded(list(range(18)))["token_mask"].sum()
    assert int(tokens) == 18 + heavy_atoms
    assert_trained_alike(cached, live, "eval_ccmd_local")


def test_distill_cli_all_atom_teacher_to_gin_and_smiles_students(tmp_path):
    """distill.py: a PaiNN property teacher trained on QM9 with hydrogens, then distilled (teacher cache on) into a
    GIN by CCMD and into a SMILES Transformer by ST-KD's feature term plus CCMD through its atom tokens."""
    fast = {**FAST, "max_train_samples": 48, "max_test_samples": 24}
    gin = write_config(tmp_path, "ccmd_painn_to_gin_tiny.yaml", **fast)
    distill_run.main(["--config", str(gin)])
    run = tmp_path / "run"
    teacher = AutoModelForMolecularPropertyPrediction.from_pretrained(run / "teacher")
    assert isinstance(teacher, PaiNNForMolecularPropertyPrediction) and teacher.config.label_names == ["gap"]
    assert load_processor(run / "teacher").hydrogens
    assert isinstance(load_processor(run / "distill"), MoleculeFeaturizer)  # the student ships its own featurizer
    logs = [e for e in log_history(run / "distill") if "loss" in e]
    assert len(logs) == 3 and all({"task", "ccmd_global", "ccmd_local"} <= set(e) for e in logs)
    assert len(list((run / "teacher_cache").glob("teacher-*.arrow"))) == 1  # the training rows (no evaluation)
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())["metrics"]["test"]
    assert metrics["gap_count"] == 24

    smiles = write_config(
        tmp_path,
        "ccmd_painn_to_gin_tiny.yaml",
        name="smiles.yaml",
        stages=["distill"],
        teacher_name_or_path=str(run / "teacher"),
        student_config={"model_type": "molformer_smiles_transformer", "preset": "tiny"},
        objectives={"task": {}, "stkd_feature": {"pairs": [[1, 1]]}, "ccmd": {"layers": "last"}},
        **{**fast, "output_dir": str(tmp_path / "smiles")},
    )
    distill_run.main(["--config", str(smiles)])
    logs = [e for e in log_history(tmp_path / "smiles" / "distill") if "loss" in e]
    assert len(logs) == 3 and all({"task", "stkd_feature", "ccmd_global", "ccmd_local"} <= set(e) for e in logs)
