"""The tokenization package's public names stay importable from it after its modules were reorganised (import
cycles, here and everywhere in the package, are checked by test_package_structure.py)."""

import molformer_kd.tokenization


def test_public_names_stay_importable_from_the_package():
    for name in molformer_kd.tokenization.__all__:
        assert getattr(molformer_kd.tokenization, name) is not None, name
    for name in (
        "GraphCollator",
        "PairedCollator",
        "MoleculeFeaturizer",
        "SmilesTokenizer",
        "StBaseTokenizer",
        "load_processor",
        "parse_smiles",
        "register_tokenizers",
        "register_featurizer",
        "smiles_to_mol",
    ):
        assert name in molformer_kd.tokenization.__all__
