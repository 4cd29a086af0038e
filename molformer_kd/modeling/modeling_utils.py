"""The contract every model family implements, in one place: its batch keys, `return_dict`, input validation.

Every `...PreTrainedModel` of the package derives from `MolecularPreTrainedModel` and names its `input_modality`
("graph", "smiles" or "point_cloud"). Its `forward` then follows one pattern:

* keyword inputs: the batch keys it reads, then `output_attentions`, `output_hidden_states`, `return_dict`, then
  `**unused_batch_keys`, the other keys of the same modality's batch (DESIGN.md), which it ignores after
  `self.check_unused_batch_keys(unused_batch_keys)` (a key of no batch of that modality is a TypeError, so a typo
  never passes silently). Callers pass a collated batch as `model(**batch)` and never inspect signatures.
* `return_dict=None` means `config.return_dict` (default True): a `ModelOutput` of `outputs.py`, else its tuple.
* No host-device synchronisation: the value-range checks of the inputs (ids within the vocabularies, edges pointing
  at real atoms) are `check_input_values(config, batch)`, a classmethod that needs the config only, so collators run
  it on the batch they build on the CPU (`ValidatingCollator` below wraps any collator), before it reaches a device.
  `forward` runs the same checks itself only where reading the values is free (`values_readable_for_free`: plain
  CPU tensors in eager mode), so a direct call with bad CPU tensors still gets the clear error, and a GPU (or traced,
  compiled, meta) forward never reads a value. Shape and presence checks (host metadata) stay in `forward`.

`from_pretrained` also takes the name of a student that ships with the package (`qm9-gin`; `data/pretrained.py`).
"""

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from ..data.pretrained import resolve_pretrained_name
from ..tokenization.featurization import MoleculeFeaturizer
from .layers import ConstantBuffers

# The batches of DESIGN.md, by the modality a model reads. `labels` belongs to every batch: backbones ignore it.
# The graph batch is the featurizer's model inputs (DESIGN.md "Graph batch"), plus the labels of a training batch.
GRAPH_BATCH_KEYS = frozenset(MoleculeFeaturizer.model_input_names) | {"labels"}
SMILES_BATCH_KEYS = frozenset(
    {"input_ids", "attention_mask", "token_type_ids", "structure_positions", "atom_token_index", "atom_mask", "labels"}
)
POINT_CLOUD_BATCH_KEYS = frozenset({"atomic_numbers", "pos", "atom_mask", "labels"})
BATCH_KEYS = {"graph": GRAPH_BATCH_KEYS, "smiles": SMILES_BATCH_KEYS, "point_cloud": POINT_CLOUD_BATCH_KEYS}


def values_readable_for_free(tensor: torch.Tensor) -> bool:
    """Whether `forward` may read `tensor`'s values: a plain CPU tensor in eager mode. Reading a CUDA tensor
    synchronises with the device; a meta, fake or functional tensor (tensor subclasses, which report a device but
    hold no data) has no values; under tracing, scripting, compilation or export a read would be baked in or break
    the graph."""
    return (
        type(tensor) is torch.Tensor
        and tensor.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
        and not torch.onnx.is_in_onnx_export()
    )


def check_batch_for(config: PretrainedConfig, batch: Mapping[str, torch.Tensor]) -> None:
    """`check_input_values` of the family `config` belongs to (its registered backbone class), on `batch`: the
    collator-side check, with no model at hand."""
    model_class = AutoModel._model_mapping[type(config)]
    model_class.check_input_values(config, batch)


def check_model_inputs(inputs: Mapping[str, Any], config: Any, where: str = "batch") -> None:
    """Raise a ValueError naming `where` (the part of the batch) and the input if the collated CPU batch `inputs`
    holds values the model of `config` cannot read: ids outside its vocabularies, edges off the atoms, molecules too
    large for its position table (`MolecularPreTrainedModel.check_input_values`, from the config alone).

    A collator builds its batch on the CPU, where reading the values costs no device synchronisation; the model's
    `forward` then never reads them on a GPU (see the module docstring)."""
    tensors = {key: value for key, value in inputs.items() if isinstance(value, torch.Tensor)}
    try:
        check_batch_for(config, tensors)
    except ValueError as error:
        raise ValueError(f"{where}: {error} (model_type {getattr(config, 'model_type', '?')!r})") from error


