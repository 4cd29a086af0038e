"""Argument dataclasses of `distill.py` (parsed with `HfArgumentParser` together with `TrainingArguments`).

One YAML/JSON file holds the keys of all of them, flat. Stages chain through `{output_dir}/{stage}`: the `distill`
stage reads its teacher from `{output_dir}/teacher` (or `/denoise` when the run has a denoise stage), `finetune`
starts from `{output_dir}/distill`, `evaluate` tests the last student written. Any of them can be pointed elsewhere
with the `*_name_or_path` fields.
"""

from dataclasses import dataclass, field

STAGES = ("teacher", "denoise", "distill", "finetune", "evaluate")
PROBLEM_TYPES = ("regression", "classification")
# `conformers.method` -> whether MMFF94 optimises the ETKDGv3 conformer.
CONFORMER_METHODS = {"etkdg+mmff": True, "etkdg": False}


@dataclass
class ModelArguments:
    teacher_config: dict | None = field(
        default=None,
        metadata={"help": "Config of a new teacher (stages teacher/denoise): {'model_type': ..., **config kwargs}."},
    )
    teacher_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Teacher checkpoint for the distill stage (default: this run's denoise or teacher stage)."},
    )
    student_config: dict | None = field(
        default=None,
        metadata={"help": "Config of a new student (distill stage): {'model_type': ..., **config kwargs}."},
    )
    student_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Student checkpoint to start from (distill: instead of student_config; finetune: default "
            "{output_dir}/distill)."
        },
    )


@dataclass
class DataArguments:
    dataset: str = field(
        default="qm9_embedded",
        metadata={
            "help": "'qm9_embedded' (ships with the package), 'qm9' (qm9pack), a downstream set ('freesolv', "
            "'solubility', 'b3db_regression', 'b3db_classification'; scaffold split), a .csv/.sdf path, or 'qm9_xtb' / "
            "a QM9-xTB .npz path (energies and forces)."
        },
    )
    validation_file: str | None = field(
        default=None,
        metadata={
            "help": "With a .csv/.sdf `dataset`: a file of the same kind holding the validation rows (then "
            "`dataset` holds the training rows only)."
        },
    )
    test_file: str | None = field(
        default=None, metadata={"help": "With a .csv/.sdf `dataset`: a file of the same kind holding the test rows."}
    )
    smiles_column: str = field(default="smiles", metadata={"help": "CSV/TSV column holding the SMILES."})
    id_column: str | None = field(
        default=None,
        metadata={
            "help": "CSV/TSV column naming each molecule (its `mol_id`, shown in predictions and errors); "
            "default: `<file>:<line>`."
        },
    )
    label_columns: list[str] = field(default_factory=lambda: ["gap"], metadata={"help": "Label columns to learn."})
    split: dict | None = field(
        default=None,
        metadata={
            "help": "A new split of all the dataset's rows: {kind: random, seed: 0, sizes: [20000, 2000, 5000]} "
            "(counts below the total draw a seeded subset; fractions work too; `unlabeled: N` or `rest` adds N "
            "more training rows without their labels, for label-free objectives such as `prediction`), {kind: "
            "scaffold, sizes: [0.8, 0.1, 0.1]}, {kind: column, column: split} (train/validation/test named per "
            "row) or {kind: ids, train: FILE, validation: FILE, test: FILE} (mol_ids or SMILES, one a line). "
            "Default: the "
            "dataset's own split (files without one: random 80/10/10 with split_seed)."
        },
    )
    conformers: dict | None = field(
        default=None,
        metadata={
            "help": "Generate 3D coordinates for rows without them (SMILES-only data for a 3D teacher): "
            "{method: etkdg+mmff} or {method: etkdg}, optional seed. One conformer per molecule, cached; "
            "molecules without one are dropped and counted in the log."
        },
    )
    problem_type: str = field(
        default="regression",
        metadata={
            "help": "'regression' (normalized targets, MAE/RMSE) or 'classification' (binary: labels 0/1 or NaN, one "
            "sigmoid output per label column; ROC-AUC, accuracy, log loss)."
        },
    )
    split_seed: int = field(
        default=0, metadata={"help": "Seed of the random split of files without splits and of the max_*_samples draws."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep a seeded random N of the training rows (seed: split_seed)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep a seeded random N of the validation rows (seed: split_seed)."}
    )
    max_test_samples: int | None = field(
        default=None, metadata={"help": "Keep a seeded random N of the test rows (seed: split_seed)."}
    )
    multi_hop_max_dist: int = field(default=5, metadata={"help": "Graph featurizer: bonds kept per shortest path."})
    max_spatial: int = field(default=20, metadata={"help": "Graph featurizer: cap of the shortest-path distance."})

    def __post_init__(self) -> None:
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type {self.problem_type!r}: use one of {list(PROBLEM_TYPES)}")


@dataclass
class DistillationArguments:
    objectives: dict = field(
        default_factory=dict,
        metadata={
            "help": "Objectives of the distill stage: {name: {'weight': w, **options}}, e.g. "
            "{'task': {}, 'ccmd': {'layers': 'all', 'variant': 'coordinated'}}."
        },
    )
    initial_stage_epochs: float = field(
        default=0.0, metadata={"help": "ST-KD initial stage: epochs trained with initial_stage_weights."}
    )
    initial_stage_weights: dict = field(
        default_factory=dict,
        metadata={
            "help": "Objective weights of the initial stage, e.g. {'task': 0, 'stkd_feature': 1, 'stkd_attention': 4}."
        },
    )
    noise_sigma: float = field(default=0.04, metadata={"help": "D&D stage 1 coordinate noise (Angstrom)."})
    teacher_cache: bool = field(
        default=False,
        metadata={
            "help": "Distill stage: compute the frozen teacher's outputs (the hidden states / attentions the "
            "objectives read) once per dataset and reuse them every epoch, so a distillation epoch costs about one "
            "student epoch. Disk (memory-mapped, float32) per molecule of T tokens: 4*(L+1)*T*D bytes of hidden "
            "states (all of QM9 with the paper teacher: ~56 GB) plus 4*L*H*T^2 of attentions for ST-KD. Energy/force "
            "distillation caches the KD-GNN objectives' per-atom teacher targets instead: 4*N*(their widths) bytes "
            "per molecule of N atoms."
        },
    )
    teacher_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the teacher caches (default {output_dir}/teacher_cache); files are named by a hash of "
            "the teacher's weights, the rows and the outputs, so runs with the same teacher and data reuse them."
        },
    )


@dataclass
class StageArguments:
    stages: list[str] = field(default_factory=lambda: ["distill"], metadata={"help": f"Stages to run, of {STAGES}."})
    stage_overrides: dict = field(
        default_factory=dict,
        metadata={
            "help": "Per-stage TrainingArguments overrides: {stage: {field: value}} (e.g. epochs, learning_rate)."
        },
    )
    evaluate_name_or_path: str | None = field(
        default=None, metadata={"help": "Model the evaluate stage tests (default: the last student this run wrote)."}
    )
    evaluate_split: str = field(default="test", metadata={"help": "Split the evaluate stage reports on."})
    hub_card_description: str | None = field(
        default=None, metadata={"help": "Free text for the pushed student's model card."}
    )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, DistillationArguments, StageArguments)
