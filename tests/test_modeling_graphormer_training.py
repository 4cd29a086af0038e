"""A tiny 2D Graphormer can fit 64 real QM9 molecules: the training MAE on the HOMO-LUMO gap falls several times
below the MAE of predicting the mean in 300 full-batch steps (the 3D view shares every layer but the structural
encodings, which have their own tests)."""

import pytest
import torch

from molformer_kd.data.qm9 import load_embedded_qm9
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction
from molformer_kd.tokenization.collators import GraphCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer


@pytest.fixture
def single_thread():
    """Tiny tensors: one intra-op thread avoids synchronization overhead (much slower on a loaded 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def overfit_tiny_graphormer(seed=0, cache_dir=None, steps=300):
    """Train a tiny 2D Graphormer on 64 QM9 gaps, full batch; returns (initial, mean_predictor, final) training MAEs.

    scripts/measure_test_spread.py calls this with many seeds and thread counts to size the test's thresholds."""
    torch.manual_seed(seed)
    rows = load_embedded_qm9(cache_dir=cache_dir)["train"].select(range(64)).to_list()
    batch = GraphCollator(MoleculeFeaturizer(), label_columns=["gap"])(rows)
    gap = batch.pop("labels")
    config = GraphormerConfig.from_preset(
        "tiny",
        num_labels=1,
        label_mean=[gap.mean().item()],
        label_std=[gap.std().item()],
    )
    model = GraphormerForMolecularPropertyPrediction(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    # The L1 loss has constant-size gradients, so the step size must decay for the fit to settle; a one-cycle schedule
    # (short warm-up, then annealing) spread less over seeds than the cosine annealing this test used before (min
    # over seeds 0-9 of mean_predictor/final, 1 thread, no clipping: 8.4 vs 3.8 with cosine; 5.4 with cosine at lr
    # 1e-3, 5.7 with cosine and gradient clipping, 6.0 with cosine at width 64, 2.3 one-cycle at lr 1e-2).
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)

    def mae():
        model.eval()
        with torch.no_grad():
            error = (model(**batch).logits - gap).abs().mean().item()
        model.train()
        return error

    initial = mae()
    mean_predictor = (gap - gap.mean()).abs().mean().item()
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=gap).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # cuts the low tail of the drop (see MIN_DROP)
        optimizer.step()
        schedule.step()
    return initial, mean_predictor, mae()


# The drop is chaotic in the seed and the thread count (any rounding difference sends training elsewhere), so the
# threshold comes from its measured spread, not from seed 0 alone. `scripts/measure_test_spread.py --tests graphormer`
# (transformers 5.24.0, torch 2.13.0 CPU), mean_predictor/final over seeds 0-39 at 1 thread and 0-9 at 2 threads:
# min 6.2 (seed 31, 1 thread), geometric mean 14.0, sd of log10 0.15, max 35; seed 0: 11.0 (1 thread), 9.7 (2).
# A 10x bar sits 1 sd below the mean (9 of these 50 runs miss it, seed 0 at 2 threads among them); 3x is 2x below the
# worst run and 4.4 sd below the mean, and still far from what a model that learns nothing gets (1x). Without the
# gradient clipping, one-cycle runs were as typical but had a low tail: seed 30 ended at 2.2x (min of 40: 2.2).
# initial ~= mean_predictor here (the untrained head predicts the label mean), so both must drop 3x.
MIN_DROP = 3


def test_tiny_graphormer_overfits_64_qm9_molecules(tmp_path, single_thread):
    initial, mean_predictor, final = overfit_tiny_graphormer(seed=0, cache_dir=tmp_path)
    assert final < mean_predictor / MIN_DROP and final < initial / MIN_DROP, (initial, mean_predictor, final)
