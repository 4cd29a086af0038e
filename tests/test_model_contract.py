"""One contract for every model family, checked by one mixin (in the spirit of transformers' ModelTesterMixin).

Each `Test...` class below names a family's tiny config, its model classes (backbone and heads) and how to collate
its batch; `ModelContractTests` runs the same checks over all of them: forward keywords and `return_dict`, output
classes from `modeling/outputs.py`, the full batch of the modality accepted (unknown keys rejected), safetensors
save/load, padding invariance, bf16 and fp16 autocast forward + backward, and gradient checkpointing where it
applies.
"""

import inspect
import json
import traceback
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map
from transformers import AutoConfig, AutoModel

from molformer_kd.data import load_embedded_qm9
from molformer_kd.data.xtb import load_qm9_xtb
from molformer_kd.modeling import (
    BATCH_KEYS,
    BinaryClassificationPredictor,
    GINConfig,
    GINForMolecularPropertyPrediction,
    GINModel,
    GraphormerConfig,
    GraphormerForDenoising,
    GraphormerForMolecularPropertyPrediction,
    GraphormerModel,
    MulticlassClassificationPredictor,
    PaiNNConfig,
    PaiNNForDenoising,
    PaiNNForEnergyAndForces,
    PaiNNModel,
    RegressionPredictor,
    SchNetConfig,
    SchNetForDenoising,
    SchNetForEnergyAndForces,
    SchNetModel,
    SmilesTransformerConfig,
    SmilesTransformerForMolecularPropertyPrediction,
    SmilesTransformerModel,
    predictor_class,
)
from molformer_kd.modeling import outputs as outputs_module
from molformer_kd.modeling.auto import (
    AutoModelForDenoising,
    AutoModelForEnergyAndForces,
    AutoModelForMolecularPropertyPrediction,
)
from molformer_kd.modeling.modeling_utils import ValidatingCollator
from molformer_kd.tokenization import SmilesTokenizer, StBaseTokenizer
from molformer_kd.tokenization.collators import GraphCollator, PointCloudCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

# Outputs compared across runs: one row per molecule, or one row per token/atom (padded along axis 1).
PER_MOLECULE_FIELDS = ("pooler_output", "logits", "energy")
PER_TOKEN_FIELDS = ("last_hidden_state", "noise_pred", "forces", "atom_energies")
# A 16-bit float rounds within eps/2 relative (bf16: eps = 2^-7, fp16: 2^-10). A tiny 2-layer model rounds its
# activations a few dozen times along any path, so under autocast its outputs differ from the float32 ones by a few
# eps, relative to the outputs' scale (taken as at least 1 since every output is O(1) by construction: normalized
# hidden states and regression targets, eV and eV/Angstrom of small molecules). Measured on the CPU with
# `_autocast_error_in_eps`, every model class below, 5 seeds each: largest error 7.9 eps in bf16 and 7.4 in fp16
# (both the GIN property head, whose BatchNorm divides by running variances), every other class at most 1.9, mean
# of the per-class maxima 1.2 / 1.1. The bound is twice the largest measured error: above the seed-to-seed spread,
# below a float32-sensitive op silently run in 16 bits (tens to hundreds of eps).
AUTOCAST_TOLERANCE_EPS = 16

AUTO_CLASS_OF_OUTPUT = {
    "MolecularModelOutput": AutoModel,
    "AtomisticModelOutput": AutoModel,
    "MolecularPropertyOutput": AutoModelForMolecularPropertyPrediction,
    "DenoisingOutput": AutoModelForDenoising,
    "EnergyAndForcesOutput": AutoModelForEnergyAndForces,
}


def _to(device, tree):
    return tree_map(lambda x: x.to(device) if isinstance(x, torch.Tensor) else x, tree)


