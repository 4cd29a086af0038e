"""Reading and checking a `distill` config: every value's type and range, before any data or model is loaded.

A config file (YAML or JSON) holds, flat, the keys of the argument dataclasses (`arguments.ARGUMENT_CLASSES`) and of
`transformers.TrainingArguments`; `stage_overrides` holds TrainingArguments keys per stage. `HfArgumentParser`
builds the dataclasses but checks neither types nor ranges (a learning rate of "1e-3" or -1 would only fail deep in
the optimizer, after earlier stages trained), so every value is checked here first against the field's type hint
and the ranges below. Every problem is a `ConfigError` (a `ValueError`) whose one-line message names the key.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from transformers import HfArgumentParser, TrainingArguments

from ..data.splits import SPLIT_KINDS, SPLIT_NAMES
from .arguments import ARGUMENT_CLASSES, CONFORMER_METHODS, STAGES

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["ConfigError", "RunArguments", "check_training_values", "parse_config", "read_config"]


class ConfigError(ValueError):
    """A bad config value, found at start-up; the message names the key (and the file where one was read)."""


@dataclasses.dataclass
class RunArguments:
    model: object
    data: object
    distill: object
    stage: object
    training: TrainingArguments
    raw_training: dict  # the TrainingArguments keys of the config file, the base of every stage's arguments


def read_config(path: str | os.PathLike) -> dict:
    """The mapping in a YAML or JSON config file; a missing file or a syntax error is one line naming the place."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error}") from error
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} line {error.lineno}: JSON syntax error: {error.msg}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r}{where}: YAML syntax error: {problem}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of argument names to values")
    return values


# ---------------------------------------------------------------------------------------------- types


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (typing.Any,)
        return f"a list of {_describe(item).removeprefix('a ').removeprefix('an ')}s"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"one of {[member.value for member in annotation]}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}.get(
        annotation if origin is None else origin, str(annotation)
    )


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a YAML/JSON `value` fits a dataclass field's type hint (ints count as numbers, bools do not)."""
    if annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        args = typing.get_args(annotation)
        return isinstance(value, list) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in {member.value for member in annotation}
    return True  # a type no config file can spell (callables, objects): left to the dataclass


# ---------------------------------------------------------------------------------------------- ranges


def _positive(value: float) -> bool:
    return value > 0


def _at_least(bound: float) -> Callable:
    return lambda value: value >= bound


def _between(low: float, high: float) -> Callable:
    return lambda value: low <= value <= high


# key -> (check, what it must be). None always passes (the field's default meaning).
RANGES: dict[str, tuple[Callable, str]] = {
    "learning_rate": (_positive, "> 0"),
    "per_device_train_batch_size": (_at_least(1), ">= 1"),
    "per_device_eval_batch_size": (_at_least(1), ">= 1"),
    "gradient_accumulation_steps": (_at_least(1), ">= 1"),
    "num_train_epochs": (_positive, "> 0"),
    "max_steps": (lambda v: v == -1 or v > 0, "-1 (use num_train_epochs) or > 0"),
    "weight_decay": (_at_least(0), ">= 0"),
    "warmup_steps": (_at_least(0), ">= 0"),
    "max_grad_norm": (_at_least(0), ">= 0"),
    "adam_beta1": (_between(0, 1), "in [0, 1]"),
    "adam_beta2": (_between(0, 1), "in [0, 1]"),
    "adam_epsilon": (_positive, "> 0"),
    "logging_steps": (_positive, "> 0"),
    "save_steps": (_positive, "> 0"),
    "eval_steps": (_positive, "> 0"),
    "save_total_limit": (_at_least(1), ">= 1"),
    "seed": (_at_least(0), ">= 0"),
    "data_seed": (_at_least(0), ">= 0"),
    "dataloader_num_workers": (_at_least(0), ">= 0"),
    "split_seed": (_at_least(0), ">= 0"),
    "max_train_samples": (_at_least(1), ">= 1"),
    "max_eval_samples": (_at_least(1), ">= 1"),
    "max_test_samples": (_at_least(1), ">= 1"),
    # The graph featurizer's tensors grow as N^2 x multi_hop_max_dist; Graphormer uses 5, its paper at most 20.
    "multi_hop_max_dist": (_between(1, 32), "in [1, 32]"),
    "max_spatial": (_between(1, 512), "in [1, 512]"),
    "noise_sigma": (_positive, "> 0 Angstrom"),
    "initial_stage_epochs": (_at_least(0), ">= 0"),
}


def _check_range(key: str, value: Any, where: str) -> None:
    if value is None or key not in RANGES:
        return
    check, rule = RANGES[key]
    if not check(value):
        raise ConfigError(f"{where}{key}: {value!r} is out of range; it must be {rule}")


