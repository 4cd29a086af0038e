"""SMILES in, properties (or embeddings) out: the `molecular-property-prediction` and `molecular-embedding` pipelines.

One object does everything: it holds the student and the processor saved beside it (the graph `MoleculeFeaturizer`
of Graphormer/GIN students, the SMILES tokenizer of ST/ST-BASE students), featurizes SMILES a batch at a time (in
DataLoader workers when `num_workers > 0`), pads them into the model's batch, runs the model under
`torch.inference_mode` and returns one dict per molecule, in input order:

    >>> import molformer_kd
    >>> from transformers import pipeline
    >>> predict = pipeline("molecular-property-prediction", model="path/or/repo")
    >>> predict(["CCO", "not a smiles"], batch_size=64)
    [{'gap': 7.91, 'error': None}, {'gap': nan, 'error': "invalid SMILES 'not a smiles': ..."}]

Predictions are in the original label units (the heads de-normalize). A molecule that fails anywhere (refused by the
processor's SMILES front door, including its `max_atoms` limit, or failing in collation or in the model's own checks)
gets NaN values and an `error` string naming it, cut to a readable length; the rest of its batch is predicted. A SMILES
Transformer's tokenizer limit is lowered to the model's `max_atoms` position table. Weights load from safetensors only.

A model whose config carries an applicability domain (`config.applicability_domain`, data/domain.py: the elements,
size, charges, radicals and fragments of its training molecules) adds two keys to every result: `in_domain` (True /
False; None for a molecule that failed) and `domain_reason` (None, or the constraints the molecule breaks, e.g.
"element Cl (training set: C, F, N, O)"). A model without a domain gets neither key. The check reads no SMILES
again: a graph student's molecules are profiled from their features (`graph_profiles`), a SMILES Transformer's from
the molecule its tokenizer's front door sanitized (only a SMILES with written hydrogens that the atom rule folds is
parsed once more), in the featurizing workers when there are some.

`MolecularPropertyPredictionPipeline.from_pretrained(name)` takes the students that ship with the package by name
(`qm9-gin`, data/pretrained.py), and with no name loads `DEFAULT_MODEL`; so does
`pipeline("molecular-property-prediction")` with no model. `check_shipped_sample(name)` predicts a shipped student's
committed test sample and compares with what was measured when it was shipped.

Screening speed: a list of SMILES is cut into length-bucketed batches (sorted by SMILES length, which tracks the atom
count, so that a batch pads to molecules of about its own size; outputs come back in input order), a graph batch is
featurized with the featurizer's chunked path (`featurize_many`), and a GIN student's featurizer skips the
Graphormer encodings that a GIN never reads (`MoleculeFeaturizer.graph_encodings`). A SMILES Transformer's batch is
encoded whole into its padded arrays (`SmilesTokenizer.encode_batch`), a DataLoader worker sends a batch's inputs as
numpy arrays (not one shared-memory file per tensor), `forward` moves only the model inputs (the base `Pipeline`
walked every object of the batch), and `predict_columns` returns the results as columns (what `molformer-kd predict`
writes) instead of one dict per molecule. On a CUDA device batches are built in pinned memory and copied without
blocking (`use_pinned_memory`).
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .data.domain import ApplicabilityDomain, molecule_profile
from .data.metrics import per_label_metrics
from .data.pretrained import (
    DEFAULT_MODEL,
    PRETRAINED_DIR,
    SAMPLE_ATOL,
    pretrained_path,
    resolve_pretrained_name,
    shipped_model,
)
from .hub import safetensors_only_from_pretrained
from .modeling.auto import AutoModelForMolecularPropertyPrediction
from .tokenization.featurization import MOLECULE_FAILURES, graph_profiles, pad_graph_features
from .tokenization.point_cloud import PointCloudFeaturizer
from .tokenization.processors import check_processor_matches_model, load_processor
from .tokenization.smiles_grammar import shorten_smiles
from .tokenization.tokenization_smiles import EncodedSmilesBatch, SmilesTokenizer

if TYPE_CHECKING:
    import os

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .tokenization.featurization import MoleculeFeaturizer

PREDICT, EMBED = "predict", "embed"
MODES = (PREDICT, EMBED)
QUANTIZATIONS = ("int8",)
# Failures of one molecule in padding or the model's forward (its input checks, a too-large allocation), beside those
# of featurization (`MOLECULE_FAILURES`); anything else is a bug and propagates.
_MODEL_FAILURES = (ValueError, IndexError, RuntimeError)
_MAX_ERROR_CHARS = 400
# A stream of SMILES (no length) is sorted into batches this many batches at a time; a list is sorted whole.
STREAM_WINDOW_BATCHES = 64
# Graph students that read no Graphormer encodings (spatial_pos, attn_edge_type, edge_input).
_MODEL_TYPES_WITHOUT_GRAPH_ENCODINGS = ("molformer_gin",)
# Keys of a SMILES Transformer batch that run over atoms (the others run over tokens).
_ATOM_KEYS = ("atom_token_index", "atom_mask")


def use_pinned_memory(device: torch.device) -> bool:
    """Whether the pipeline builds its batches in pinned (page-locked) host memory, so that their copy to the device
    runs without blocking: on a CUDA device only (on the CPU there is no copy to make)."""
    return device.type == "cuda" and torch.cuda.is_available()


class PredictionColumns(NamedTuple):
    """The results of `MolecularPropertyPredictionPipeline.predict_columns`, one entry per input SMILES in input order,
    as columns: `values` (N, T) float64 predictions (NaN where the row failed) or (N, D) float32 embeddings (zeros
    where it failed; (N, 0) when every row failed), `errors` (None or the row's error), and for a model with an
    applicability domain `in_domain` / `domain_reason` (None for a failed row; both None without a domain)."""

    values: np.ndarray
    errors: list[str | None]
    in_domain: list[bool | None] | None
    domain_reason: list[str | None] | None


class SafetensorsAutoModelForMolecularPropertyPrediction(AutoModelForMolecularPropertyPrediction):
    """`AutoModelForMolecularPropertyPrediction` that loads `*.safetensors` only (used by `pipeline(...)`)."""

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs
    ) -> PreTrainedModel:
        return safetensors_only_from_pretrained(
            AutoModelForMolecularPropertyPrediction, pretrained_model_name_or_path, *model_args, **kwargs
        )


class SafetensorsAutoModel(AutoModel):
    """`AutoModel` (a bare backbone, for embeddings) that loads `*.safetensors` only."""

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs
    ) -> PreTrainedModel:
        return safetensors_only_from_pretrained(AutoModel, pretrained_model_name_or_path, *model_args, **kwargs)


def _processor_kwargs(processor: Any) -> dict:
    """`{"feature_extractor": featurizer}` for graph students, `{"tokenizer": tokenizer}` for SMILES students."""
    return {"feature_extractor": processor} if hasattr(processor, "featurize") else {"tokenizer": processor}


def _row_error(smiles: Any, err: BaseException, stage: str = "") -> str:
    """One row's error text: names the SMILES (cut to a window) unless the error already does, and stays short."""
    message = str(err)
    if len(message) > _MAX_ERROR_CHARS:
        message = message[:_MAX_ERROR_CHARS] + "..."
    if not message.startswith("invalid SMILES"):
        message = f"SMILES {shorten_smiles(smiles)}: {stage}{type(err).__name__}: {message}"
    return message


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose `nn.Linear` layers are int8 dynamically quantized (weights int8, activations quantized
    per batch): CPU only, for inference; predictions move by about the int8 rounding of the weights."""
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def length_bucketed_batches(smiles: Iterable[Any], batch_size: int, window: int) -> Iterator[list[tuple[int, Any]]]:
    """Batches of `(input position, SMILES)`: every `window` consecutive inputs are sorted by SMILES length (known
    before featurizing, and close to the atom count that sets a batch's padding) and cut into `batch_size` batches."""
    positions = itertools.count()
    stream = iter(smiles)
    while window_items := list(itertools.islice(zip(positions, stream), window)):
        window_items.sort(key=lambda item: len(item[1]) if isinstance(item[1], str) else 0)
        for start in range(0, len(window_items), batch_size):
            yield window_items[start : start + batch_size]


class _BatchStream(IterableDataset):
    """The batches of a SMILES stream, for a DataLoader (one worker at most: more would each replay the stream)."""

    def __init__(self, batches: Iterator[list[tuple[int, Any]]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[tuple[int, Any]]]:
        return self.batches


class MolecularPropertyPredictionPipeline(Pipeline):
    """Predict molecular properties (`mode="predict"`) or pooled embeddings (`mode="embed"`) from SMILES.

    Call it on one SMILES (returns a dict) or a list (returns a list of dicts, in input order). Outputs:
    - predict, regression: `{label_name: value in original units, ..., "error": None}`;
      multi-label classification: sigmoid probabilities per label; single-label: softmax probability per class.
    - embed: `{"embedding": float32 array (hidden_size,), "error": None}` (the global-token / pooled representation).
    Invalid SMILES give NaN values (or `embedding=None`) and the reason in `error`.

    Parameters (constructor or call): `mode`, `batch_size`, `num_workers` (DataLoader workers that featurize).
    """

    # Both are optional: `pipeline(...)` tries to load each and keeps whichever the checkpoint has.
    _load_tokenizer = None
    _load_feature_extractor = None
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False

    default_mode = PREDICT

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        feature_extractor: MoleculeFeaturizer | None = None,
        **kwargs,
    ) -> None:
        if feature_extractor is None and tokenizer is None and getattr(model, "name_or_path", None):
            # `pipeline(task, model=dir_or_repo)` could not resolve the processor through the Auto classes: load it
            # from where the model came from.
            processor = _processor_kwargs(load_processor(model.name_or_path))
            tokenizer, feature_extractor = processor.get("tokenizer"), processor.get("feature_extractor")
        if isinstance(tokenizer, PointCloudFeaturizer) or isinstance(feature_extractor, PointCloudFeaturizer):
            raise ValueError(
                f"{getattr(model, 'name_or_path', '') or type(model).__name__} is an all-atom 3D model: it reads the "
                "coordinates of every atom, which a SMILES does not give. This pipeline serves the 2D students; "
                "evaluate a 3D model on records with coordinates (distill.py's `evaluate` stage)"
            )
        super().__init__(model=model, tokenizer=tokenizer, feature_extractor=feature_extractor, **kwargs)
        if self.feature_extractor is None and self.tokenizer is None:
            raise ValueError(
                "the pipeline needs the student's processor: pass feature_extractor= (a MoleculeFeaturizer, graph "
                "students) or tokenizer= (SMILES students), or load both with "
                "MolecularPropertyPredictionPipeline.from_pretrained(dir_or_repo)"
            )
        processor = self.feature_extractor if self.feature_extractor is not None else self.tokenizer
        check_processor_matches_model(processor, self.model.config, f"the pipeline's {type(processor).__name__}")
        if self.feature_extractor is not None:
            # (A 2D Graphormer given a featurizer without the encodings was refused by the check above.)
            reads_encodings = self.model.config.model_type not in _MODEL_TYPES_WITHOUT_GRAPH_ENCODINGS
            if not reads_encodings and self.feature_extractor.graph_encodings:
                # The shortest paths and (N, N, ...) encodings are most of a graph batch's cost; this model reads none.
                self.feature_extractor = self.feature_extractor.without_graph_encodings()
        self.model.eval()
        # A SMILES Transformer's structure positions stop at its max_atoms: larger molecules are row errors.
        config = self.model.config
        self._max_atoms = config.max_atoms if getattr(config, "variant", None) == "st_kd" else None
        self.applicability_domain = ApplicabilityDomain.from_config(config)
        self.pin_memory = use_pinned_memory(self.device)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike | None = None,
        mode: str | None = None,
        device: int | str | torch.device | None = None,
        revision: str | None = None,
        token: str | None = None,
        quantize: str | None = None,
        **kwargs,
    ) -> MolecularPropertyPredictionPipeline:
        """Load the student (safetensors only) and its featurizer or tokenizer from a directory, a shipped student's
        name (`qm9-gin`; default: `DEFAULT_MODEL`) or a Hub repo; `quantize="int8"` runs it with int8 linear layers
        (`quantize_int8`, CPU only)."""
        if model_id is None:
            if shipped_model(DEFAULT_MODEL) is None:
                raise OSError(
                    f"no model given, and the default shipped student {DEFAULT_MODEL!r} is not in this installation "
                    f"({PRETRAINED_DIR}); pass a student folder or repo, or build it with `make pretrained`"
                )
            model_id = DEFAULT_MODEL
        model_id = resolve_pretrained_name(model_id)
        mode = mode or cls.default_mode
        if quantize is not None and quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}")
        if quantize is not None and device not in (None, -1, "cpu"):
            raise ValueError(f"quantize={quantize!r} runs on the CPU only, not on device {device!r}")
        hub_kwargs = {"revision": revision, "token": token}
        model_class = AutoModelForMolecularPropertyPrediction if mode == PREDICT else AutoModel
        model = safetensors_only_from_pretrained(model_class, model_id, **hub_kwargs)
        if quantize is not None:
            model = quantize_int8(model.eval())
        components = _processor_kwargs(load_processor(model_id, **hub_kwargs))
        task = "molecular-property-prediction" if mode == PREDICT else "molecular-embedding"
        return cls(model=model, device=-1 if device is None else device, mode=mode, task=task, **components, **kwargs)

    # ------------------------------------------------------------------------------------------------ parameters

    def _sanitize_parameters(self, mode: str | None = None, **kwargs) -> tuple[dict, dict, dict]:
        if kwargs:
            raise TypeError(f"unexpected pipeline argument(s) {sorted(kwargs)}")
        if mode is None:
            return {}, {}, {}
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return {}, {"mode": mode}, {"mode": mode}

    @property
    def label_names(self) -> list[str]:
        """The names of the predicted values (labels, or classes), from the model's predictor; none for embeddings."""
        head = getattr(self.model, "head", None)
        return list(head.label_names) if head is not None else []

    # ------------------------------------------------------------------------------------------------ stages

    def preprocess(self, smiles: Any) -> dict[str, Any]:
        """One SMILES -> its unpadded features (or token ids), or the reason it cannot be featurized."""
        if not isinstance(smiles, str):
            return {"smiles": smiles, "features": None, "error": f"non-string SMILES {shorten_smiles(smiles)}"}
        try:
            if self.feature_extractor is not None:
                features = self.feature_extractor.featurize(smiles)
            elif isinstance(self.tokenizer, SmilesTokenizer):
                # The same lists as tokenizer(smiles), less overhead, and the model's atom limit.
                features = self.tokenizer.encode_smiles(smiles, max_atoms=self._max_atoms)
            else:
                features = self.tokenizer(smiles)
        except MOLECULE_FAILURES as err:
            return {"smiles": smiles, "features": None, "error": _row_error(smiles, err)}
        return {"smiles": smiles, "features": features, "error": None}

    def preprocess_many(self, smiles: list) -> list[dict]:
        """`preprocess` of each SMILES, a graph batch featurized with the featurizer's chunked path; a SMILES that
        fails keeps its own error and the others are featurized."""
        if self.feature_extractor is None:
            return [self.preprocess(one) for one in smiles]
        strings = [one for one in smiles if isinstance(one, str)]
        featurized = iter(self.feature_extractor.featurize_many(strings, errors="return"))
        items = []
        for one in smiles:
            features = next(featurized) if isinstance(one, str) else None
            if features is None:
                items.append(self.preprocess(one))  # the non-string error
            elif isinstance(features, Exception):
                items.append({"smiles": one, "features": None, "error": _row_error(one, features)})
            else:
                items.append({"smiles": one, "features": features, "error": None})
        return items

    @property
    def encodes_batches(self) -> bool:
        """Whether batches are encoded whole (`SmilesTokenizer.encode_batch`, `collate_smiles`) instead of one
        molecule at a time."""
        return self.feature_extractor is None and isinstance(self.tokenizer, SmilesTokenizer)

    def collate_smiles(self, smiles: list) -> dict:
        """`collate(preprocess_many(smiles))` of a `SmilesTokenizer` student, encoded straight into the padded batch
        (`SmilesTokenizer.encode_batch`: no python list per molecule, nothing per molecule for a DataLoader worker to
        send). The applicability domain profiles the molecules that the tokenizer's front door parsed already."""
        encoded = self.tokenizer.encode_batch(
            smiles, max_atoms=self._max_atoms, keep_checked=self.applicability_domain is not None
        )
        errors = [None if err is None else self._preprocess_error(one, err) for one, err in zip(smiles, encoded.errors)]
        inputs = None if encoded.inputs is None else {k: torch.from_numpy(v) for k, v in encoded.inputs.items()}
        return {
            "smiles": smiles,
            "errors": errors,
            "valid": encoded.encoded,
            "inputs": inputs,
            "features": None,  # `_forward` takes a molecule's own rows of `inputs` to retry it alone
            "domain": self._checked_domain_verdicts(smiles, encoded),
        }

    @staticmethod
    def _preprocess_error(smiles: Any, err: BaseException) -> str:
        """The error `preprocess` gives a SMILES that its processor refused with `err`."""
        return f"non-string SMILES {shorten_smiles(smiles)}" if not isinstance(smiles, str) else _row_error(smiles, err)

    def _checked_domain_verdicts(self, smiles: list, encoded: EncodedSmilesBatch) -> list | None:
        """`_domain_verdicts` of an encoded SMILES batch, from the molecules its front door sanitized: the same
        profile as `check_many`'s own parse, unless written hydrogens were folded (the atom rule's molecule then
        lacks atoms that RDKit's keeps): those few are parsed again."""
        domain = self.applicability_domain
        if domain is None:
            return None
        verdicts, again = [None] * len(smiles), []
        for i, checked in zip(encoded.encoded, encoded.checked):
            if not checked.parsed.has_folded_hydrogens:  # the atom rule left RDKit's molecule as it was
                verdicts[i] = domain.check_profile(molecule_profile(checked.mol))
            else:
                again.append(i)
        for i, verdict in zip(again, domain.check_many([smiles[i] for i in again])):
            verdicts[i] = verdict
        return verdicts

    def _pad(self, features: list) -> dict:
        """The model batch of some molecules' unpadded features."""
        if self.feature_extractor is not None:
            inputs = pad_graph_features(features)
        else:
            # Pad to python lists and convert through numpy: BatchEncoding's own tensor conversion walks every
            # nested list element in Python and costs more than the tiny models it feeds.
            padded = self.tokenizer.pad(features, padding=True)
            inputs = {key: torch.from_numpy(np.asarray(value, dtype=np.int64)) for key, value in padded.items()}
        return inputs  # every model takes the whole batch of its modality (modeling_utils)

    def collate(self, items: list[dict]) -> dict:
        """Pad the valid items of a batch into one model batch (`inputs`, None if they cannot be padded together);
        invalid ones only keep their error. The features stay with the batch so that `_forward` can retry its
        molecules one at a time."""
        valid = [i for i, item in enumerate(items) if item["error"] is None]
        features = [items[i]["features"] for i in valid]
        try:
            inputs = self._pad(features) if valid else None
        except _MODEL_FAILURES:
            inputs = None
        return {
            "smiles": [item["smiles"] for item in items],
            "errors": [item["error"] for item in items],
            "valid": valid,
            "inputs": inputs,
            "features": features,
            "domain": self._domain_verdicts(items, valid),
        }

    def _domain_verdicts(self, items: list[dict], valid: list[int]) -> list | None:
        """The applicability-domain verdict of each valid item (None for the others); None without a domain."""
        if self.applicability_domain is None:
            return None
        verdicts = [None] * len(items)
        profiles = (
            graph_profiles([items[i]["features"] for i in valid])
            if self.feature_extractor is not None
            else [None] * len(valid)
        )
        for i, profile in zip(valid, profiles):
            if profile is not None:
                verdicts[i] = self.applicability_domain.check_profile(profile)
        # SMILES models, and the rare molecule whose features lost a value to an OGB "misc" bucket: parse again.
        unprofiled = [i for i, profile in zip(valid, profiles) if profile is None]
        for i, verdict in zip(
            unprofiled, self.applicability_domain.check_many([items[i]["smiles"] for i in unprofiled])
        ):
            verdicts[i] = verdict
        return verdicts

    def collate_positioned(self, batch: list[tuple[int, Any]]) -> dict:
        """`collate` of the featurized `(input position, SMILES)` pairs of a batch, with their `positions`."""
        positions, smiles = zip(*batch)
        smiles = list(smiles)
        collated = self.collate_smiles(smiles) if self.encodes_batches else self.collate(self.preprocess_many(smiles))
        if collated["inputs"] is not None and not self.pin_memory:
            # From a DataLoader worker, numpy arrays travel as bytes in the batch's pickle; tensors each through a
            # shared-memory file (measured 5x the main process's CPU time for a tiny ST batch). `forward` takes both.
            collated["inputs"] = {key: value.numpy() for key, value in collated["inputs"].items()}
        return {**collated, "positions": list(positions)}

    def get_inference_context(self) -> type[torch.inference_mode]:
        # No autograd bookkeeping at all (no_grad still tracks tensor versions and views).
        return torch.inference_mode

    def _values(self, inputs: dict, mode: str) -> torch.Tensor:
        outputs = self.model(**inputs)
        if mode == EMBED:
            return outputs.pooler_output.float()
        # The predictor turns logits into what a user reads: values in label units, or class probabilities.
        return self.model.head.transform(outputs.logits).float()

    def _to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A model batch (tensors, or numpy arrays from `collate_positioned`) on the pipeline's device (a CUDA copy
        does not block: batches come from pinned memory)."""
        inputs = {
            key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value for key, value in inputs.items()
        }
        if self.device.type == "cpu":
            return inputs
        non_blocking = self.device.type == "cuda"
        return {key: value.to(self.device, non_blocking=non_blocking) for key, value in inputs.items()}

    def forward(self, model_inputs: dict[str, Any], **forward_params) -> dict[str, Any]:
        """`Pipeline.forward` less its walk over every object of the batch (the SMILES, errors, per-molecule features:
        it cost more than the tiny models' own forward): only the model inputs go to the device, only the values
        come back, under `torch.inference_mode`."""
        with self.device_placement(), self.get_inference_context()():
            batch = dict(model_inputs)
            if batch["inputs"] is not None:
                batch["inputs"] = self._to_device(batch["inputs"])
            outputs = self._forward(batch, **forward_params)
            if outputs["values"] is not None:
                outputs["values"] = outputs["values"].cpu()
        return outputs

    def _single_inputs(self, batch: dict[str, Any], k: int) -> dict[str, torch.Tensor]:
        """The model batch of the k-th valid molecule of a batch alone (its own features, or its unpadded rows of
        an encoded SMILES batch)."""
        if batch["features"] is not None:
            return self._to_device(self._pad([batch["features"][k]]))
        inputs = self._to_device(batch["inputs"])
        tokens = int(inputs["attention_mask"][k].sum())
        atoms = int(inputs["atom_mask"][k].sum()) if "atom_mask" in inputs else 0
        return {key: value[k : k + 1, : atoms if key in _ATOM_KEYS else tokens] for key, value in inputs.items()}

    def _forward(self, batch: dict[str, Any], mode: str | None = None) -> dict[str, Any]:
        mode = mode or self.default_mode
        errors, valid, values = list(batch["errors"]), list(batch["valid"]), None
        if batch["inputs"] is not None:
            try:
                values = self._values(batch["inputs"], mode)
            except _MODEL_FAILURES:
                values = None
        if values is None and valid:
            # The batch could not be padded or run: one molecule at a time, so that only the failing ones get an
            # error and the others are predicted.
            rows = []
            for k, i in enumerate(batch["valid"]):
                try:
                    rows.append(self._values(self._single_inputs(batch, k), mode))
                except _MODEL_FAILURES as err:
                    errors[i] = _row_error(batch["smiles"][i], err, "failed in the model: ")
            valid = [i for i in valid if errors[i] is None]
            values = torch.cat(rows) if rows else None
        return {
            "smiles": batch["smiles"],
            "errors": errors,
            "valid": valid,
            "values": values,
            "domain": batch.get("domain"),
        }

    def postprocess(self, batch_outputs: dict[str, Any], mode: str | None = None) -> list[dict]:
        """One dict per molecule of the batch, in order."""
        mode = mode or self.default_mode
        values = batch_outputs["values"].numpy() if batch_outputs["values"] is not None else None
        row_of = {index: row for row, index in enumerate(batch_outputs["valid"])}
        names = self.label_names
        domain = batch_outputs.get("domain")
        results = []
        for index, error in enumerate(batch_outputs["errors"]):
            row = row_of.get(index)
            if mode == EMBED:
                result = {"embedding": values[row].copy() if row is not None else None}
            elif row is None:
                result = dict.fromkeys(names, math.nan)
            else:
                result = {name: float(value) for name, value in zip(names, values[row])}
            if domain is not None:
                # A molecule that failed after featurizing (in the model) has a verdict but no prediction to flag.
                in_domain, reason = domain[index] if row is not None and domain[index] is not None else (None, None)
                result["in_domain"] = None if in_domain is None else bool(in_domain)
                result["domain_reason"] = reason
            result["error"] = error
            results.append(result)
        return results

    # ------------------------------------------------------------------------------------------------ iteration

    def run_single(self, inputs: str, preprocess_params: dict, forward_params: dict, postprocess_params: dict) -> dict:
        batch = self.collate([self.preprocess(inputs, **preprocess_params)])
        return self.postprocess(self.forward(batch, **forward_params), **postprocess_params)[0]

    def get_iterator(
        self,
        inputs: Iterable[str],
        num_workers: int,
        batch_size: int,
        preprocess_params: dict,
        forward_params: dict,
        postprocess_params: dict,
    ) -> Iterator[dict]:
        """Results in input order, computed on length-bucketed batches (`length_bucketed_batches`)."""
        finished, next_position = {}, 0
        for batch in self._forward_batches(inputs, num_workers, batch_size, forward_params):
            results = self.postprocess(batch, **postprocess_params)
            finished.update(zip(batch["positions"], results))
            while next_position in finished:
                yield finished.pop(next_position)
                next_position += 1

    def _forward_batches(
        self, inputs: Iterable[Any], num_workers: int, batch_size: int, forward_params: dict
    ) -> Iterator[dict[str, Any]]:
        """`forward` outputs of the length-bucketed batches of `inputs`, each with its input `positions`."""
        if isinstance(inputs, Sized):
            # The caller gets a list of them all anyway: bucket the whole list.
            dataset = list(length_bucketed_batches(inputs, batch_size, max(len(inputs), 1)))
        else:
            dataset = _BatchStream(length_bucketed_batches(inputs, batch_size, batch_size * STREAM_WINDOW_BATCHES))
            num_workers = min(num_workers, 1)
        # batch_size=None: each dataset element is already a batch, passed to collate_fn as it is.
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            collate_fn=self.collate_positioned,
            pin_memory=self.pin_memory,
        )
        for batch in loader:
            yield {**self.forward(batch, **forward_params), "positions": batch["positions"]}

    def predict_columns(
        self, smiles: Sequence[Any], batch_size: int = 64, num_workers: int = 0, mode: str | None = None
    ) -> PredictionColumns:
        """The results of `predict` as columns (`PredictionColumns`) instead of one dict per molecule: what a
        screening run writes, without a python object per value."""
        mode = mode or self.default_mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        count = len(smiles)
        values = np.full((count, len(self.label_names)), np.nan) if mode == PREDICT else None
        errors: list[str | None] = [None] * count
        domain = self.applicability_domain is not None
        in_domain = [None] * count if domain else None
        reasons = [None] * count if domain else None
        for batch in self._forward_batches(smiles, num_workers, batch_size, {"mode": mode}):
            positions = batch["positions"]
            for position, error in zip(positions, batch["errors"]):
                if error is not None:
                    errors[position] = error
            if batch["values"] is None:
                continue
            rows = [positions[i] for i in batch["valid"]]
            batch_values = batch["values"].numpy()
            if values is None:  # embeddings: the width is known from the first batch
                values = np.zeros((count, batch_values.shape[1]), dtype=np.float32)
            values[rows] = batch_values
            if domain:
                for i, row in zip(batch["valid"], rows):
                    in_domain[row], reasons[row] = bool(batch["domain"][i][0]), batch["domain"][i][1]
        if values is None:  # embeddings, and not one row succeeded: their width is unknown
            values = np.zeros((count, 0), dtype=np.float32)
        return PredictionColumns(values, errors, in_domain, reasons)

    def predict(self, smiles: str | Iterable[str], batch_size: int = 64, num_workers: int = 0, **kwargs) -> list[dict]:
        """Predictions for a list of SMILES (one dict per SMILES, in order); a single SMILES gives a list of one."""
        if isinstance(smiles, str):
            smiles = [smiles]
        return self(list(smiles), batch_size=batch_size, num_workers=num_workers, **kwargs)

    def embed(self, smiles: str | Iterable[str], batch_size: int = 64, num_workers: int = 0) -> np.ndarray:
        """(len(smiles), hidden_size) float32 embeddings; raises naming the first invalid SMILES."""
        outputs = self.predict(smiles, batch_size=batch_size, num_workers=num_workers, mode=EMBED)
        errors = [output["error"] for output in outputs if output["error"] is not None]
        if errors:
            raise ValueError(f"{len(errors)} invalid SMILES, the first: {errors[0]}")
        return np.stack([output["embedding"] for output in outputs])


class MolecularEmbeddingPipeline(MolecularPropertyPredictionPipeline):
    """The same pipeline with `mode="embed"` by default: SMILES -> pooled student representation."""

    default_mode = EMBED


# ---------------------------------------------------------------------------------------------------- shipped models


def predict_values(
    pipe: MolecularPropertyPredictionPipeline, smiles: Sequence[str], batch_size: int = 256
) -> np.ndarray:
    """(N, T) predictions of a `molecular-property-prediction` pipeline, in the order of its `label_names`; a
    molecule the pipeline cannot predict is a ValueError naming it (a test split holds none)."""
    outputs = pipe.predict(list(smiles), batch_size=batch_size)
    failed = [output["error"] for output in outputs if output["error"] is not None]
    if failed:
        raise ValueError(f"{len(failed)} molecule(s) could not be predicted, the first: {failed[0]}")
    return np.array([[output[name] for name in pipe.label_names] for output in outputs], dtype=np.float64)


@dataclass
class SampleCheck:
    """A shipped student against its `test_sample.csv`: the metrics measured when it was shipped and now, and the
    largest change of one prediction."""

    name: str
    expected: dict[str, float]
    measured: dict[str, float]
    max_prediction_change: float
    atol: float

    @property
    def metric_changes(self) -> dict[str, float]:
        return {key: abs(self.measured[key] - value) for key, value in self.expected.items() if key in self.measured}

    @property
    def ok(self) -> bool:
        missing = set(self.expected) - set(self.measured)
        changes = self.metric_changes.values()
        return not missing and self.max_prediction_change <= self.atol and all(c <= self.atol for c in changes)

    def summary(self) -> str:
        worst = max(self.metric_changes.items(), key=lambda item: item[1], default=("none", 0.0))
        return (
            f"{self.name}: largest prediction change {self.max_prediction_change:.2e}, largest metric change "
            f"{worst[1]:.2e} ({worst[0]}), tolerance {self.atol:g}"
        )


def check_shipped_sample(name: str, root: str | os.PathLike | None = None, batch_size: int = 256) -> SampleCheck:
    """Load the shipped student `name` offline (by its name, as a user does) and predict its committed test sample;
    compare with the predictions and metrics recorded when it was shipped (`provenance.json` "sample")."""
    model = shipped_model(name, root)
    if model is None:
        pretrained_path(name, root)  # raises the KeyError that lists what ships
    sample = model.provenance.get("sample")
    if not sample:
        raise ValueError(f"{model.path}: provenance.json records no test sample")
    with open(model.path / sample["file"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    pipe = MolecularPropertyPredictionPipeline.from_pretrained(str(model.path) if root is not None else model.name)
    labels = pipe.label_names
    targets = np.array([[float(row[label]) for label in labels] for row in rows], dtype=np.float64)
    shipped = np.array([[float(row[f"{label}_pred"]) for label in labels] for row in rows], dtype=np.float64)
    predictions = predict_values(pipe, [row["smiles"] for row in rows], batch_size)
    return SampleCheck(
        name=model.name,
        expected={key: float(value) for key, value in sample["metrics"].items()},
        measured=per_label_metrics(predictions, targets, labels),
        max_prediction_change=float(np.max(np.abs(predictions - shipped))) if len(rows) else 0.0,
        atol=float(sample.get("atol", SAMPLE_ATOL)),
    )


# `pipeline("molecular-property-prediction")` with no model loads the shipped default student (by its folder: the
# pipeline() of transformers resolves a model through AutoConfig, which knows no names).
PIPELINE_REGISTRY.register_pipeline(
    "molecular-property-prediction",
    pipeline_class=MolecularPropertyPredictionPipeline,
    pt_model=SafetensorsAutoModelForMolecularPropertyPrediction,
    default={"model": (str(PRETRAINED_DIR / DEFAULT_MODEL), None)},
    type="text",
)
PIPELINE_REGISTRY.register_pipeline(
    "molecular-embedding",
    pipeline_class=MolecularEmbeddingPipeline,
    pt_model=(SafetensorsAutoModelForMolecularPropertyPrediction, SafetensorsAutoModel),
    type="text",
)