@dataclass
class ValidatingCollator:
    """Wraps a collator and checks each batch it builds against the model configs that will read it
    (`check_model_inputs`): `student_config` checks `student_inputs` (or a flat batch: `GraphCollator`,
    `PointCloudCollator`, a tokenizer's batch), `teacher_config` checks `teacher_inputs`. A config left None is not
    checked. Holds configs, not models, so it pickles cheaply into DataLoader workers."""

    collator: Callable[[Sequence[Any]], Mapping[str, Any]]
    student_config: Any = None
    teacher_config: Any = None

    def __call__(self, rows: Sequence[Any]) -> Mapping[str, Any]:
        batch = self.collator(rows)
        paired = "student_inputs" in batch or "teacher_inputs" in batch
        for key, config in (("teacher_inputs", self.teacher_config), ("student_inputs", self.student_config)):
            if config is None or (not paired and key == "teacher_inputs"):
                continue
            inputs = batch.get(key) if paired else batch
            if inputs is not None:
                check_model_inputs(inputs, config, where=key if paired else "batch")
        return batch


class MolecularPreTrainedModel(PreTrainedModel):
    """Base of every family's `PreTrainedModel` (backbones and heads); see the module docstring for the contract."""

    input_modality: ClassVar[str]
    # A backbone loaded out of a head checkpoint (a teacher for distillation, `AutoModel` on a student) drops the
    # head on purpose: no "UNEXPECTED head.*" load report for it.
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = [r"^head\."]

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs
    ) -> PreTrainedModel:
        """`PreTrainedModel.from_pretrained`, with the names of the shipped students resolved to their folders."""
        return super().from_pretrained(resolve_pretrained_name(pretrained_model_name_or_path), *model_args, **kwargs)

    def check_unused_batch_keys(self, unused_batch_keys: Mapping[str, object]) -> None:
        """Accept the keys of this model's batch modality that `forward` does not read; reject any other."""
        unexpected = set(unused_batch_keys) - BATCH_KEYS[self.input_modality]
        if unexpected:
            raise TypeError(
                f"{type(self).__name__}.forward got unexpected inputs {sorted(unexpected)} (not keys of the "
                f"{self.input_modality} batch, see DESIGN.md)"
            )

    def wrap_output(self, output: ModelOutput, return_dict: bool | None) -> ModelOutput | tuple:
        """`output` itself, or its tuple when `return_dict` (default `config.return_dict`) is False."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()

    def validate_inputs(self, batch: Mapping[str, torch.Tensor]) -> None:
        """Raise a ValueError naming the first input of `batch` this model cannot read (ids outside its
        vocabularies, edges off the atoms): `check_input_values` with this model's config. Reads the values, so on
        a device tensor it synchronises: for tests and debugging there; collators check the CPU batch instead."""
        self.check_input_values(self.config, batch)

    @classmethod
    def check_input_values(cls, config: PretrainedConfig, batch: Mapping[str, torch.Tensor]) -> None:
        """The family's value-range checks of `batch` (keys of its modality; absent keys are skipped), from the
        config alone: a collator runs them without the model (`check_batch_for`)."""
        raise NotImplementedError(f"{cls.__name__} defines no input validation")

    def check_inputs_if_free(self, batch: Mapping[str, torch.Tensor | None]) -> None:
        """`forward`'s own call of `check_input_values`: only when every given input is `values_readable_for_free`
        (a CPU batch in eager mode, where the check costs a few reductions and no device synchronisation)."""
        given = {key: value for key, value in batch.items() if value is not None}
        if all(values_readable_for_free(value) for value in given.values()):
            self.check_input_values(self.config, given)

    def _init_weights(self, module: torch.nn.Module) -> None:
        # transformers re-initialises non-persistent buffers through `_init_weights` after loading a checkpoint.
        if isinstance(module, ConstantBuffers):
            module.reset_constants()