class HostSyncRecorder(TorchDispatchMode):
    """Runs a forward on `meta` tensors and records what would synchronise a GPU with the host.

    Why meta, and not patching `Tensor.item` / `__bool__` / `__int__` / `tolist`: a host sync is any read of a device
    tensor's values on the host, and most of them happen inside C++ ops a patch never sees (`nonzero`, boolean-mask
    indexing, `repeat_interleave` without `output_size`, `unique`, a `.cpu()` copy inside a helper). A meta tensor
    has shapes and dtypes but no values, so every op whose Python result or output shape depends on the values fails
    on it: exactly the ops that wait for the device on a GPU. What meta would accept silently is the other
    direction, a tensor built from host data inside `forward` (`torch.tensor(list, device=...)`, a synchronous
    host-to-device copy on a GPU): the recorder wraps the factories that build tensors from host data (they run
    below the dispatcher's view) and records every call, and records every copy of a CPU tensor onto the device
    (`.to`, `copy_`) it sees in the dispatch. `nonzero` is answered with its largest possible shape and recorded,
    so that a family whose design needs one (packing real atoms, a radius graph) is checked for everything else and
    for its documented count. The CUDA variant uses `torch.cuda.set_sync_debug_mode`, the ground truth, where a GPU
    exists."""

    HOST_DATA_FACTORIES = (
        (torch, "tensor"),
        (torch, "as_tensor"),
        (torch, "asarray"),
        (torch, "from_numpy"),
        (torch.Tensor, "new_tensor"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.data_dependent: list[str] = []
        self.host_data: list[str] = []
        self._originals: list = []

    def _recording(self, factory, name):
        def wrapper(*args, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            self.host_data.append(f"torch.{name} at {Path(caller.filename).name}:{caller.lineno}")
            return factory(*args, **kwargs)

        return wrapper

    def __enter__(self):
        for owner, name in self.HOST_DATA_FACTORIES:
            original = getattr(owner, name)
            self._originals.append((owner, name, original))
            setattr(owner, name, self._recording(original, name))
        return super().__enter__()

    def __exit__(self, *exc_info):
        while self._originals:
            owner, name, original = self._originals.pop()
            setattr(owner, name, original)
        return super().__exit__(*exc_info)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
        name = func.overloadpacket.__name__
        if name in ("_to_copy", "copy_") and tensors[-1].device.type == "cpu":
            target = kwargs.get("device") or (tensors[0].device if name == "copy_" else None)
            if target is not None and torch.device(target).type != "cpu":
                self.host_data.append(f"{name} of a CPU tensor of shape {tuple(tensors[-1].shape)} onto the device")
        if name == "nonzero" and tensors[0].device.type == "meta":
            self.data_dependent.append(name)
            source = tensors[0]
            return torch.empty(source.numel(), source.dim(), dtype=torch.long, device="meta")
        return func(*args, **kwargs)


def qm9_rows(count=4):
    return [dict(row) for row in load_embedded_qm9()["train"].select(range(count))]


class ModelContractTests:
    """The shared checks. A family's test class sets `model_classes` and defines `make_config()` and
    `collate(rows)` (the full batch of its modality, labels included) and `rows` (a few molecules of different
    sizes); `head_inputs(batch)` adds inputs a head needs beyond the batch (the denoising noise)."""

    model_classes: tuple = ()
    checkpointing: bool = False
    # Host syncs a family's forward needs by design, documented in its module (data-dependent shapes).
    structural_syncs: tuple = ()

    def head_inputs(self, model, batch) -> dict:
        return batch

    def make_model(self, model_class, seed=0):
        torch.manual_seed(seed)
        return model_class(self.make_config()).eval()

    def inputs(self, model, rows):
        return self.head_inputs(model, self.collate(rows))

    @staticmethod
    def loss_of(output):
        if getattr(output, "loss", None) is not None:
            return output.loss
        return output.last_hidden_state.float().square().mean()

    # -------------------------------------------------------------------------------------------------- checks

    def test_forward_keywords_and_return_dict(self, model_class):
        model = self.make_model(model_class)
        parameters = inspect.signature(model.forward).parameters
        for keyword in ("output_attentions", "output_hidden_states", "return_dict"):
            assert keyword in parameters, f"{model_class.__name__}.forward lacks {keyword}"
        inputs = self.inputs(model, self.rows)
        assert set(self.collate(self.rows)) <= BATCH_KEYS[model.input_modality]
        with torch.no_grad():
            output = model(**inputs)
            as_tuple = model(**inputs, return_dict=False)
            model.config.return_dict = False
            config_tuple = model(**inputs)
            model.config.return_dict = True
            hidden = model(**inputs, output_hidden_states=True)
        assert type(output).__module__ == outputs_module.__name__
        assert isinstance(as_tuple, tuple) and isinstance(config_tuple, tuple)
        expected = output.to_tuple()
        for got in (as_tuple, config_tuple):
            assert len(got) == len(expected)
            for a, b in zip(got, expected):
                if isinstance(b, torch.Tensor):
                    assert torch.equal(a, b)
        assert hidden.hidden_states is not None and len(hidden.hidden_states) >= 2
        assert output.hidden_states is None

    def test_full_batch_accepted_and_unknown_keys_rejected(self, model_class):
        model = self.make_model(model_class)
        inputs = self.inputs(model, self.rows)
        with torch.no_grad():
            with_everything = model(**inputs)
            without_labels = model(**{key: value for key, value in inputs.items() if key != "labels"})
        for field in PER_MOLECULE_FIELDS + PER_TOKEN_FIELDS:
            if getattr(with_everything, field, None) is not None:
                assert torch.equal(getattr(with_everything, field), getattr(without_labels, field))
        with pytest.raises(TypeError, match="labelz"):
            model(**inputs, labelz=torch.zeros(1))

    def test_save_and_reload_gives_identical_outputs(self, model_class, tmp_path):
        model = self.make_model(model_class)
        inputs = self.inputs(model, self.rows)
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").is_file()
        with torch.no_grad():
            expected = model(**inputs)
        auto_class = AUTO_CLASS_OF_OUTPUT[type(expected).__name__]
        reloaded = auto_class.from_pretrained(tmp_path).eval()
        assert type(reloaded) is model_class
        with torch.no_grad():
            got = reloaded(**inputs)
        for field in PER_MOLECULE_FIELDS + PER_TOKEN_FIELDS:
            if getattr(expected, field, None) is not None:
                assert torch.equal(getattr(got, field), getattr(expected, field)), field

    def test_padding_does_not_change_outputs(self, model_class):
        model = self.make_model(model_class)
        with torch.no_grad():
            together = model(**self.inputs(model, self.rows))
            for index, row in enumerate(self.rows):
                alone = model(**self.inputs(model, [row]))
                compared = 0
                for field in PER_MOLECULE_FIELDS + PER_TOKEN_FIELDS:
                    single = getattr(alone, field, None)
                    if single is None:
                        continue
                    batched = getattr(together, field)[index]
                    if field in PER_TOKEN_FIELDS:
                        batched = batched[: single.shape[1]]
                    torch.testing.assert_close(batched, single[0], atol=1e-5, rtol=1e-5, msg=field)
                    compared += 1
                assert compared >= 2

    def _autocast_error_in_eps(self, model_class, dtype, device="cpu", seed=0) -> dict[str, float]:
        """Forward (fp32 reference, then under autocast) and backward under autocast on `device`: the largest error
        of each output field, in units of `dtype`'s eps times the output's scale (at least 1)."""
        model = self.make_model(model_class, seed).to(device)
        inputs = _to(device, self.inputs(model, self.rows))
        reference = model(**inputs)
        with torch.autocast(device, dtype=dtype):
            output = model(**inputs)
            loss = self.loss_of(output)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        errors = {}
        for field in PER_MOLECULE_FIELDS + PER_TOKEN_FIELDS:
            expected = getattr(reference, field, None)
            if expected is None:
                continue
            got = getattr(output, field).float()
            assert torch.isfinite(got).all(), field
            scale = expected.detach().abs().max().clamp(min=1.0)
            errors[field] = float((got - expected.detach()).abs().max().detach() / (torch.finfo(dtype).eps * scale))
        assert errors
        return errors

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
    def test_autocast_forward_and_backward(self, model_class, dtype):
        for field, error in self._autocast_error_in_eps(model_class, dtype).items():
            assert error <= AUTOCAST_TOLERANCE_EPS, f"{field}: {dtype} error {error:.3g} eps"

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
    def test_autocast_forward_and_backward_on_cuda(self, model_class, dtype):
        for field, error in self._autocast_error_in_eps(model_class, dtype, device="cuda").items():
            assert error <= AUTOCAST_TOLERANCE_EPS, f"{field}: {dtype} error {error:.3g} eps on CUDA"

    def test_forward_and_backward_make_no_host_sync(self, model_class):
        """A training step's forward and backward, on meta tensors (`HostSyncRecorder`): no value is read on the
        host and no host data is copied to the device, beyond the family's documented `structural_syncs`."""
        model = self.make_model(model_class).train()
        inputs = _to("meta", self.inputs(model, self.rows))
        model.to("meta")
        recorder = HostSyncRecorder()
        try:
            with recorder:
                loss = self.loss_of(model(**inputs))
                loss.backward()
        except (NotImplementedError, RuntimeError) as error:
            pytest.fail(f"{model_class.__name__} reads tensor values on the host (a GPU sync): {error}")
        assert loss.device.type == "meta"
        assert recorder.host_data == [], recorder.host_data
        assert recorder.data_dependent == list(self.structural_syncs)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    def test_forward_and_backward_make_no_host_sync_on_cuda(self, model_class):
        model = self.make_model(model_class).cuda().train()
        inputs = _to("cuda", self.inputs(model, self.rows))
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                self.loss_of(model(**inputs)).backward()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
        # One sync per structural nonzero (the count it copies to the host), nothing else.
        assert len(syncs) <= len(self.structural_syncs), syncs

    def test_gradient_checkpointing_gives_same_loss_and_grads(self, model_class):
        if not self.checkpointing:
            assert not model_class.supports_gradient_checkpointing
            pytest.skip(f"{model_class.__name__} has no layers to checkpoint")
        losses, grads, attention_calls = [], [], []
        for checkpointed in (False, True):
            model = self.make_model(model_class).train()
            if checkpointed:
                model.activation_checkpointing_enable()
            calls = []
            for module in model.modules():
                if type(module).__name__ == "MultiheadSelfAttention":
                    module.register_forward_hook(lambda *args, calls=calls: calls.append(1))
            loss = self.loss_of(model(**self.inputs(model, self.rows)))
            loss.backward()
            losses.append(loss.detach())
            grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
            attention_calls.append(len(calls))
        assert torch.equal(losses[0], losses[1])
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-7, rtol=1e-6, msg=name)
        assert attention_calls[1] == 2 * attention_calls[0]  # each layer ran again in the backward pass


def _parametrize(cls):
    """Run every mixin check once per model class of the family."""
    return pytest.mark.parametrize("model_class", cls.model_classes, ids=[c.__name__ for c in cls.model_classes])(cls)


# ------------------------------------------------------------------------------------------------------ families


class GraphFamily(ModelContractTests):
    """Graph batches featurized with coordinates: 2D models get (and ignore) `pos` too."""

    rows = tuple(qm9_rows())

    def collate(self, rows):
        featurizer = MoleculeFeaturizer()
        batch = GraphCollator()([featurizer.featurize(row["smiles"], pos=row["pos"]) for row in rows])
        batch["labels"] = torch.tensor([[row["gap"]] for row in rows], dtype=torch.float32)
        return batch


@_parametrize
class TestGraphormer2D(GraphFamily):
    model_classes = (GraphormerModel, GraphormerForMolecularPropertyPrediction)
    checkpointing = True

    def make_config(self):
        return GraphormerConfig.from_preset("tiny", num_labels=1, label_mean=[6.8], label_std=[1.3])


@_parametrize
class TestGraphormer3D(GraphFamily):
    model_classes = (GraphormerModel, GraphormerForMolecularPropertyPrediction, GraphormerForDenoising)
    checkpointing = True

    def make_config(self):
        return GraphormerConfig.from_preset("tiny", geometry="3d", num_labels=1)

    def head_inputs(self, model, batch):
        if isinstance(model, GraphormerForDenoising):
            # A function of each atom's own position, so that a molecule gets the same noise alone or in a batch.
            noise = torch.sin(7.0 * batch["pos"]) * batch["attention_mask"][..., None]
            batch["pos"], batch["noise"] = batch["pos"] + 0.04 * noise, noise
        return batch


@_parametrize
class TestGraphormer2D3D(GraphFamily):
    model_classes = (GraphormerModel, GraphormerForMolecularPropertyPrediction)
    checkpointing = True

    def make_config(self):
        return GraphormerConfig.from_preset("tiny", geometry="2d+3d", num_labels=1, label_mean=[6.8], label_std=[1.3])


@_parametrize
class TestGIN(GraphFamily):
    model_classes = (GINModel, GINForMolecularPropertyPrediction)
    structural_syncs = ("nonzero",)  # packing the real atoms (modeling_gin.py)

    def make_model(self, model_class, seed=0):
        model = super().make_model(model_class, seed)
        # Non-trivial BatchNorm running statistics, which eval mode uses.
        generator = torch.Generator().manual_seed(seed)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
        return model

    def make_config(self):
        return GINConfig.from_preset("tiny", num_labels=1)


class SmilesFamily(ModelContractTests):
    rows = tuple(row["smiles"] for row in qm9_rows())
    checkpointing = True
    model_classes = (SmilesTransformerModel, SmilesTransformerForMolecularPropertyPrediction)

    def collate(self, rows):
        batch = dict(self.tokenizer(list(rows), padding=True, return_tensors="pt"))
        batch["labels"] = torch.arange(len(rows), dtype=torch.float32)[:, None]
        return batch


@_parametrize
class TestSmilesTransformerSTKD(SmilesFamily):
    tokenizer = SmilesTokenizer()

    def make_config(self):
        return SmilesTransformerConfig.from_preset("tiny", vocab_size=len(self.tokenizer), num_labels=1)


@_parametrize
class TestSmilesTransformerSTBase(SmilesFamily):
    tokenizer = StBaseTokenizer()

    def make_config(self):
        sizes = {"num_plain_layers": 2, "num_biased_layers": 0, "vocab_size": len(self.tokenizer)}
        return SmilesTransformerConfig.from_preset("tiny", variant="st_base", num_labels=1, **sizes)


# Per-element reference energies (eV, H C N O F), shift and scale: config constants the models keep on the device.
ENERGY_STATISTICS = {
    "atom_reference_energies": [0.0, -10.7072, 0, 0, 0, 0, -48.2571, -71.3542, -102.4681, -127.1938],
    "energy_shift": 0.13,
    "energy_scale": 0.7,
}


class PointCloudFamily(ModelContractTests):
    rows = tuple(load_qm9_xtb()["test"][i] for i in range(3))
    structural_syncs = ("nonzero", "nonzero")  # the radius graph: real atoms, then pairs within the cutoff (gnn3d.py)

    def collate(self, rows):
        return PointCloudCollator()(list(rows))

    def head_inputs(self, model, batch):
        if isinstance(model, (PaiNNForDenoising, SchNetForDenoising)):
            # A function of each atom's own position, so that a molecule gets the same noise alone or in a batch.
            noise = torch.sin(7.0 * batch["pos"]) * batch["atom_mask"][..., None]
            batch["pos"], batch["noise"] = batch["pos"] + 0.04 * noise, noise
        return batch

    def loss_of(self, output):
        if getattr(output, "energy", None) is not None:
            # The force term dominates and, with direct forces, leaves the energy readout without gradient.
            return output.loss + output.energy.sum()
        if getattr(output, "loss", None) is not None:
            return output.loss
        return output.last_hidden_state.float().square().mean()


@_parametrize
class TestSchNet(PointCloudFamily):
    model_classes = (SchNetModel, SchNetForEnergyAndForces, SchNetForDenoising)

    def make_config(self):
        return SchNetConfig(hidden_size=16, num_filters=12, num_layers=2, num_rbf=10, **ENERGY_STATISTICS)


@_parametrize
class TestPaiNN(PointCloudFamily):
    model_classes = (PaiNNModel, PaiNNForEnergyAndForces, PaiNNForDenoising)

    def make_config(self):
        return PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8, **ENERGY_STATISTICS)


# ------------------------------------------------------------------------------------------ beyond the mixin


def test_every_model_type_has_the_package_prefix_and_old_names_still_load(tmp_path):
    from molformer_kd.modeling.modeling_utils import MolecularPreTrainedModel

    for config_class in (GraphormerConfig, GINConfig, SmilesTransformerConfig, SchNetConfig, PaiNNConfig):
        assert config_class.model_type.startswith("molformer_")
    torch.manual_seed(0)
    model = PaiNNForEnergyAndForces(PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8)).eval()
    model.save_pretrained(tmp_path / "old")
    config_file = tmp_path / "old" / "config.json"
    saved = json.loads(config_file.read_text())
    saved["model_type"] = "painn"  # a checkpoint written before the rename
    config_file.write_text(json.dumps(saved))
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "old"), PaiNNConfig)
    reloaded = AutoModelForEnergyAndForces.from_pretrained(tmp_path / "old")
    assert isinstance(reloaded, PaiNNForEnergyAndForces) and isinstance(reloaded, MolecularPreTrainedModel)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
    reloaded.save_pretrained(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "config.json").read_text())["model_type"] == "molformer_painn"
    schnet_config = SchNetConfig(hidden_size=16, num_filters=12, num_layers=2, num_rbf=10).to_dict()
    schnet_config["model_type"] = "schnet"
    assert isinstance(AutoConfig.for_model(**schnet_config), SchNetConfig)


