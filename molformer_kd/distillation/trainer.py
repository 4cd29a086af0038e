"""`DistillationTrainer`: a `transformers.Trainer` that runs a frozen teacher and a student under weighted objectives.

Batches follow the paired contract (DESIGN.md): `{"student_inputs": {...}, "teacher_inputs": {...}, "labels": ...}`
(`teacher_inputs` may be absent when no objective needs a teacher: supervised teacher training, denoising
pretraining and fine-tuning run through the same trainer with the `task` objective alone).

Gradient accumulation and data parallelism. Every objective component is a mean over the molecules of its
micro-batch (see `registry`). `get_batch_samples` counts the molecules of the whole accumulation window on all
processes (`num_items_in_batch`), and `compute_loss` weights each micro-batch loss by
`micro-batch molecules / window molecules * num_processes` (DDP averages gradients over processes). The summed
gradient is then exactly the gradient of the mean over every molecule of the optimizer step, whatever the split
into micro-batches, for components that are per-molecule means (task losses with one label per molecule or no
missing labels; task losses averaging over observed labels are weighted by molecules, not by labels).

Teacher cache (`teacher_cache_dir`, `teacher_cache.py`). The frozen teacher's outputs on the train and eval rows are
written once (main process; the others wait at a barrier, so the first pass over a large dataset must fit in the
process group's timeout) and batches then carry them as `teacher_outputs`: `teacher_forward` returns them instead of
running the teacher, and every loss is the same as with the live teacher. Energy/force distillation caches the
objectives' teacher targets instead (`gnn_objectives.TEACHER_TARGETS`), carried as `teacher_targets`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import ModelOutput, logging

from ..modeling.modeling_utils import ValidatingCollator
from ..modeling.outputs import MolecularPropertyOutput
from ..tokenization.collators import PointCloudCollator
from .checkpoints import atomic_export, barrier, mark_checkpoint_complete, reported_file_errors
from .gnn_objectives import TeacherTargets
from .teacher_cache import (
    CACHE_ROW_COLUMN,
    POINT_CLOUD_INPUT_COLUMNS,
    TEACHER_INPUT_COLUMNS,
    CachedPointCloudCollator,
    CachedTeacherCollator,
    PointCloudTeacherCache,
    TeacherCache,
    build_point_cloud_cache,
    build_teacher_cache,
    cached_fields,
    check_cacheable_collator,
    point_cloud_targets,
    rows_fingerprint,
    teacher_cache_key,
    teacher_fingerprint,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from torch.utils.data import DataLoader
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_utils import EvalLoopOutput

logger = logging.get_logger(__name__)

# Keys of a student batch whose first dimension is the number of molecules (graph, SMILES and 3D GNN batches).
_BATCH_FIRST_KEYS = ("attention_mask", "input_ids", "input_nodes", "atom_mask")


@dataclass
class DistillationOutput(ModelOutput):
    """Weighted total `loss`, the student's `logits` (original label units) and every unweighted component."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    components: dict | None = None


