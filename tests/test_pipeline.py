"""The molecular-property-prediction / molecular-embedding pipelines against the model run on the collator's batch."""

import math

import numpy as np
import pytest
import torch
from fixtures_students import (
    LABEL_NAMES,
    save_tiny_gin_student,
    save_tiny_st_student,
    tiny_gin_student,
    tiny_st_student,
)
from transformers import pipeline

import molformer_kd  # noqa: F401  (registers the model families)
from molformer_kd.data.qm9 import read_embedded_qm9
from molformer_kd.hub import UnsafeCheckpointError
from molformer_kd.pipelines import (
    MolecularEmbeddingPipeline,
    MolecularPropertyPredictionPipeline,
    length_bucketed_batches,
)
from molformer_kd.tokenization.collators import GraphCollator
from molformer_kd.tokenization.featurization import GRAPH_ENCODING_KEYS, MoleculeFeaturizer
from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer

SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "C1CC1N", "OCC#N", "c1ccncc1", "CC[C@H](N)C(=O)O", "[NH4+].[Cl-]", "O"]
INVALID = ["C1CC", "not a smiles", "", "c1cccc1"]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_gin")
    save_tiny_gin_student(directory)
    return directory


def collated_outputs(model, smiles):
    featurizer = MoleculeFeaturizer()
    batch = GraphCollator()([featurizer.featurize(s) for s in smiles])
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"})


def as_matrix(results, names=LABEL_NAMES):
    return np.array([[result[name] for name in names] for result in results])


def test_predictions_equal_model_logits_on_collated_batch():
    model = tiny_gin_student()
    pipe = MolecularPropertyPredictionPipeline(model=model, feature_extractor=MoleculeFeaturizer(), device=-1)
    results = pipe(SMILES, batch_size=len(SMILES))
    expected = collated_outputs(model, SMILES).logits.numpy()
    assert [sorted(r) for r in results] == [sorted([*LABEL_NAMES, "error"])] * len(SMILES)
    assert all(r["error"] is None for r in results)
    np.testing.assert_allclose(as_matrix(results), expected, rtol=1e-6, atol=1e-6)
    # Batch size does not change a molecule's prediction (eval mode, padding masked).
    np.testing.assert_allclose(as_matrix(pipe(SMILES, batch_size=3)), expected, rtol=1e-5, atol=1e-5)
    single = pipe(SMILES[0])
    assert isinstance(single, dict)
    np.testing.assert_allclose([single[n] for n in LABEL_NAMES], expected[0], rtol=1e-5, atol=1e-5)