def test_collated_batches_use_only_their_modality_keys():
    graph = GraphFamily().collate(GraphFamily.rows)
    assert set(graph) <= BATCH_KEYS["graph"] and "pos" in graph
    for tokenizer in (SmilesTokenizer(), StBaseTokenizer()):
        assert set(tokenizer(["CCO"], return_tensors="pt")) <= BATCH_KEYS["smiles"]
    assert set(PointCloudFamily().collate(PointCloudFamily.rows)) == BATCH_KEYS["point_cloud"]


def test_value_checks_run_in_collators_and_in_cpu_forward_only():
    """The value-range checks (`check_input_values`) give the same clear error from a validating collator (the CPU
    batch, the path to a GPU), from `validate_inputs`, and from `forward` on CPU tensors; a forward whose inputs hold
    no readable values (meta here, a GPU in use) skips them instead of synchronising."""
    torch.manual_seed(0)
    model = GraphormerForMolecularPropertyPrediction(GraphormerConfig.from_preset("tiny", geometry="3d", num_labels=1))
    batch = GraphFamily().collate(GraphFamily.rows)
    model.validate_inputs(batch)
    bad = dict(batch, input_nodes=batch["input_nodes"].clone())
    bad["input_nodes"][0, 0, 0] = model.config.num_atom_types + 5
    with pytest.raises(ValueError, match="input_nodes column 0"):
        model.validate_inputs(bad)
    with pytest.raises(ValueError, match="input_nodes column 0"):
        model(**bad)
    with pytest.raises(ValueError, match="batch: input_nodes column 0"):
        ValidatingCollator(lambda rows: bad, student_config=model.config)(GraphFamily.rows)
    with pytest.raises(ValueError, match="teacher_inputs: input_nodes column 0"):
        ValidatingCollator(lambda rows: {"teacher_inputs": bad, "student_inputs": batch}, None, model.config)([])
    ValidatingCollator(lambda rows: {"teacher_inputs": bad, "student_inputs": batch}, model.config)([])  # no teacher
    model.to("meta")(**_to("meta", bad))  # not read: no error, no sync

    points = PointCloudFamily().collate(PointCloudFamily.rows)
    schnet = SchNetModel(SchNetConfig(hidden_size=16, num_filters=12, num_layers=2, num_rbf=10, max_atomic_number=5))
    for check in (
        schnet.validate_inputs,
        lambda inputs: schnet(**inputs),
        ValidatingCollator(lambda rows: rows, student_config=schnet.config),
    ):
        with pytest.raises(ValueError, match=r"this model embeds 1\.\.5"):
            check(points)


