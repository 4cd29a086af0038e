"""Train 3D teachers and distill them into 2D students, stage by stage.

    accelerate launch distill.py --config configs/ccmd_graphormer3d_to_graphormer2d_tiny.yaml

The task follows the dataset: molecular properties (`qm9_embedded`, `qm9`, .csv/.sdf files; graph and SMILES
models) or energies and forces (`qm9_xtb` or a QM9/xTB .npz; SchNet/PaiNN, configs/gnn_kd_*.yaml).
The config (YAML or JSON) holds, flat, the keys of `ModelArguments`, `DataArguments`, `DistillationArguments`,
`StageArguments` (molformer_kd/distillation/arguments.py) and `transformers.TrainingArguments`. Stages
(`teacher`, `denoise`, `distill`, `finetune`, `evaluate`) run in the listed order and chain through
`{output_dir}/{stage}`; each writes a `from_pretrained`-loadable model (safetensors + featurizer/tokenizer).
The whole run is validated before anything is loaded. `resume_from_checkpoint: latest` resumes each training stage
from its last checkpoint. With `push_to_hub: true` the last student is pushed to `hub_model_id` with a model card.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

import molformer_kd  # noqa: F401  (registers the model families with the Auto classes)
from molformer_kd.distillation.arguments import ARGUMENT_CLASSES
from molformer_kd.distillation.stages import load_records, plan_run, run_stage

logger = logging.getLogger("distill")


def read_config(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of argument names to values")  # noqa: TRY004 (a config error, reported at start-up like the others)
    return values


def parse_config(values: dict):
    """(model, data, distillation, stage, training arguments, raw TrainingArguments keys); unknown keys fail."""
    parser = HfArgumentParser((*ARGUMENT_CLASSES, TrainingArguments))
    try:
        parsed = parser.parse_dict(values, allow_extra_keys=False)
    except ValueError as error:
        raise ValueError(f"config: {error}") from error
    training_fields = set(TrainingArguments.__dataclass_fields__)
    raw_training = {key: value for key, value in values.items() if key in training_fields}
    return (*parsed, raw_training)


def card_info(run, summaries) -> dict:
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
            if "parity" in summary:  # property tasks: true vs predicted first label
                info["parity"] = summary["parity"]
    info["training"] = " -> ".join(s["stage"] for s in summaries)
    if run.stage_args.hub_card_description:
        info["description"] = run.stage_args.hub_card_description
    return info


def plan_from_cli(argv=None):
    """Parse the command line and the config and validate the whole run (no data loaded yet)."""
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--config", required=True, help="YAML or JSON file of distillation and training arguments")
    options = cli.parse_args(argv)
    model_args, data_args, distill_args, stage_args, training_args, raw_training = parse_config(
        read_config(options.config)
    )
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError("push_to_hub needs hub_model_id (the repository to push the student to)")
    return plan_run(model_args, data_args, distill_args, stage_args, training_args, raw_training)


def main(argv=None):
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        run = plan_from_cli(argv)
    except ValueError as error:  # a bad config: one clear line at start-up, no traceback
        print(f"distill.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    logger.info("%s task, stages: %s", run.kind.name, " -> ".join(f"{p.name} ({p.output_dir})" for p in run.stages))

    records = load_records(run.data_args, run.kind)
    summaries = [run_stage(run, plan, records) for plan in run.stages]

    training_args = run.training_args
    if training_args.push_to_hub and training_args.should_save:
        from molformer_kd.hub import push_student_to_hub

        student_dir = next(
            (
                s.get("output_dir") or s.get("model")
                for s in reversed(summaries)
                if s["stage"] in ("finetune", "distill", "evaluate")
            ),
            None,
        )
        if student_dir is None:
            raise ValueError("push_to_hub: this run wrote no student (add a distill, finetune or evaluate stage)")
        commit = push_student_to_hub(
            student_dir,
            training_args.hub_model_id,
            card_info(run, summaries),
            token=training_args.hub_token,
            private=bool(training_args.hub_private_repo),
        )
        logger.info(
            "pushed %s to %s (%s)", student_dir, training_args.hub_model_id, getattr(commit, "commit_url", commit)
        )
    return summaries


if __name__ == "__main__":
    main()
