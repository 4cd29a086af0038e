import os

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (the suite must pass on any machine and any day); set
# HYPOTHESIS_PROFILE=explore to draw new random examples while hunting for bugs.
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny test models gain nothing from intra-op threads; one thread keeps runs fast and deterministic.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def embedded_qm9(tmp_path_factory):
    """The embedded QM9 set (train / validation / test), loaded once per session into a temporary cache."""
    from molformer_kd.data import load_embedded_qm9

    return load_embedded_qm9(cache_dir=tmp_path_factory.mktemp("embedded_qm9"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