# ------------------------------------------------------------------------------------------------- predictors


def _predictor_config(problem_type=None, **overrides):
    return GINConfig.from_preset("tiny", num_labels=2, problem_type=problem_type, **overrides)


def test_predictor_is_chosen_once_from_the_config():
    assert predictor_class(None) is RegressionPredictor
    for name, expected in (
        ("regression", RegressionPredictor),
        ("multi_label_classification", BinaryClassificationPredictor),
        ("classification", BinaryClassificationPredictor),  # the distill config's name of the same task
        ("single_label_classification", MulticlassClassificationPredictor),
    ):
        assert predictor_class(name) is expected
    with pytest.raises(ValueError, match="unknown problem_type 'binary'"):
        predictor_class("binary")
    heads = {}
    for problem_type in ("regression", "multi_label_classification", "single_label_classification"):
        torch.manual_seed(0)
        model = GINForMolecularPropertyPrediction(_predictor_config(problem_type))
        assert type(model.head) is predictor_class(problem_type) and model.head.problem_type == problem_type
        heads[problem_type] = {k: v.shape for k, v in model.state_dict().items() if k.startswith("head.")}
    # One checkpoint layout for every task, so a backbone and head load across problem types.
    assert heads["regression"] == heads["multi_label_classification"] == heads["single_label_classification"]


