"""Throughput of chemprop v2's default D-MPNN on raw SMILES (parse + featurize + forward), untrained weights.

Runs inside a separate environment that has chemprop (it pins its own dependencies), e.g.

    python3 -m venv /tmp/chemprop_env
    /tmp/chemprop_env/bin/pip install torch==2.13.0   # the CPU wheel first, so chemprop does not pull a CUDA build
    /tmp/chemprop_env/bin/pip install chemprop
    /tmp/chemprop_env/bin/python scripts/chemprop_throughput.py --smiles-file smiles.txt --batch-size 128

The model is what `chemprop train` builds by default: bond message passing (d_h=300, depth 3), norm aggregation,
a 1-hidden-layer regression FFN. Prints one JSON object: molecules, seconds, molecules_per_s, versions.
"""

import argparse
import json
import time

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smiles-file", required=True, help="one SMILES per line")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=64, help="molecules run once before timing")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import chemprop
    from chemprop import data, featurizers, models, nn

    with open(args.smiles_file) as handle:
        smiles = [line.strip() for line in handle if line.strip()]

    torch.manual_seed(0)
    model = models.MPNN(nn.BondMessagePassing(), nn.NormAggregation(), nn.RegressionFFN()).eval()
    featurizer = featurizers.SimpleMoleculeMolGraphFeaturizer()

    def predict(batch_smiles):
        # Parsing and featurization are part of the measured work, as for the molformer_kd pipelines.
        points = [data.MoleculeDatapoint.from_smi(s) for s in batch_smiles]
        dataset = data.MoleculeDataset(points, featurizer)
        loader = data.build_dataloader(dataset, batch_size=args.batch_size, num_workers=0, shuffle=False)
        outputs = []
        with torch.inference_mode():
            for batch in loader:
                outputs.append(model(batch.bmg, batch.V_d, batch.X_d))
        return torch.cat(outputs)

    predict(smiles[: args.warmup])
    start = time.perf_counter()
    predictions = predict(smiles)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "molecules": len(smiles),
                "predictions": int(predictions.shape[0]),
                "seconds": seconds,
                "molecules_per_s": len(smiles) / seconds,
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "chemprop": chemprop.__version__,
                "torch": torch.__version__,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    )


if __name__ == "__main__":
    main()