def test_smiles_transformer_predictions_equal_model_logits_on_the_tokenizer_batch(tmp_path):
    model = tiny_st_student()
    tokenizer = SmilesTokenizer()
    pipe = MolecularPropertyPredictionPipeline(model=model, tokenizer=tokenizer, device=-1)
    smiles = SMILES + ["C1CC"]  # the RDKit-free SMILES parser rejects the unclosed ring too
    results = pipe(smiles, batch_size=len(smiles))
    with torch.no_grad():
        expected = model(**tokenizer(SMILES, padding=True, return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(as_matrix(results[:-1]), expected, rtol=1e-5, atol=1e-5)
    assert "C1CC" in results[-1]["error"] and math.isnan(results[-1]["gap"])
    # From a directory: the saved tokenizer comes back with the model.
    save_tiny_st_student(tmp_path)
    for loaded in (
        pipeline("molecular-property-prediction", model=str(tmp_path), device=-1),
        MolecularPropertyPredictionPipeline.from_pretrained(tmp_path),
    ):
        assert isinstance(loaded.tokenizer, SmilesTokenizer) and loaded.feature_extractor is None
        np.testing.assert_allclose(as_matrix(loaded(SMILES, batch_size=3)), expected, rtol=1e-5, atol=1e-5)


def test_invalid_smiles_get_a_per_item_error_and_do_not_disturb_the_batch():
    model = tiny_gin_student()
    pipe = MolecularPropertyPredictionPipeline(model=model, feature_extractor=MoleculeFeaturizer(), device=-1)
    mixed = [SMILES[0], INVALID[0], SMILES[1], INVALID[1], INVALID[2], SMILES[2], INVALID[3], None]
    results = pipe.predict(mixed, batch_size=4)
    assert len(results) == len(mixed)
    valid_rows = [0, 2, 5]
    for row, (smiles, result) in enumerate(zip(mixed, results)):
        if row in valid_rows:
            assert result["error"] is None
        else:
            assert result["error"] and repr(smiles) in result["error"], result
            assert all(math.isnan(result[name]) for name in LABEL_NAMES)
    expected = collated_outputs(model, [mixed[i] for i in valid_rows]).logits.numpy()
    np.testing.assert_allclose(as_matrix([results[i] for i in valid_rows]), expected, rtol=1e-5, atol=1e-5)


def test_embedding_mode_returns_the_pooled_representation(student_dir):
    model = tiny_gin_student()
    expected = collated_outputs(model, SMILES).pooler_output.numpy()
    embed = pipeline("molecular-embedding", model=str(student_dir), device=-1)
    assert isinstance(embed, MolecularEmbeddingPipeline)
    results = embed(SMILES + ["C1CC"], batch_size=4)
    np.testing.assert_allclose(np.stack([r["embedding"] for r in results[:-1]]), expected, rtol=1e-5, atol=1e-5)
    assert results[-1]["embedding"] is None and "C1CC" in results[-1]["error"]
    predict = MolecularPropertyPredictionPipeline.from_pretrained(student_dir)
    np.testing.assert_allclose(predict.embed(SMILES), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="C1CC"):
        predict.embed(["CCO", "C1CC"])


def test_one_object_from_a_directory_loads_model_and_featurizer(student_dir):
    expected = collated_outputs(tiny_gin_student(), SMILES).logits.numpy()
    from_factory = pipeline("molecular-property-prediction", model=str(student_dir), device=-1)
    from_class = MolecularPropertyPredictionPipeline.from_pretrained(student_dir)
    for pipe in (from_factory, from_class):
        assert isinstance(pipe, MolecularPropertyPredictionPipeline)
        assert isinstance(pipe.feature_extractor, MoleculeFeaturizer) and pipe.tokenizer is None
        np.testing.assert_allclose(as_matrix(pipe(SMILES, batch_size=8)), expected, rtol=1e-5, atol=1e-5)
    # Featurizing in DataLoader worker processes gives the same predictions in the same order.
    workers = from_class(SMILES + INVALID, batch_size=2, num_workers=2)
    np.testing.assert_allclose(as_matrix(workers[: len(SMILES)]), expected, rtol=1e-5, atol=1e-5)
    assert all(r["error"] for r in workers[len(SMILES) :])


def test_multi_label_classification_outputs_probabilities():
    torch.manual_seed(0)
    model = tiny_gin_student(problem_type="multi_label_classification")
    pipe = MolecularPropertyPredictionPipeline(model=model, feature_extractor=MoleculeFeaturizer(), device=-1)
    logits = collated_outputs(model, SMILES).logits
    np.testing.assert_allclose(as_matrix(pipe(SMILES, batch_size=8)), torch.sigmoid(logits).numpy(), rtol=1e-5)


def test_pickle_only_checkpoint_is_refused(tmp_path):
    model = tiny_gin_student()
    model.config.save_pretrained(tmp_path)
    MoleculeFeaturizer().save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin"):
        MolecularPropertyPredictionPipeline.from_pretrained(tmp_path)
    with pytest.raises((UnsafeCheckpointError, ValueError), match="safetensors"):
        pipeline("molecular-property-prediction", model=str(tmp_path), device=-1)


def test_pipeline_needs_a_processor():
    with pytest.raises(ValueError, match="processor"):
        MolecularPropertyPredictionPipeline(model=tiny_gin_student(), device=-1)


# ---------------------------------------------------------------------------------------------------- screening speed


def test_length_bucketed_batches_sort_each_window_and_keep_every_position():
    smiles = ["C" * k for k in (5, 1, 9, 3, 7, 2, 8)] + [None]
    batches = list(length_bucketed_batches(smiles, batch_size=2, window=4))
    assert [len(batch) for batch in batches] == [2, 2, 2, 2]
    assert sorted(position for batch in batches for position, _ in batch) == list(range(len(smiles)))
    for window in (batches[:2], batches[2:]):
        lengths = [len(s) if s else 0 for batch in window for _, s in batch]
        assert lengths == sorted(lengths)
    assert {position for batch in batches[:2] for position, _ in batch} == {0, 1, 2, 3}


@pytest.mark.parametrize("student", ["gin", "smiles_transformer"])
def test_bucketed_batches_give_each_molecule_its_own_prediction_in_input_order(student):
    model = tiny_gin_student() if student == "gin" else tiny_st_student()
    processor = {"feature_extractor": MoleculeFeaturizer()} if student == "gin" else {"tokenizer": SmilesTokenizer()}
    pipe = MolecularPropertyPredictionPipeline(model=model, device=-1, **processor)
    # Lengths interleaved so that sorting moves every molecule, invalid ones among them.
    smiles = [SMILES[i % len(SMILES)] for i in (0, 4, 2, 6, 1, 5, 3)] + ["C1CC", "CCCCCCCCCCCCCCCCCCCCCCO", "c1cccc1"]
    one_at_a_time = [pipe(s) for s in smiles]
    for results in (pipe(smiles, batch_size=3), list(pipe((s for s in smiles), batch_size=3))):
        assert [r["error"] is None for r in results] == [r["error"] is None for r in one_at_a_time]
        assert [r["error"] for r in results] == [r["error"] for r in one_at_a_time]
        valid = [i for i, r in enumerate(one_at_a_time) if r["error"] is None]
        np.testing.assert_allclose(
            as_matrix([results[i] for i in valid]), as_matrix([one_at_a_time[i] for i in valid]), rtol=1e-5, atol=1e-6
        )


def test_gin_pipeline_skips_the_graphormer_encodings_and_predicts_the_same(student_dir):
    pipe = MolecularPropertyPredictionPipeline.from_pretrained(student_dir)
    assert MoleculeFeaturizer.from_pretrained(student_dir).graph_encodings  # as saved
    assert not pipe.feature_extractor.graph_encodings  # a GIN reads none of them
    batch = pipe.collate(pipe.preprocess_many(SMILES))
    assert not set(GRAPH_ENCODING_KEYS) & set(batch["inputs"])
    # The model on the full batch of the saved featurizer (encodings included) gives identical values.
    expected = collated_outputs(tiny_gin_student(), SMILES).logits.numpy()
    np.testing.assert_array_equal(as_matrix(pipe(SMILES, batch_size=len(SMILES))), expected)


def test_preprocess_many_keeps_each_failure_on_its_row():
    pipe = MolecularPropertyPredictionPipeline(
        model=tiny_gin_student(), feature_extractor=MoleculeFeaturizer(), device=-1
    )
    mixed = ["CCO", "C1CC", None, "c1ccccc1", "CXc"]
    items = pipe.preprocess_many(mixed)
    assert [item["error"] is None for item in items] == [True, False, False, True, False]
    for item, single in zip(items, map(pipe.preprocess, mixed)):
        assert item["error"] == single["error"]
        if single["features"] is not None:
            for key, value in single["features"].items():
                np.testing.assert_array_equal(item["features"][key], value)


def test_forward_runs_without_autograd_bookkeeping():
    model = tiny_gin_student()
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append(torch.is_inference_mode_enabled()))
    MolecularPropertyPredictionPipeline(model=model, feature_extractor=MoleculeFeaturizer(), device=-1)(SMILES)
    assert seen and all(seen)


def test_int8_quantization_keeps_predictions_close_on_qm9(student_dir):
    _, records = read_embedded_qm9()
    smiles = [record["smiles"] for record in records[:200]]
    exact = as_matrix(MolecularPropertyPredictionPipeline.from_pretrained(student_dir)(smiles, batch_size=64))
    quantized_pipe = MolecularPropertyPredictionPipeline.from_pretrained(student_dir, quantize="int8")
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in quantized_pipe.model.modules())
    quantized = as_matrix(quantized_pipe(smiles, batch_size=64))
    for label in range(len(LABEL_NAMES)):
        # Close relative to how much the predictions vary between molecules, and in the same order.
        spread = exact[:, label].std()
        assert np.median(np.abs(quantized[:, label] - exact[:, label])) < 0.1 * spread
        assert np.corrcoef(quantized[:, label], exact[:, label])[0, 1] > 0.99
    with pytest.raises(ValueError, match="quantize"):
        MolecularPropertyPredictionPipeline.from_pretrained(student_dir, quantize="int4")