def test_regression_predictor_normalizes_targets_and_masks_missing_labels():
    config = _predictor_config(label_mean=[1.0, -2.0], label_std=[0.5, 3.0], label_names=["gap", "mu"])
    predictor = RegressionPredictor(config)
    raw = torch.tensor([[0.2, -1.0], [1.5, 0.3], [-0.4, 2.0]], requires_grad=True)
    labels = torch.tensor([[1.0, float("nan")], [2.0, 4.0], [float("nan"), float("nan")]])
    logits = predictor.logits(raw)
    torch.testing.assert_close(logits, raw * torch.tensor([0.5, 3.0]) + torch.tensor([1.0, -2.0]))
    assert torch.equal(predictor.transform(logits), logits)
    normalized = torch.tensor([(1.0 - 1.0) / 0.5, (2.0 - 1.0) / 0.5, (4.0 + 2.0) / 3.0])
    observed_raw = torch.stack([raw[0, 0], raw[1, 0], raw[1, 1]])
    loss = predictor.loss(raw, labels)
    torch.testing.assert_close(loss, (observed_raw - normalized).abs().mean())
    loss.backward()
    assert raw.grad[0, 1] == 0 and raw.grad[2].abs().max() == 0
    mse = RegressionPredictor(_predictor_config(label_mean=[1.0, -2.0], label_std=[0.5, 3.0], regression_loss="mse"))
    torch.testing.assert_close(mse.loss(raw, labels), (observed_raw - normalized).square().mean())
    assert predictor.prediction_suffix == "_pred" and predictor.task == "regression"
    metrics = predictor.metrics(logits.detach().numpy(), labels.numpy())
    names = (*predictor.metric_names, "count")
    assert set(metrics) == {f"{label}_{name}" for label in ("gap", "mu") for name in names}
    gap_errors = (logits[:2, 0].detach() - torch.tensor([1.0, 2.0])).abs()
    assert metrics["gap_count"] == 2 and metrics["gap_mae"] == pytest.approx(float(gap_errors.mean()))
    with pytest.raises(ValueError, match="regression_loss"):
        RegressionPredictor(_predictor_config(regression_loss="huber"))


