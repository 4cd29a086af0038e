"""`molformer-kd distill --config FILE` (and `distill.py --config FILE`): train 3D teachers and distill them into 2D
students, stage by stage.

    accelerate launch distill.py --config configs/ccmd_graphormer3d_to_graphormer2d_tiny.yaml

The task follows the dataset: molecular properties (`qm9_embedded`, `qm9`, .csv/.sdf files; graph and SMILES
models) or energies and forces (`qm9_xtb` or a QM9/xTB .npz; SchNet/PaiNN). The config (YAML or JSON) holds, flat,
the keys of `ModelArguments`, `DataArguments`, `DistillationArguments`, `StageArguments` (distillation/arguments.py)
and `transformers.TrainingArguments`. Stages (`teacher`, `denoise`, `distill`, `finetune`, `evaluate`) run in the
listed order and chain through `{output_dir}/{stage}`; each writes a `from_pretrained`-loadable model (safetensors +
featurizer/tokenizer). The whole run, the hub included when a push is asked for, is checked before anything is
loaded: a bad config is one line on stderr and exit code 2. `resume_from_checkpoint: latest` resumes each training
stage from its last complete checkpoint (a finished stage is skipped). With `push_to_hub: true` the last student is
pushed to `hub_model_id` with a model card.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING

import torch
from accelerate import PartialState

from . import __version__
from .distillation.checkpoints import RunFileError
from .distillation.config import ConfigError, config_reference, parse_config, read_config
from .distillation.stages import RunPlan, plan_run, run_stages
from .distillation.tasks import load_records

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import TrainingArguments

logger = logging.getLogger("molformer_kd.distill")

__all__ = ["build_parser", "card_info", "check_hub_access", "main", "plan_from_cli"]


def build_parser(prog: str = "distill.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="Config keys (docs/config.md has the same reference; any transformers.TrainingArguments key works "
        "too):\n\n" + config_reference(markdown=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="YAML or JSON file of distillation and training arguments")
    parser.add_argument("--version", action="version", version=f"molformer-kd {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "--verbose", action="store_true", help="debug logs and every progress bar (weight loading and saving too)"
    )
    loudness.add_argument("--quiet", action="store_true", help="warnings and errors only, no progress bars")
    return parser


def set_verbosity(verbose: bool, quiet: bool) -> None:
    """Default: info logs, the training progress bars and stage summaries, not a bar per weight load or save."""
    import transformers

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("molformer_kd").setLevel(level)
    # transformers at ERROR also turns off the Trainer's bars (TrainingArguments.disable_tqdm follows it).
    transformers.utils.logging.set_verbosity(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    if not verbose:
        transformers.utils.logging.disable_progress_bar()
    if quiet:
        import datasets

        datasets.disable_progress_bars()


def _is_connection_error(error: Exception) -> bool:
    """Refused, unresolvable or timed out. huggingface_hub's HTTP client changes between releases (requests, httpx,
    httpx2), so its transport errors are recognised by their class names rather than imported."""
    return isinstance(error, OSError) or any(cls.__name__ == "TransportError" for cls in type(error).__mro__)


def check_hub_access(training_args: TrainingArguments) -> None:
    """With `push_to_hub`, fail at start-up (not after hours of training) when the hub cannot take the push."""
    if not training_args.push_to_hub:
        return
    if not training_args.hub_model_id:
        raise ConfigError("push_to_hub needs hub_model_id (the repository to push the student to)")
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:
        raise ConfigError("push_to_hub: HF_HUB_OFFLINE is set; unset it or set push_to_hub: false")
    token = training_args.hub_token
    try:
        HfApi(endpoint=endpoint, token=token).whoami()
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise ConfigError(
                f"push_to_hub: the hub at {endpoint} rejected the token (set HF_TOKEN, `hf auth login`, or hub_token)"
            ) from error
        raise ConfigError(
            f"push_to_hub: the hub at {endpoint} answered {status}: {str(error).splitlines()[0]}"
        ) from error
    except Exception as error:
        if not _is_connection_error(error):
            raise
        raise ConfigError(f"push_to_hub: the hub at {endpoint} cannot be reached ({type(error).__name__})") from error


def plan_from_cli(argv: Sequence[str] | None = None, prog: str = "distill.py") -> RunPlan:
    """Parse the command line and the config and check the whole run (no data loaded yet)."""
    options = build_parser(prog).parse_args(argv)
    set_verbosity(options.verbose, options.quiet)
    args = parse_config(read_config(options.config))
    run = plan_run(args)
    check_hub_access(args.training)
    return run


def card_info(run: RunPlan, summaries: list[dict]) -> dict:
    """Model card fields from what the stages report."""
    info = {
        "data": run.data_args.dataset,
        "datasets": [run.data_args.dataset],
        "tags": ["molformer_kd", "distillation"],
    }
    for summary in summaries:
        if summary["stage"] == "distill":
            info["teacher"] = summary["teacher"]
            info["objective"] = json.dumps(summary["objectives"])
        if summary["stage"] == "evaluate":
            info["metrics"] = summary["metrics"]
            if "parity" in summary:  # true vs predicted: a property's first label, a potential's energies and forces
                info["parity"] = summary["parity"]
    info["training"] = " -> ".join(s["stage"] for s in summaries)
    if run.stage_args.hub_card_description:
        info["description"] = run.stage_args.hub_card_description
    return info


def push_last_student(run: RunPlan, summaries: list[dict]) -> None:
    from .hub import push_student_to_hub

    student_dir = next(
        (
            s.get("output_dir") or s.get("model")
            for s in reversed(summaries)
            if s["stage"] in ("finetune", "distill", "evaluate")
        ),
        None,
    )
    if student_dir is None:
        raise ConfigError("push_to_hub: this run wrote no student (add a distill, finetune or evaluate stage)")
    training_args = run.training_args
    commit = push_student_to_hub(
        student_dir,
        training_args.hub_model_id,
        card_info(run, summaries),
        token=training_args.hub_token,
        private=bool(training_args.hub_private_repo),
    )
    logger.info("pushed %s to %s (%s)", student_dir, training_args.hub_model_id, getattr(commit, "commit_url", commit))


def main(argv: Sequence[str] | None = None, prog: str = "distill.py") -> list[dict]:
    try:
        return _run(argv, prog)
    finally:
        # Left to interpreter exit, gloo's worker threads are destroyed while still joinable and a rank aborts
        # ("terminate called without an active exception") after every stage has finished, or after a clean error.
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run(argv: Sequence[str] | None, prog: str) -> list[dict]:
    try:
        run = plan_from_cli(argv, prog)
    except ValueError as error:  # a bad config: one clear line at start-up, no traceback
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
    logger.info("%s task, stages: %s", run.kind.name, " -> ".join(f"{s.name} ({s.output_dir})" for s in run.stages))
    state = PartialState()
    try:
        # The first process builds (and caches) the data; the others then read the cache instead of building it too.
        with state.main_process_first():
            records = load_records(run.data_args, run.kind)
    except ValueError as error:  # a missing column, no valid rows: what the user must fix in the data or config
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        summaries = run_stages(run, records)
        if run.training_args.push_to_hub and run.training_args.should_save:
            push_last_student(run, summaries)
    except RunFileError as error:  # a full disk or a permission problem: the path, not a C++ stream error
        print(f"{prog}: error: {error.strerror or error}", file=sys.stderr)
        sys.exit(1)
    state.wait_for_everyone()  # no rank tears the group down while another still uses it
    return summaries


if __name__ == "__main__":
    main(prog=os.path.basename(sys.argv[0]))