def test_a_graphormer_needs_a_featurizer_with_graph_encodings():
    from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
    from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction

    model = GraphormerForMolecularPropertyPrediction(GraphormerConfig.from_preset("tiny", num_labels=1))
    with pytest.raises(ValueError, match="graph_encodings=False"):
        MolecularPropertyPredictionPipeline(
            model=model, feature_extractor=MoleculeFeaturizer(graph_encodings=False), device=-1
        )
    pipe = MolecularPropertyPredictionPipeline(model=model, feature_extractor=MoleculeFeaturizer(), device=-1)
    assert pipe.feature_extractor.graph_encodings and all(r["error"] is None for r in pipe(SMILES))


# ---------------------------------------------------------------------------------------------------- columns, devices

DOMAIN_CASES = [
    "CCO",
    "c1ccccc1Cl",
    "C1CC",
    "[NH4+]",
    "CC(=O)[O-].[Na+]",
    "[CH3]",
    "[H][H]",
    "[2H]C([2H])([2H])O",  # folded hydrogens: the domain parses this one again
    "[H]OC([H])([H])C",
    None,
    "O=C=O.O.N",
    "C" * 40,  # over the tiny ST's 32 atoms
]


def st_pipeline_with_domain():
    from molformer_kd.data.domain import DOMAIN_CONFIG_KEY, ApplicabilityDomain

    model = tiny_st_student()
    domain = ApplicabilityDomain.from_smiles(["CCO", "CC(C)N", "c1ccccc1O", "CC(=O)O"])
    setattr(model.config, DOMAIN_CONFIG_KEY, domain.to_dict())
    return MolecularPropertyPredictionPipeline(model=model, tokenizer=SmilesTokenizer(), device=-1)