def test_classification_predictors_use_their_losses_and_probabilities():
    binary = BinaryClassificationPredictor(_predictor_config("multi_label_classification"))
    raw = torch.tensor([[2.0, -1.0], [-0.5, 0.7]], requires_grad=True)
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    observed = torch.tensor([[True, False], [True, True]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(raw[observed], labels[observed])
    torch.testing.assert_close(binary.loss(raw, labels), expected)
    assert torch.equal(binary.logits(raw), raw)
    torch.testing.assert_close(binary.transform(raw), torch.sigmoid(raw))
    assert binary.prediction_suffix == "_prob" and binary.task == "classification"
    metrics = binary.metrics(binary.transform(raw).detach().numpy(), labels.numpy())
    assert set(metrics) == {f"label_{i}_{m}" for i in range(2) for m in (*binary.metric_names, "count")}
    nothing_observed = binary.loss(raw, torch.full_like(labels, float("nan")))
    assert nothing_observed == 0
    nothing_observed.backward()
    assert raw.grad.abs().max() == 0

    config = _predictor_config("single_label_classification", id2label={0: "inactive", 1: "active"})
    multiclass = MulticlassClassificationPredictor(config)
    assert multiclass.label_names == ["inactive", "active"]
    class_ids = torch.tensor([[1.0], [float("nan")]])
    expected = torch.nn.functional.cross_entropy(raw[:1], torch.tensor([1]))
    torch.testing.assert_close(multiclass.loss(raw, class_ids), expected)
    torch.testing.assert_close(multiclass.transform(raw), torch.softmax(raw, dim=-1))
    probabilities = multiclass.transform(raw).detach().numpy()
    assert multiclass.metrics(probabilities, class_ids.numpy()) == {"accuracy": 0.0, "count": 1}
