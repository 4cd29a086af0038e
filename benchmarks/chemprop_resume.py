"""`chemprop train` (its own CLI, every setting as given) resumed from a Lightning checkpoint of an interrupted run.

Runs in chemprop's environment, not ours:

    .venv-chemprop/bin/python benchmarks/chemprop_resume.py --resume-from RUN/model_0/checkpoints/last.ckpt -- \\
        train --data-path train.csv val.csv test.csv ... --output-dir RUN

chemprop's CLI builds a `lightning.pytorch.Trainer` and calls `fit(model, train_loader, val_loader)` with no way to
pass Lightning's `ckpt_path`, and it saves `last.ckpt` after every epoch (`save_last=True`). This wrapper makes the
first `fit` of the process resume from that file (weights, optimizer and learning-rate scheduler, epoch and step
counters, and the state of the best-checkpoint and early-stopping callbacks), then hands the arguments after `--` to
chemprop's own `main`: the same model, data handling, defaults and best-validation pick as an uninterrupted
`chemprop train`. The data loaders' shuffling after a resume draws from a fresh generator, so a resumed run is not
bit-identical to an uninterrupted one. Without `--resume-from`, or when the file does not exist, it is `chemprop
train` as is. benchmarks/chemprop_qm9.py runs it when it finds an unfinished run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def split_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This wrapper's options (before `--`) and chemprop's arguments (after it)."""
    if "--" not in argv:
        raise SystemExit("usage: chemprop_resume.py [--resume-from LAST.ckpt] -- train ARGS (chemprop's arguments)")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resume-from", type=Path, default=None, help="Lightning checkpoint of the unfinished run")
    return parser.parse_args(argv[:cut]), argv[cut + 1 :]


def resume_first_fit(checkpoint: Path) -> None:
    """Make the next `Trainer.fit` of this process start from `checkpoint` (later calls are Lightning's own)."""
    from lightning.pytorch import Trainer

    fit = Trainer.fit

    def fit_from_checkpoint(self, *args, **kwargs):
        Trainer.fit = fit
        kwargs.setdefault("ckpt_path", str(checkpoint))
        # The checkpoint holds Lightning's hyperparameter dict, which torch's weights-only loading refuses; the file
        # is the one this run wrote itself.
        kwargs.setdefault("weights_only", False)
        return fit(self, *args, **kwargs)

    Trainer.fit = fit_from_checkpoint


def main(argv: list[str] | None = None) -> int:
    options, chemprop_argv = split_arguments(sys.argv[1:] if argv is None else argv)
    if options.resume_from is not None and options.resume_from.is_file():
        resume_first_fit(options.resume_from)
    from chemprop.cli.main import main as chemprop_main

    sys.argv = ["chemprop", *chemprop_argv]
    return chemprop_main()


if __name__ == "__main__":
    sys.exit(main())
