"""Processor files are not trusted blindly: settings are type- and bounds-checked, unknown keys refused, and the
processor is checked against the model config it serves, each with a one-line error naming the file and the key."""

import json

import pytest
from fixtures_students import save_tiny_gin_student, save_tiny_st_student, tiny_gin_student
from transformers import AutoFeatureExtractor

import molformer_kd  # noqa: F401  (registers the model families and processors)
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.configuration_smiles_transformer import SmilesTransformerConfig
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction
from molformer_kd.pipelines import MolecularPropertyPredictionPipeline
from molformer_kd.tokenization import MoleculeFeaturizer, SmilesTokenizer, StBaseTokenizer, load_processor


def _edit_json(path, **changes):
    settings = json.loads(path.read_text())
    settings.update(changes)
    path.write_text(json.dumps(settings))


def _one_line_error(call, *words):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("multi_hop_max_dist", 1_000_000, "must lie in [1, 64]"),
        ("max_spatial", 0, "must lie in [1, 1024]"),
        ("max_spatial", 20.5, "must be an integer"),
        ("use_3d", "no", "must be true or false"),
        ("feature_scheme", "dgl", "must be one of ['ogb']"),
        ("max_atoms", 10**9, "must lie in [1, 4096]"),
        ("max_atom", 100, "unknown setting"),
    ],
)
def test_bad_featurizer_settings_name_the_file_and_key(tmp_path, key, value, problem):
    MoleculeFeaturizer().save_pretrained(tmp_path)
    _edit_json(tmp_path / "preprocessor_config.json", **{key: value})
    source = f"{tmp_path}/preprocessor_config.json"
    _one_line_error(lambda: MoleculeFeaturizer.from_pretrained(tmp_path), source, repr(key), problem)
    _one_line_error(lambda: load_processor(tmp_path), source, repr(key), problem)
    _one_line_error(lambda: AutoFeatureExtractor.from_pretrained(tmp_path), repr(key), problem)


def test_featurizer_settings_are_checked_when_built_too():
    _one_line_error(lambda: MoleculeFeaturizer(use_3d=1), "'use_3d'", "true or false")
    _one_line_error(lambda: MoleculeFeaturizer(max_atoms=4096, multi_hop_max_dist=64), "GiB of edge_input")
    assert MoleculeFeaturizer(max_atoms=100).max_atoms == 100


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("max_atoms", "many", "must be an integer"),
        ("max_atoms", 0, "must lie in [1, 4096]"),
        ("do_lower_case", True, "unknown setting"),
    ],
)
def test_bad_tokenizer_settings_name_the_file_and_key(tmp_path, key, value, problem):
    SmilesTokenizer().save_pretrained(tmp_path)
    _edit_json(tmp_path / "tokenizer_config.json", **{key: value})
    source = f"{tmp_path}/tokenizer_config.json"
    _one_line_error(lambda: SmilesTokenizer.from_pretrained(tmp_path), source, repr(key), problem)
    _one_line_error(lambda: load_processor(tmp_path), source, repr(key), problem)


def test_tokenizer_max_atoms_round_trips(tmp_path):
    StBaseTokenizer(max_atoms=40).save_pretrained(tmp_path)
    assert load_processor(tmp_path).max_atoms == 40


def _graphormer_checkpoint(directory, featurizer, **config):
    GraphormerConfig.from_preset("tiny", **config).save_pretrained(directory)
    featurizer.save_pretrained(directory)


@pytest.mark.parametrize(
    "featurizer, config, words",
    [
        (MoleculeFeaturizer(max_spatial=10), {}, ["max_spatial = 10", "max_spatial = 20"]),
        (MoleculeFeaturizer(multi_hop_max_dist=3), {}, ["multi_hop_max_dist = 3", "multi_hop_max_dist = 5"]),
        (MoleculeFeaturizer(), {"geometry": "3d"}, ["use_3d = False", "geometry = '3d'"]),
        (MoleculeFeaturizer(use_3d=True), {}, ["use_3d = True", "geometry = '2d'"]),
    ],
)
def test_featurizer_must_match_the_graphormer_config(tmp_path, featurizer, config, words):
    _graphormer_checkpoint(tmp_path, featurizer, **config)
    _one_line_error(lambda: load_processor(tmp_path), f"{tmp_path}/preprocessor_config.json", *words)


def test_matching_processors_load(tmp_path):
    _graphormer_checkpoint(tmp_path / "graphormer", MoleculeFeaturizer())
    assert isinstance(load_processor(tmp_path / "graphormer"), MoleculeFeaturizer)
    _graphormer_checkpoint(tmp_path / "teacher", MoleculeFeaturizer(use_3d=True), geometry="3d")
    assert load_processor(tmp_path / "teacher").use_3d
    save_tiny_gin_student(tmp_path / "gin")
    assert isinstance(load_processor(tmp_path / "gin"), MoleculeFeaturizer)
    save_tiny_st_student(tmp_path / "st")
    assert isinstance(load_processor(tmp_path / "st"), SmilesTokenizer)


@pytest.mark.parametrize(
    "tokenizer, config, words",
    [
        (SmilesTokenizer(), {"vocab_size": 20}, ["39 tokens", "vocab_size = 20"]),
        (StBaseTokenizer(), {}, ["StBaseTokenizer", "'st_kd' reads SmilesTokenizer"]),
        (SmilesTokenizer(), {"pad_token_id": 3}, ["pad_token_id = 3"]),
    ],
)
def test_tokenizer_must_match_the_smiles_transformer_config(tmp_path, tokenizer, config, words):
    SmilesTransformerConfig.from_preset("tiny", **config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    _one_line_error(lambda: load_processor(tmp_path), f"{tmp_path}/tokenizer_config.json", *words)


def test_pipeline_refuses_a_processor_that_does_not_match_its_model():
    model = tiny_gin_student()
    assert MolecularPropertyPredictionPipeline(model=model, feature_extractor=MoleculeFeaturizer(max_spatial=3))
    graphormer = GraphormerForMolecularPropertyPrediction(GraphormerConfig.from_preset("tiny", num_labels=1))
    mismatched = MoleculeFeaturizer(max_spatial=3)
    _one_line_error(
        lambda: MolecularPropertyPredictionPipeline(model=graphormer, feature_extractor=mismatched),
        "MoleculeFeaturizer",
        "max_spatial = 3",
    )