def test_a_smiles_batch_is_encoded_whole_as_the_per_molecule_path_pads_it():
    pipe = st_pipeline_with_domain()
    assert pipe.encodes_batches
    whole = pipe.collate_smiles(DOMAIN_CASES)
    per_molecule = pipe.collate(pipe.preprocess_many(DOMAIN_CASES))
    assert whole["errors"] == per_molecule["errors"] and whole["valid"] == per_molecule["valid"]
    assert set(whole["inputs"]) == set(per_molecule["inputs"])
    for key, value in per_molecule["inputs"].items():
        torch.testing.assert_close(whole["inputs"][key], value, rtol=0, atol=0)
    # The domain verdicts from the front door's molecules are those of a second RDKit parse of each SMILES.
    assert whole["domain"] == per_molecule["domain"]
    assert [v is None for v in whole["domain"]] == [e is not None for e in whole["errors"]]
    assert not MolecularPropertyPredictionPipeline(
        model=tiny_gin_student(), feature_extractor=MoleculeFeaturizer(), device=-1
    ).encodes_batches


@pytest.mark.parametrize("student", ["gin", "smiles_transformer"])
@pytest.mark.parametrize("num_workers", [0, 1])
def test_predict_columns_hold_the_per_molecule_results(student, num_workers):
    pipe = (
        MolecularPropertyPredictionPipeline(model=tiny_gin_student(), feature_extractor=MoleculeFeaturizer(), device=-1)
        if student == "gin"
        else st_pipeline_with_domain()
    )
    smiles = DOMAIN_CASES + SMILES + INVALID
    rows = pipe(smiles, batch_size=3)
    columns = pipe.predict_columns(smiles, batch_size=3, num_workers=num_workers)
    assert columns.errors == [r["error"] for r in rows]
    np.testing.assert_allclose(columns.values, as_matrix(rows), rtol=1e-6, atol=1e-6)  # NaN where failed
    if pipe.applicability_domain is None:
        assert columns.in_domain is None and columns.domain_reason is None
    else:
        assert columns.in_domain == [r["in_domain"] for r in rows]
        assert columns.domain_reason == [r["domain_reason"] for r in rows]
        assert any(columns.in_domain) and False in columns.in_domain
    embeddings = pipe.predict_columns(smiles, batch_size=4, mode="embed")
    for row, result in zip(embeddings.values, pipe(smiles, batch_size=4, mode="embed")):
        np.testing.assert_allclose(row, 0 if result["embedding"] is None else result["embedding"], atol=1e-6)
    assert pipe.predict_columns(["C1CC"], mode="embed").values.shape == (1, 0)
    assert pipe.predict_columns([]).values.shape == (0, len(LABEL_NAMES))