def _field_types(classes: Iterable[type]) -> dict[str, object]:
    hints = {}
    for cls in classes:
        cls_hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.init:
                hints.setdefault(field.name, cls_hints.get(field.name, typing.Any))
    return hints


_ARGUMENT_TYPES = _field_types(ARGUMENT_CLASSES)
_TRAINING_TYPES = _field_types((TrainingArguments,))


def _check_values(values: dict, types_by_key: dict, where: str) -> None:
    for key, value in values.items():
        if key not in types_by_key:
            continue  # unknown keys are reported by the parser, with its list of valid ones
        annotation = types_by_key[key]
        if not _matches(value, annotation):
            hint = ""
            if isinstance(value, str) and typing.get_origin(annotation) is list:
                hint = f" (write [{value}] for a list of one)"
            raise ConfigError(f"{where}{key}: {value!r} is not {_describe(annotation)}{hint}")
        _check_range(key, value, where)


def check_training_values(values: dict, where: str = "") -> None:
    """Types and ranges of TrainingArguments keys (the config's own or a stage's overrides)."""
    _check_values({k: v for k, v in values.items() if k in _TRAINING_TYPES}, _TRAINING_TYPES, where)


def _check_weights(mapping: dict, key: str) -> None:
    for name, weight in mapping.items():
        if not _matches(weight, float) or weight < 0:
            raise ConfigError(f"{key}: weight of {name!r} is {weight!r}; it must be a number >= 0")


def _check_objectives(objectives: dict) -> None:
    for name, options in objectives.items():
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"objectives: {name!r} must map to its options (e.g. {{weight: 1.0}}), got {options!r}")
        if options and "weight" in options:
            _check_weights({name: options["weight"]}, "objectives")


def _check_stages(values: dict) -> None:
    stages = values.get("stages", ["distill"])
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ConfigError(f"stages: unknown stage(s) {unknown or stages}; stages are {list(STAGES)}")
    repeated = sorted({s for s in stages if stages.count(s) > 1})
    if repeated:
        raise ConfigError(f"stages: {repeated} listed more than once (each stage writes {{output_dir}}/{{stage}})")
    overrides = values.get("stage_overrides") or {}
    bad = sorted(set(overrides) - set(STAGES))
    if bad:
        raise ConfigError(f"stage_overrides for unknown stage(s) {bad}; stages are {list(STAGES)}")
    for stage, stage_values in overrides.items():
        if not isinstance(stage_values, dict):
            raise ConfigError(f"stage_overrides.{stage} must be a mapping of TrainingArguments keys to values")
        check_training_values(stage_values, f"stage_overrides.{stage}.")


_DATA_FILE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".sdf", ".sdf.gz")


def _check_file(key: str, path: str | os.PathLike) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"{key}: file {path!r} does not exist")


def _check_data(values: dict) -> None:
    from .tasks import dataset_names

    dataset = values.get("dataset", "qm9_embedded")
    is_file = dataset.lower().endswith((*_DATA_FILE_SUFFIXES, ".npz"))
    if is_file:
        _check_file("dataset", dataset)
    elif dataset not in dataset_names():
        raise ConfigError(
            f"dataset: {dataset!r} is not a dataset name ({', '.join(dataset_names())}) nor a "
            ".csv/.tsv/.sdf/.npz file path"
        )
    for key in ("validation_file", "test_file"):
        if values.get(key) is not None:
            if not (is_file and dataset.lower().endswith(_DATA_FILE_SUFFIXES)):
                raise ConfigError(f"{key}: only with a .csv/.tsv/.sdf dataset (the training rows), not {dataset!r}")
            _check_file(key, values[key])
    split = values.get("split")
    if split is not None:
        if split.get("kind") not in SPLIT_KINDS:
            raise ConfigError(f"split.kind: {split.get('kind')!r}; use one of {list(SPLIT_KINDS)}")
        sizes = split.get("sizes")
        if sizes is not None and not (
            isinstance(sizes, list) and len(sizes) == 3 and all(_matches(v, float) and v >= 0 for v in sizes)
        ):
            raise ConfigError(f"split.sizes: {sizes!r}; give three counts or fractions (train, validation, test)")
        unlabeled = split.get("unlabeled")
        if unlabeled is not None:
            if split["kind"] != "random":
                raise ConfigError(f"split.unlabeled: only with kind 'random', not {split['kind']!r}")
            if unlabeled != "rest" and not (_matches(unlabeled, int) and unlabeled >= 0):
                raise ConfigError(f"split.unlabeled: {unlabeled!r}; give a count of rows or 'rest'")
        if split["kind"] == "column" and not isinstance(split.get("column"), str):
            raise ConfigError("split: kind 'column' needs `column`, the name of the column holding each row's split")
        if split["kind"] == "ids":
            if not any(name in split for name in SPLIT_NAMES):
                raise ConfigError(f"split: kind 'ids' needs files for {list(SPLIT_NAMES)}")
            for name in SPLIT_NAMES:
                if name in split:
                    _check_file(f"split.{name}", split[name])
    conformers = values.get("conformers")
    if conformers is not None:
        unknown = sorted(set(conformers) - {"method", "seed", "num"})
        if unknown:
            raise ConfigError(f"conformers: unknown keys {unknown}; it takes method, seed, num")
        if conformers.get("method", "etkdg+mmff") not in CONFORMER_METHODS:
            raise ConfigError(f"conformers.method: {conformers['method']!r}; use one of {list(CONFORMER_METHODS)}")
        if conformers.get("num", 1) != 1:
            raise ConfigError(f"conformers.num: {conformers['num']!r}; one conformer per molecule is supported")