class DistillationModel(nn.Module):
    """The trained module: the student (a head model) plus the objectives' learnable projections.

    Holding both in one module lets the optimizer see the projections and checkpoints save them; the export
    (`save_student`) keeps only the student. The teacher is not part of it: it is frozen and never saved.
    `weights` maps objective name -> weight; each objective's components are summed with its weight.
    """

    def __init__(
        self, student: nn.Module, objectives: dict[str, nn.Module], weights: dict[str, float] | None = None
    ) -> None:
        super().__init__()
        if not objectives:
            raise ValueError("DistillationModel needs at least one objective")
        self.student = student
        self.objectives = nn.ModuleDict(objectives)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(objectives))
        if unknown:
            raise ValueError(f"weights given for objectives that are not configured: {unknown}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in objectives}
        self.student_outputs_needed = frozenset().union(
            *(getattr(o, "student_outputs_needed", frozenset()) for o in objectives.values())
        )

    @property
    def needs_teacher(self) -> bool:
        return any(getattr(o, "needs_teacher", True) for o in self.objectives.values())

    @property
    def teacher_outputs_needed(self) -> frozenset:
        return frozenset().union(*(getattr(o, "teacher_outputs_needed", frozenset()) for o in self.objectives.values()))

    def forward(
        self,
        student_inputs: dict[str, Any],
        teacher_outputs: ModelOutput | None = None,
        labels: torch.Tensor | dict[str, torch.Tensor] | None = None,
        batch: dict[str, Any] | None = None,
    ) -> DistillationOutput:
        student_outputs = self.student(
            **student_inputs,
            **_output_flags(self.student_outputs_needed),
            **({} if labels is None else {"labels": labels}),
        )
        components, loss = {}, 0.0
        for name, objective in self.objectives.items():
            parts = objective(teacher_outputs, student_outputs, batch if batch is not None else {})
            clash = sorted(set(parts) & set(components))
            if clash:
                raise ValueError(f"objective {name!r} returns components {clash} that another objective also returns")
            components.update(parts)
            loss = loss + self.weights[name] * sum(parts.values())
        return DistillationOutput(loss=loss, logits=getattr(student_outputs, "logits", None), components=components)


def _output_flags(needed: Iterable[str]) -> dict:
    flags = {}
    if "hidden_states" in needed:
        flags["output_hidden_states"] = True
    if "attentions" in needed:
        flags["output_attentions"] = True
    return flags


class InitialStageCallback(TrainerCallback):
    """ST-KD's initial stage (ST-KD A.2.1): other objective weights for the first `epochs` epochs.

    Applied at the start of every optimizer step from `state.epoch` (the progress before the step), so a run
    resumed from a checkpoint gets the right weights too. `epochs` may be fractional.
    """

    def __init__(self, epochs: float, initial_weights: dict[str, float], weights: dict[str, float]) -> None:
        self.epochs = float(epochs)
        self.initial_weights = {**weights, **{k: float(v) for k, v in initial_weights.items()}}
        self.weights = dict(weights)

    def on_step_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs,
    ) -> None:
        in_initial_stage = (state.epoch or 0.0) < self.epochs
        model.weights = dict(self.initial_weights if in_initial_stage else self.weights)