def test_a_smiles_batch_that_fails_in_the_model_is_retried_one_unpadded_molecule_at_a_time():
    model, tokenizer = tiny_st_student(), SmilesTokenizer()
    pipe = MolecularPropertyPredictionPipeline(model=model, tokenizer=tokenizer, device=-1)
    expected = pipe(SMILES)
    forward, seen = model.forward, []

    def fails_on_four_atoms(**inputs):  # the model's own input checks refusing some molecules of the batch
        seen.append({key: value.clone() for key, value in inputs.items()})
        if (inputs["atom_mask"].sum(dim=1) == 4).any():
            raise ValueError("four atoms are not allowed")
        return forward(**inputs)

    model.forward = fails_on_four_atoms
    results = pipe(SMILES, batch_size=len(SMILES))
    assert [r["error"] is not None for r in results] == [s in ("C1CC1N", "OCC#N") for s in SMILES]
    assert "'OCC#N'" in results[2]["error"] and "four atoms are not allowed" in results[2]["error"]
    for got, want in zip(results, expected):
        if got["error"] is None:
            np.testing.assert_allclose([got[n] for n in LABEL_NAMES], [want[n] for n in LABEL_NAMES], rtol=1e-5)
    # Each retry is the molecule's own unpadded encoding.
    singles = {tuple(batch["input_ids"][0].tolist()): batch for batch in seen if len(batch["input_ids"]) == 1}
    for smiles in SMILES:
        alone = tokenizer(smiles, return_tensors="pt")
        batch = singles[tuple(alone["input_ids"][0].tolist())]
        for key in tokenizer.model_input_names:
            torch.testing.assert_close(batch[key], alone[key], rtol=0, atol=0)


def test_forward_moves_only_the_model_inputs(monkeypatch):
    """The base Pipeline's recursive device transfer walked every SMILES, error and per-molecule list of a batch:
    the pipeline's own forward moves the model inputs only (nothing to move on the CPU)."""
    pipe = MolecularPropertyPredictionPipeline(model=tiny_st_student(), tokenizer=SmilesTokenizer(), device=-1)
    expected = pipe(SMILES + INVALID)

    def walk(*args, **kwargs):
        raise AssertionError("the whole batch was walked")

    monkeypatch.setattr(pipe, "_ensure_tensor_on_device", walk)
    results = pipe(SMILES + INVALID)
    assert [r["error"] for r in results] == [r["error"] for r in expected]
    np.testing.assert_allclose(as_matrix(results), as_matrix(expected), rtol=1e-6)


def test_batches_come_from_pinned_memory_on_cuda_only(monkeypatch):
    from molformer_kd import pipelines

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pipelines.use_pinned_memory(torch.device("cuda"))
    assert pipelines.use_pinned_memory(torch.device("cuda:1"))
    assert not pipelines.use_pinned_memory(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not pipelines.use_pinned_memory(torch.device("cuda"))
    # On the CPU the loader pins nothing and the batch reaches the model as it was built.
    monkeypatch.undo()
    loaders = []

    class RecordingLoader(pipelines.DataLoader):
        def __init__(self, *args, **kwargs):
            loaders.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pipelines, "DataLoader", RecordingLoader)
    pipe = MolecularPropertyPredictionPipeline(model=tiny_st_student(), tokenizer=SmilesTokenizer(), device=-1)
    assert not pipe.pin_memory
    batch = pipe.collate_positioned(list(enumerate(SMILES)))  # what a DataLoader worker sends: numpy arrays
    assert all(isinstance(value, np.ndarray) for value in batch["inputs"].values())
    on_device = pipe._to_device(batch["inputs"])
    for key, value in batch["inputs"].items():
        assert on_device[key].device.type == "cpu" and on_device[key].data_ptr() == value.ctypes.data  # no copy
    assert all(r["error"] is None for r in pipe(SMILES))
    assert loaders and all(kwargs["pin_memory"] is False for kwargs in loaders)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("student", ["gin", "smiles_transformer"])
def test_cuda_predictions_from_pinned_batches_equal_the_cpu_ones(student):
    from molformer_kd import pipelines

    processor = {"feature_extractor": MoleculeFeaturizer()} if student == "gin" else {"tokenizer": SmilesTokenizer()}
    model = tiny_gin_student() if student == "gin" else tiny_st_student()
    cpu = MolecularPropertyPredictionPipeline(model=model, device=-1, **processor)
    expected = cpu.predict_columns(SMILES + INVALID, batch_size=3)
    cuda = MolecularPropertyPredictionPipeline(model=model, device=0, **processor)
    assert pipelines.use_pinned_memory(cuda.device)
    for num_workers in (0, 1):
        got = cuda.predict_columns(SMILES + INVALID, batch_size=3, num_workers=num_workers)
        assert got.errors == expected.errors
        np.testing.assert_allclose(got.values, expected.values, rtol=1e-4, atol=1e-5)
