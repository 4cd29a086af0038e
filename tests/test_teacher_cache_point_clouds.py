"""Teacher cache of energy/force distillation: the cached KD-GNN targets equal the live teacher's, and training with
the cache logs the same losses as with the live teacher."""

import pickle

import pytest
import torch
from trainer_helpers import assert_trained_alike, distill_four_steps, training_args

from molformer_kd.data.xtb import load_qm9_xtb
from molformer_kd.distillation.gnn_objectives import TEACHER_TARGETS, TeacherTargets
from molformer_kd.distillation.objectives import TaskObjective
from molformer_kd.distillation.registry import build_objective
from molformer_kd.distillation.teacher_cache import (
    CachedPointCloudCollator,
    PointCloudTeacherCache,
    TeacherCacheError,
    build_point_cloud_cache,
    check_cacheable_collator,
    point_cloud_targets,
)
from molformer_kd.distillation.trainer import DistillationModel, DistillationTrainer
from molformer_kd.modeling.configuration_painn import PaiNNConfig
from molformer_kd.modeling.configuration_schnet import SchNetConfig
from molformer_kd.modeling.modeling_painn import PaiNNForEnergyAndForces
from molformer_kd.modeling.modeling_schnet import SchNetForEnergyAndForces
from molformer_kd.modeling.modeling_utils import ValidatingCollator
from molformer_kd.tokenization.collators import PointCloudCollator

ALL_TARGETS = tuple(sorted(TEACHER_TARGETS))


@pytest.fixture(scope="module")
def data():
    return load_qm9_xtb()


def painn_teacher(seed=0):
    torch.manual_seed(seed)
    return PaiNNForEnergyAndForces(PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8)).eval()


def teacher_forward(teacher):
    def forward(batch):
        return teacher(**batch["teacher_inputs"])

    return forward


def test_cached_targets_equal_the_live_teachers_in_any_order(data, tmp_path):
    """Written in batches of 3, read back in another order and size: every target of every real atom (and each
    molecule's energy) equals the live teacher's on that batch; padding is zero."""
    rows = data["train"].select(range(10))
    teacher, collator = painn_teacher(), PointCloudCollator(paired=True)
    path = tmp_path / "cache.arrow"
    build_point_cloud_cache(path, rows, collator, teacher_forward(teacher), ALL_TARGETS, 3)
    cache = PointCloudTeacherCache([path])
    assert len(cache) == len(rows)

    order = [7, 2, 9, 0, 5]
    cached = cache.padded(order)
    batch = collator([rows[i] for i in order])
    live = teacher(**batch["teacher_inputs"])
    mask = batch["teacher_inputs"]["atom_mask"].bool()
    assert torch.equal(cached["atom_mask"].bool(), mask)
    torch.testing.assert_close(cached["energy"], live.energy.detach())
    for name in ALL_TARGETS:
        if name == "energy":
            continue
        expected = TEACHER_TARGETS[name](live, "test").detach()
        assert cached[name].shape == expected.shape, name
        torch.testing.assert_close(cached[name][mask], expected[mask], msg=name)
        assert not cached[name][~mask].any(), name
    copied = pickle.loads(pickle.dumps(cache)).padded(order)  # DataLoader workers re-map the file
    assert all(torch.equal(copied[name], cached[name]) for name in cached)


@pytest.mark.parametrize("teacher_kind", ["painn", "schnet"])
def test_cached_training_logs_the_same_losses(data, tmp_path, teacher_kind):
    """A few steps of every KD-GNN objective at once (task, vanilla1, vanilla2, n2n, e2n, v2v) with and without the
    cache, same seeds: equal logged train and eval losses and equal final student weights. A SchNet teacher has no
    vectors, so its v2v reads the edge-vector sums. A second run finds the cache files instead of writing new ones."""
    train, validation = data["train"].select(range(12)), data["validation"].select(range(6))

    teacher_calls = []

    def run(name, cache_dir):
        if teacher_kind == "painn":
            teacher = painn_teacher()
        else:
            torch.manual_seed(0)
            config = SchNetConfig(hidden_size=16, num_filters=12, num_layers=2, num_rbf=8)
            teacher = SchNetForEnergyAndForces(config).eval()
        calls = teacher_calls.append(0) or len(teacher_calls) - 1
        teacher.register_forward_hook(lambda *_: teacher_calls.__setitem__(calls, teacher_calls[calls] + 1))
        torch.manual_seed(1)
        student = PaiNNForEnergyAndForces(PaiNNConfig(hidden_size=8, num_layers=1, num_rbf=8))
        names = ("energy_forces", "vanilla1", "vanilla2", "n2n", "e2n", "v2v")
        objectives = {n: build_objective(n, teacher.config, student.config) for n in names}
        weights = {"energy_forces": 1.0, "vanilla1": 0.5, "vanilla2": 0.5, "n2n": 1.0, "e2n": 0.1, "v2v": 1.0}
        return distill_four_steps(
            tmp_path / name,
            DistillationModel(student, objectives, weights),
            teacher,
            PointCloudCollator(paired=True),
            train,
            validation,
            cache_dir,
            per_device_eval_batch_size=3,
            remove_unused_columns=False,
        )

    live = run("live", None)
    cache_dir = tmp_path / "cache"
    cached = run("cached", cache_dir)
    assert isinstance(cached.teacher_cache, PointCloudTeacherCache) and len(cached.teacher_cache) == 18
    assert isinstance(cached.data_collator, CachedPointCloudCollator)
    assert len(list(cache_dir.iterdir())) == 4  # train + validation, each an .arrow file and its .json

    assert_trained_alike(cached, live, "eval_e2n")

    stamps = {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()}
    run("again", cache_dir)
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()} == stamps
    # The cached runs ran the teacher only to write the cache (4 + 2 batches of 3), the second one not at all.
    assert teacher_calls[1] == 6 and teacher_calls[2] == 0 and teacher_calls[0] > 6