class DistillationTrainer(Trainer):
    """`Trainer` for `DistillationModel`: frozen teacher forward + student forward + weighted objectives.

    Args:
        model: the `DistillationModel` (student + objectives).
        teacher: the teacher model, or None when no objective needs one. It is frozen (`requires_grad=False`),
            prepared by the accelerator in evaluation mode (device placement, mixed precision; never wrapped
            for DDP, never given to the optimizer), kept in eval mode and run under `torch.no_grad()`.
        initial_stage_epochs / initial_stage_weights: ST-KD's initial stage (objective weights for the first
            epochs, e.g. `{"task": 0, "stkd_feature": 1, "stkd_attention": 4}`).
        teacher_cache_dir: cache the teacher's outputs on the train and eval datasets in this folder
            (`teacher_cache.py`): computed once (or found from an earlier run), then every batch of those datasets
            reads them instead of running the teacher. Needs a `PairedCollator` (refused otherwise).
        Every other argument is `transformers.Trainer`'s (`args.remove_unused_columns` is forced to False: the
        nested paired batches are not model arguments).
    """

    # compute_loss normalizes by the molecules of the whole accumulation window (module docstring).
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: DistillationModel,
        args: TrainingArguments | None = None,
        teacher: nn.Module | None = None,
        initial_stage_epochs: float = 0.0,
        initial_stage_weights: dict[str, float] | None = None,
        teacher_cache_dir: str | os.PathLike | None = None,
        **kwargs,
    ) -> None:
        if not isinstance(model, DistillationModel):
            raise TypeError(f"DistillationTrainer trains a DistillationModel, got {type(model).__name__}")
        if model.needs_teacher and teacher is None:
            needing = [n for n, o in model.objectives.items() if getattr(o, "needs_teacher", True)]
            raise ValueError(f"objectives {needing} need a teacher model, none was given")
        if args is not None and args.remove_unused_columns:
            args.remove_unused_columns = False
        if args is not None and args.torch_compile and getattr(model.student, "trains_through_a_gradient", False):
            raise ValueError(
                f"torch_compile cannot train {type(model.student).__name__}: its forces are -dE/dx, so training "
                "differentiates through a gradient (double backward), which torch.compile does not support; set "
                "torch_compile: false, or train a model with a direct force head (PaiNN with direct_forces: true)"
            )
        super().__init__(model=model, args=args, **kwargs)
        # Our forward takes no loss kwargs: the Trainer must neither pass num_items_in_batch to it nor count labels.
        self.model_accepts_loss_kwargs = False
        self.teacher = None
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
            self.teacher = self.accelerator.prepare_model(teacher, evaluation_mode=True)
        if initial_stage_epochs:
            unknown = sorted(set(initial_stage_weights or {}) - set(model.objectives))
            if unknown:
                raise ValueError(f"initial_stage_weights name objectives that are not configured: {unknown}")
            self.add_callback(InitialStageCallback(initial_stage_epochs, initial_stage_weights or {}, model.weights))
        self.teacher_cache: TeacherCache | None = None
        if teacher_cache_dir is not None:
            self._use_teacher_cache(teacher_cache_dir)
        self._train_components: dict[str, torch.Tensor] = defaultdict(float)
        self._components_logged_step = 0
        self._eval_components: dict[str, torch.Tensor] = defaultdict(float)
        self._eval_molecules = 0

    def create_accelerator_and_postprocess(self) -> None:
        """`torch_compile: true` compiles for dynamic shapes (unless `ACCELERATE_DYNAMO_USE_DYNAMIC` says otherwise).
        Every batch is padded to its own widest molecule, and the 3D models' radius graphs have data-dependent sizes:
        a compile specialised to the first shapes compiles every region again at the next new size (accelerate's
        default, `dynamic=None`, compiles about twice the graphs; `dynamic=False` recompiles for every width until
        it falls back to eager). benchmarks/results/compile_training.md times it."""
        super().create_accelerator_and_postprocess()
        dynamo = self.accelerator.state.dynamo_plugin
        if dynamo.dynamic is None:
            dynamo.dynamic = True

    # ---- batches -------------------------------------------------------------------------------------------

    @staticmethod
    def count_molecules(inputs: dict[str, Any]) -> int:
        """Molecules in a batch: rows of `labels`, else the first dimension of a batch-first student input."""
        labels = inputs.get("labels")
        if torch.is_tensor(labels):
            return labels.shape[0]
        student_inputs = inputs.get("student_inputs") or {}
        for key in _BATCH_FIRST_KEYS:
            if torch.is_tensor(student_inputs.get(key)):
                return student_inputs[key].shape[0]
        raise ValueError(
            f"cannot count the molecules of a batch with keys {sorted(inputs)} / student keys "
            f"{sorted(student_inputs)}: "
            f"give it 'labels' or one of {_BATCH_FIRST_KEYS}"
        )

    def get_batch_samples(
        self, epoch_iterator: Iterator[dict[str, Any]], num_batches: int, device: torch.device
    ) -> tuple[list[dict[str, Any]], torch.Tensor]:
        """The next accumulation window and its molecule count over all processes (our `num_items_in_batch`)."""
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        count = torch.tensor([sum(self.count_molecules(batch) for batch in batch_samples)], device=device)
        if self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return batch_samples, count.reshape(())

    # ---- teacher cache -------------------------------------------------------------------------------------

    def _use_teacher_cache(self, folder: str | os.PathLike) -> None:
        """Build (main process) or find the cache files of the train and eval datasets, then read batches from them:
        the datasets get a row-index column and the collator becomes a `CachedTeacherCollator`."""
        if self.teacher is None:
            raise ValueError("teacher_cache_dir is set but no objective needs a teacher: there is nothing to cache")
        # On an accelerator the stage wraps the collator to check batch values on the CPU (`ValidatingCollator`): the
        # cache is built with the paired collator inside, and the cached batches are checked for the student only
        # (the teacher does not run on them).
        validating = self.data_collator if isinstance(self.data_collator, ValidatingCollator) else None
        if validating is not None:
            self.data_collator = validating.collator
        check_cacheable_collator(self.data_collator)
        if isinstance(self.eval_dataset, dict):
            raise TypeError("teacher_cache_dir supports one eval dataset, not a dict of them")
        point_clouds = isinstance(self.data_collator, PointCloudCollator)
        if point_clouds:  # energy/force distillation: the objectives' targets, per atom
            fields = point_cloud_targets(self.model.objectives.values())
            featurizer, input_columns, build = None, POINT_CLOUD_INPUT_COLUMNS, build_point_cloud_cache
            cache_class, cached_collator = PointCloudTeacherCache, CachedPointCloudCollator
        else:
            fields = cached_fields(self.model.teacher_outputs_needed)
            featurizer = self.data_collator.teacher_featurizer
            input_columns = getattr(featurizer, "input_columns", TEACHER_INPUT_COLUMNS)
            build = build_teacher_cache
            cache_class, cached_collator = TeacherCache, CachedTeacherCollator
        teacher = teacher_fingerprint(self.accelerator.unwrap_model(self.teacher))
        dtype = str(self.accelerator.mixed_precision)
        datasets = [rows for rows in (self.train_dataset, self.eval_dataset) if rows is not None]
        batch_size = self.args.per_device_eval_batch_size
        paths = []
        for rows in datasets:
            key = teacher_cache_key(teacher, rows_fingerprint(rows, input_columns), featurizer, fields, dtype)
            path = os.path.join(folder, f"teacher-{key}.arrow")
            if self.args.should_save and not os.path.isfile(f"{path}.json"):
                logger.warning("teacher cache: computing the teacher's %s on %d rows -> %s", fields, len(rows), path)
                build(path, rows, self.data_collator, self._cache_teacher_forward, fields, batch_size)
            paths.append(path)
        barrier()
        self.teacher_cache = cache_class(paths)
        offset = 0
        indexed = []
        for rows in datasets:
            indexed.append(rows.add_column(CACHE_ROW_COLUMN, list(range(offset, offset + len(rows)))))
            offset += len(rows)
        self.train_dataset = indexed[0] if self.train_dataset is not None else None
        if self.eval_dataset is not None:
            self.eval_dataset = indexed[-1]
        self.data_collator = cached_collator(self.data_collator, self.teacher_cache)
        if validating is not None:
            self.data_collator = dataclasses.replace(validating, collator=self.data_collator, teacher_config=None)

    def _cache_teacher_forward(self, batch: dict[str, Any]):
        with self.compute_loss_context_manager():
            return self.teacher_forward(self._prepare_inputs(batch))

    # ---- loss ----------------------------------------------------------------------------------------------

    def teacher_forward(self, inputs: dict[str, Any]) -> ModelOutput | None:
        """The teacher's outputs for a batch: read from the batch when it carries cached ones (outputs, or the
        energy/force objectives' targets), else a forward."""
        cached = inputs.get("teacher_outputs")
        if cached is not None:
            return MolecularPropertyOutput(**cached)
        targets = inputs.get("teacher_targets")
        if targets is not None:
            return TeacherTargets(**targets)
        if self.teacher is None:
            return None
        if "teacher_inputs" not in inputs:
            raise ValueError(
                "the objectives need a teacher but the batch has no 'teacher_inputs' (use a paired collator)"
            )
        flags = _output_flags(self.accelerator.unwrap_model(self.model).teacher_outputs_needed)
        with torch.no_grad():
            return self.teacher(**inputs["teacher_inputs"], **flags)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, DistillationOutput]:
        if "student_inputs" not in inputs:
            raise ValueError(f"batch has keys {sorted(inputs)}; DistillationTrainer needs 'student_inputs'")
        teacher_outputs = self.teacher_forward(inputs)
        outputs = model(
            student_inputs=inputs["student_inputs"],
            teacher_outputs=teacher_outputs,
            labels=inputs.get("labels"),
            batch=inputs,
        )
        loss = outputs.loss
        if model.training:
            if num_items_in_batch is not None:
                share = self.count_molecules(inputs) / num_items_in_batch
                loss = loss * (share * self.accelerator.num_processes)
            else:  # a caller without our molecule count: plain per-micro-batch mean
                share = 1.0 / self.current_gradient_accumulation_steps
                loss = loss * share
            for name, value in outputs.components.items():
                self._train_components[name] = self._train_components[name] + value.detach() * share
        return (loss, outputs) if return_outputs else loss

    # ---- logging and evaluation ----------------------------------------------------------------------------

    def _sum_over_processes(self, values: dict) -> dict[str, float]:
        names = sorted(values)
        stacked = torch.stack([torch.as_tensor(values[n], dtype=torch.float32, device=self.args.device) for n in names])
        if self.args.world_size > 1:
            stacked = self.accelerator.reduce(stacked, reduction="sum")
        return dict(zip(names, stacked.tolist()))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training logs get every loss component, averaged over the optimizer steps since the last log."""
        if "loss" in logs and self._train_components:
            steps = max(self.state.global_step - self._components_logged_step, 1)
            for name, value in self._sum_over_processes(self._train_components).items():
                logs[name] = value / steps
            self._train_components.clear()
            self._components_logged_step = self.state.global_step
        super().log(logs, start_time)

    def prediction_step(
        self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys: list[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | dict[str, torch.Tensor] | None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        molecules = self.count_molecules(inputs)
        for name, value in outputs.components.items():
            self._eval_components[name] = self._eval_components[name] + value.detach().float() * molecules
        self._eval_molecules += molecules
        loss = loss.detach()
        if prediction_loss_only:
            return loss, None, None
        logits = outputs.logits.detach() if outputs.logits is not None else None
        return loss, logits, inputs.get("labels")

    def evaluation_loop(
        self,
        dataloader: DataLoader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        """Adds `{prefix}_{component}` (molecule-weighted means over the whole evaluation set) to the metrics."""
        self._eval_components = defaultdict(float)
        self._eval_molecules = 0
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self._eval_components:
            totals = self._sum_over_processes({**self._eval_components, "__molecules__": self._eval_molecules})
            molecules = max(totals.pop("__molecules__"), 1)
            for name, value in totals.items():
                output.metrics[f"{metric_key_prefix}_{name}"] = value / molecules
        return output

    # ---- checkpoints and export ----------------------------------------------------------------------------

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The Trainer's checkpoint, then (once every process wrote its part) the marker that makes it complete.

        A checkpoint interrupted by a kill or a full disk has no marker, so resuming never picks it
        (`checkpoints.last_complete_checkpoint`); a full disk is reported with the checkpoint's path.
        """
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        with reported_file_errors(folder):
            super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_checkpoint_complete(folder, self.state.global_step)
        self.accelerator.wait_for_everyone()

    def save_student(self, output_dir: str) -> None:
        """`save_pretrained` of the student alone (safetensors) + the processing class; projections are dropped.

        The main process writes (atomically, `checkpoints.atomic_export`); every process returns only once the files
        are in place, so the next stage can read them on any rank.
        """
        if self.args.should_save:
            student = self.accelerator.unwrap_model(self.model).student

            def save(folder: str) -> None:
                student.save_pretrained(folder, safe_serialization=True)
                if self.processing_class is not None:
                    self.processing_class.save_pretrained(folder)

            atomic_export(save, output_dir)
        self.accelerator.wait_for_everyone()