def _check_paths(values: dict) -> None:
    output_dir = values.get("output_dir")
    if isinstance(output_dir, str):
        path = Path(output_dir)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output_dir: {output_dir!r} is a file, not a folder")
        existing = next(p for p in (path, *path.absolute().parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"output_dir: no permission to write in {str(existing)!r}")


def parse_config(values: dict) -> RunArguments:
    """The run's argument dataclasses from a config mapping; ConfigError names the first bad key."""
    if "output_dir" not in values:
        raise ConfigError("output_dir: missing (the folder the stages write into, e.g. runs/my_run)")
    _check_values({k: v for k, v in values.items() if k in _ARGUMENT_TYPES}, _ARGUMENT_TYPES, "")
    check_training_values(values)
    _check_objectives(values.get("objectives") or {})
    _check_weights(values.get("initial_stage_weights") or {}, "initial_stage_weights")
    _check_stages(values)
    _check_data(values)
    _check_paths(values)
    parser = HfArgumentParser((*ARGUMENT_CLASSES, TrainingArguments))
    try:
        parsed = parser.parse_dict(values, allow_extra_keys=False)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"config: {str(error).splitlines()[0]}") from error
    raw_training = {key: value for key, value in values.items() if key in _TRAINING_TYPES}
    return RunArguments(*parsed, raw_training=raw_training)


# ---------------------------------------------------------------------------------------------- reference


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    return json.dumps(value) if value is not None else "null"


def _type_text(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def config_reference(markdown: bool = True) -> str:
    """Every key of a `distill` config with its type, default and meaning, from the argument dataclasses
    (`docs/config.md` is this text; `distill.py --help` prints the plain form)."""
    from .arguments import ARGUMENT_CLASSES

    lines = []
    if markdown:
        lines += [
            "# `distill` config reference",
            "",
            "Generated from `molformer_kd/distillation/arguments.py` by "
            "`python -m molformer_kd.distillation.config > docs/config.md` (a test keeps it in sync).",
            "",
            "A config file (YAML or JSON) holds these keys, flat, plus any key of `transformers.TrainingArguments` "
            "(`learning_rate`, `per_device_train_batch_size`, `num_train_epochs` / `max_steps`, `eval_strategy`, "
            "`save_strategy`, `load_best_model_at_end`, `metric_for_best_model`, `seed`, `resume_from_checkpoint`, "
            "`push_to_hub`, `hub_model_id`, ...). `stage_overrides` sets TrainingArguments keys for one stage. "
            "Every value is checked at start-up (type and range); a bad one stops the run with one line and exit "
            "code 2.",
            "",
            "`torch_compile: true` compiles the trained model for dynamic shapes (batches are padded to their "
            "widest molecule): a direct-force PaiNN trains about 1.7x faster per step on CPU after about two "
            "minutes of compiling (`benchmarks/results/compile_training.md`). Models trained on -dE/dx forces "
            "(SchNet, PaiNN with `direct_forces: false`) cannot train compiled and are refused.",
            "",
        ]
    for cls in ARGUMENT_CLASSES:
        hints = typing.get_type_hints(cls)
        if markdown:
            lines += [f"## {cls.__name__}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        else:
            lines += [f"{cls.__name__}:"]
        for field in dataclasses.fields(cls):
            help_text = field.metadata.get("help", "").replace("|", "/")
            type_text, default = _type_text(hints[field.name]), _default_text(field)
            if markdown:
                type_text = type_text.replace(" | ", " or ")  # a "|" would end the table cell
                lines.append(f"| `{field.name}` | `{type_text}` | `{default}` | {help_text} |")
            else:
                lines.append(f"  {field.name} ({type_text}, default {default}): {help_text}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