def test_cached_batches_carry_targets_not_teacher_inputs(data, tmp_path):
    rows = data["train"].select(range(6))
    teacher = painn_teacher()
    path = tmp_path / "cache.arrow"
    build_point_cloud_cache(path, rows, PointCloudCollator(paired=True), teacher_forward(teacher), ("forces",), 4)
    cache = PointCloudTeacherCache([path])
    collator = CachedPointCloudCollator(PointCloudCollator(paired=True), cache)
    batch = collator([{**rows[i], "__teacher_cache_row__": i} for i in (3, 1)])
    assert "teacher_inputs" not in batch and set(batch["teacher_targets"]) == {"forces", "atom_mask"}
    assert isinstance(TeacherTargets(**batch["teacher_targets"]), TeacherTargets)
    # Rows that are not the cache's (another molecule's row index) are refused, naming the row.
    wrong = [{**rows[i], "__teacher_cache_row__": j} for i, j in ((0, 0), (2, 5))]
    if rows[2]["atomic_numbers"] != rows[5]["atomic_numbers"]:
        with pytest.raises(TeacherCacheError, match="does not belong to these rows"):
            collator(wrong)
    # Rows without a cache row (a dataset the cache was not built for) get the live teacher's batch.
    assert "teacher_inputs" in collator([rows[0]])


def test_refusals():
    teacher_config = PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8)
    student_config = PaiNNConfig(hidden_size=8, num_layers=1, num_rbf=8)
    n2n = build_objective("n2n", teacher_config=teacher_config, student_config=student_config)
    assert point_cloud_targets([TaskObjective(), n2n]) == ("node_features",)
    with pytest.raises(TeacherCacheError, match="reads the teacher's raw output"):
        point_cloud_targets([object()])  # an objective that names no targets
    check_cacheable_collator(PointCloudCollator(paired=True))
    with pytest.raises(TeacherCacheError, match="PointCloudCollator"):
        check_cacheable_collator(PointCloudCollator())


def test_a_validating_collator_keeps_checking_the_student_with_the_cache(data, tmp_path):
    """On an accelerator the stage wraps the collator (ValidatingCollator); the cache is built with the collator
    inside and the cached batches are still checked, for the student."""
    torch.manual_seed(1)
    student = PaiNNForEnergyAndForces(PaiNNConfig(hidden_size=8, num_layers=1, num_rbf=8))
    teacher = painn_teacher()
    objectives = {
        "energy_forces": build_objective("energy_forces", teacher_config=teacher.config, student_config=student.config),
        "n2n": build_objective("n2n", teacher_config=teacher.config, student_config=student.config),
    }
    validating = ValidatingCollator(PointCloudCollator(paired=True), student.config, teacher.config)
    trainer = DistillationTrainer(
        model=DistillationModel(student, objectives, {"energy_forces": 1.0, "n2n": 1.0}),
        args=training_args(tmp_path / "run", max_steps=1, remove_unused_columns=False),
        teacher=teacher,
        data_collator=validating,
        train_dataset=data["train"].select(range(4)),
        teacher_cache_dir=tmp_path / "cache",
    )
    assert isinstance(trainer.data_collator, ValidatingCollator) and trainer.data_collator.teacher_config is None
    assert isinstance(trainer.data_collator.collator, CachedPointCloudCollator)
    trainer.train()
