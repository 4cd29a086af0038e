"""Sharing distilled students: model cards, parity plots, `push_student_to_hub`, and safetensors-only loading.

A student directory is what `save_pretrained` writes: `config.json`, `model.safetensors` (or safetensors shards and
their index), and the processor that turns SMILES into model inputs (`preprocessor_config.json` of a
`MoleculeFeaturizer` for graph students, the tokenizer files for SMILES students; energy/force models read atoms and
positions and have none). `push_student_to_hub` uploads exactly those files plus a model card (README.md: data,
teacher, metrics, a comparison with other models on the same split, the applicability domain, intended use and limits)
and its parity plot. The card follows what config.json says the model is: a property student (SMILES in, the
property pipeline) or an interatomic potential (`AutoModelForEnergyAndForces`: energies and forces, the ASE
calculator). Pickle checkpoints (`pytorch_model.bin`, `*.pt`, `*.pkl`) are never uploaded and never loaded:
unpickling runs arbitrary code.
"""

from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from .data.pretrained import resolve_pretrained_name

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from huggingface_hub import CommitInfo
    from numpy.typing import ArrayLike
    from transformers import PreTrainedModel

MODEL_CARD_NAME = "README.md"
PARITY_PLOT_NAME = "parity_plot.png"

# Files that make up a shareable student; anything else in the directory (trainer state, optimizer, logs) stays local.
STUDENT_FILE_PATTERNS = (
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    MODEL_CARD_NAME,
    PARITY_PLOT_NAME,
)
PICKLE_WEIGHT_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt", "tf_model.h5", "flax_model.msgpack")


class UnsafeCheckpointError(OSError):
    """A checkpoint ships only pickle weights (`pytorch_model.bin`, ...), which molformer_kd refuses to load."""


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


# ---------------------------------------------------------------------------------------------------- parity plot


def _finite_pairs(y_true: np.ndarray, y_pred: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y_true) & np.isfinite(y_pred)
    if not keep.any():
        raise ValueError(f"no finite (true, predicted) pair to plot for {label!r}")
    return y_true[keep], y_pred[keep]


def _draw_parity(ax: Any, y_true: np.ndarray, y_pred: np.ndarray, label: str) -> None:
    mae = float(np.mean(np.abs(y_pred - y_true)))
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y_pred - y_true) ** 2)) / total if total > 0 else float("nan")
    low = float(min(y_true.min(), y_pred.min()))
    high = float(max(y_true.max(), y_pred.max()))
    margin = 0.05 * (high - low) if high > low else 1.0
    ax.scatter(y_true, y_pred, s=8, alpha=0.5, edgecolors="none")
    ax.plot([low - margin, high + margin], [low - margin, high + margin], color="black", lw=1, ls="--")
    ax.set_xlim(low - margin, high + margin)
    ax.set_ylim(low - margin, high + margin)
    ax.set_aspect("equal")
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_title(f"{label}: MAE {mae:.4g}, R$^2$ {r2:.3f} (n={y_true.size})")


def make_parity_plot(
    y_true: ArrayLike, y_pred: ArrayLike, path: str | os.PathLike, label: str | Sequence[str] = "value"
) -> Path:
    """Scatter of predicted vs. true values with the y = x line, MAE and R^2 in the title; saves a PNG at `path`.

    One label: `y_true` and `y_pred` hold its values. Several labels (`label` a list of T names): they are (N, T)
    arrays and the PNG has one panel per label, side by side. NaN pairs (missing labels) are left out. Uses the
    non-interactive Agg backend, so it works without a display.
    """
    labels = [label] if isinstance(label, str) else list(label)
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}")
    if isinstance(label, str):
        y_true, y_pred = y_true.reshape(-1, 1), y_pred.reshape(-1, 1)
    elif y_true.ndim != 2 or y_true.shape[1] != len(labels):
        raise ValueError(f"{len(labels)} labels need (N, {len(labels)}) arrays, got shape {y_true.shape}")
    panels = [(*_finite_pairs(y_true[:, k], y_pred[:, k], name), name) for k, name in enumerate(labels)]
    return _save_parity_panels(panels, path)


def _save_parity_panels(panels: Sequence[tuple[np.ndarray, np.ndarray, str]], path: str | os.PathLike) -> Path:
    """One parity panel per (finite y_true, y_pred, label), side by side, saved as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), dpi=120, squeeze=False)
    try:
        for ax, (true, pred, name) in zip(axes[0], panels):
            _draw_parity(ax, true, pred, name)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _write_card_parity_plot(parity: dict[str, Any] | Sequence[dict[str, Any]], path: Path) -> None:
    """The card's parity plot from `StudentCardInfo.parity`: one dict (`make_parity_plot`'s arguments) or a list of
    dicts, one panel each, whose value counts may differ (a potential's energies per molecule beside its force
    components per atom)."""
    if isinstance(parity, dict):
        make_parity_plot(parity["y_true"], parity["y_pred"], path, parity.get("label", "value"))
        return
    panels = []
    for panel in parity:
        label = panel.get("label", "value")
        y_true = np.asarray(panel["y_true"], dtype=np.float64).ravel()
        y_pred = np.asarray(panel["y_pred"], dtype=np.float64).ravel()
        if y_true.shape != y_pred.shape:
            raise ValueError(f"{label!r}: y_true has {y_true.size} values but y_pred has {y_pred.size}")
        panels.append((*_finite_pairs(y_true, y_pred, label), label))
    _save_parity_panels(panels, path)


# ---------------------------------------------------------------------------------------------------- model card


@dataclass
class StudentCardInfo:
    """What a model card says. Every field is optional; missing ones are left out of the card.

    The same fields serve a property student and an energy/force model (an interatomic potential); `write_model_card`
    tells them apart by config.json (`energy_and_forces_class`).
    `metrics` is either `{"mae": 0.12}` (one split) or `{"test": {"mae": 0.12, "r2": 0.9}, "validation": {...}}`.
    `parity` holds `{"y_true": [...], "y_pred": [...], "label": "gap (eV)"}` to draw the parity plot (or (N, T)
    values and a list of T labels: one panel each), or a list of such dicts with flat values, one panel each, whose
    counts may differ (a potential's energies per molecule and force components per atom); `parity_plot` is the path
    of an existing PNG instead.
    `comparison` holds other models' metrics on the same split, `{"teacher": {"gap_mae": 0.1}, "chemprop": {...}}`:
    a table with this model's `metrics["test"]` (or its flat metrics) in the first column, `comparison_note` above it.
    `intended_use`, `limitations` and `reproducibility` are sections of their own; `usage` (markdown) replaces the
    default usage section. The applicability domain section comes from config.json (`applicability_domain`) when the
    model has one; a potential without one gets `training_elements` (element symbols of its training data) or else
    the elements config.json has fitted reference energies for.
    """

    model_name: str | None = None
    description: str | None = None
    data: str | None = None
    datasets: list[str] = field(default_factory=list)
    teacher: str | None = None
    objective: str | None = None
    training: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] | list[dict[str, Any]] | None = None
    parity_plot: str | None = None
    license: str | None = "mit"
    tags: list[str] = field(default_factory=list)
    comparison: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison_note: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    reproducibility: str | None = None
    usage: str | None = None
    training_elements: list[str] | None = None

    @classmethod
    def coerce(cls, info: StudentCardInfo | dict | None) -> StudentCardInfo:
        if info is None:
            return cls()
        if isinstance(info, cls):
            return info
        unknown = set(info) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown model card field(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**info)


def energy_and_forces_class(config: dict) -> type[PreTrainedModel] | None:
    """The `...ForEnergyAndForces` class a config.json dict describes, or None for any other model.

    The registry decides, not a list of names: `model_type` gives the config class, `AutoModelForEnergyAndForces` the
    energy/force model registered for it, and `architectures` must name that class (a PaiNN backbone saved on its own,
    `PaiNNModel`, predicts no energy).
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from .modeling.auto import AutoModelForEnergyAndForces

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        return None
    model_class = AutoModelForEnergyAndForces._model_mapping.get(CONFIG_MAPPING[model_type], None)
    if model_class is None or model_class.__name__ not in (config.get("architectures") or []):
        return None
    return model_class


def _metric_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown table, one row per metric and one column per split (a flat dict is a single 'value' column)."""
    if not metrics:
        return []
    if all(isinstance(v, dict) for v in metrics.values()):
        splits = list(metrics)
        names = list(dict.fromkeys(name for split in splits for name in metrics[split]))
        rows = {name: [metrics[split].get(name) for split in splits] for name in names}
    else:
        splits = ["value"]
        rows = {name: [value] for name, value in metrics.items()}

    lines = ["| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    lines += [f"| {name} | " + " | ".join(_format_value(v) for v in values) + " |" for name, values in rows.items()]
    return lines


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _comparison_table(own: dict[str, Any], others: dict[str, dict[str, Any]], own_name: str) -> list[str]:
    """Markdown table of the metrics this model shares with the others (rows), this model first (columns); counts
    (`<label>_count`) are left out."""
    names = [name for name in own if not name.endswith("_count")]
    columns = [own_name, *others]
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name in names:
        values = [own.get(name)] + [metrics.get(name) for metrics in others.values()]
        lines.append(f"| {name} | " + " | ".join(_format_value(v) for v in values) + " |")
    return lines


def _metric_names(metrics: dict[str, Any]) -> set[str]:
    """Every metric name of `StudentCardInfo.metrics`, flat or per split."""
    if metrics and all(isinstance(v, dict) for v in metrics.values()):
        return {name for split in metrics.values() for name in split}
    return set(metrics)


def _domain_section(intro: str, constraints: Iterable[str], closing: str) -> list[str]:
    """The model card's applicability-domain section: what the training molecules span, and what that means."""
    return ["## Applicability domain", "", intro, "", *(f"- {line}" for line in constraints), "", closing, ""]


def _domain_intro(source: str | None) -> str:
    source = f" ({source})" if source else ""
    return f"The molecules this model learned from{source} span:"


def _read_config(student_dir: Path) -> dict:
    import json

    config_path = student_dir / "config.json"
    return json.loads(config_path.read_text()) if config_path.is_file() else {}


@dataclass
class _KindText:
    """The parts of a model card that depend on what the model is: a property student or an interatomic potential."""

    summary: list[str]  # paragraphs under the title
    model_facts: list[str]  # lines of the "Model" section after its type and size
    metric_notes: list[str]  # lines under the metrics table
    domain: list[str]  # the applicability-domain section
    usage: list[str]  # the default usage section's body
    tags: list[str] = field(default_factory=list)


def _property_student_text(config: dict, title: str) -> _KindText:
    """A 2D student: SMILES in, its labels out; the property pipeline and `molformer-kd predict` serve it."""
    from .data.domain import ApplicabilityDomain

    model_type = config.get("model_type", "unknown")
    architectures = config.get("architectures") or []
    label_names = config.get("label_names") or []
    domain = ApplicabilityDomain.from_config(config)
    return _KindText(
        summary=[
            f"A 2D student of type `{model_type}` ({', '.join(architectures) or 'backbone'}) trained with "
            "molformer_kd. It reads SMILES only; the processor saved beside the weights turns SMILES into model "
            "inputs."
        ],
        model_facts=(
            [f"- predicted properties: {', '.join(f'`{n}`' for n in label_names)} (original units)"]
            if label_names
            else []
        ),
        metric_notes=[],
        domain=(
            _domain_section(
                _domain_intro(domain.source),
                domain.describe(),
                "Outside this envelope the model still predicts, but nothing in its training vouches for the value. "
                "The `molecular-property-prediction` pipeline and `molformer-kd predict` flag every prediction: "
                "`in_domain` (true/false) and `domain_reason` (which constraint a molecule breaks, e.g. `element Cl "
                "(training set: C, F, N, O)`). The domain is stored in config.json (`applicability_domain`).",
            )
            if domain is not None
            else []
        ),
        usage=[
            "```python",
            "import molformer_kd  # registers the model, its processor and the pipeline",
            "from transformers import pipeline",
            "",
            f'predict = pipeline("molecular-property-prediction", model="{title}")',
            'predict(["CCO", "c1ccccc1O"])',
            "```",
            "",
            "Or from the command line: `molformer-kd predict --model <this repo> --input smiles.csv --output "
            "preds.csv`.",
        ],
    )


def _energy_force_metric_notes() -> dict[str, str]:
    """What each metric of the energy/force task's evaluate stage (`data.metrics.EnergyForceMetrics`) measures."""
    from .data.metrics import EFWT_ENERGY_THRESHOLD, EFWT_FORCE_THRESHOLD

    return {
        "energy_mae_meV": "mean absolute error of the molecule's energy, meV",
        "force_mae_meV_per_A": "mean absolute error of the force components, meV/Angstrom",
        "force_cos": "mean cosine between predicted and true force vectors (1: same directions)",
        "efwt_percent": (
            f"energy and forces within threshold: % of molecules with |energy error| < {EFWT_ENERGY_THRESHOLD} eV "
            f"and every |force component error| < {EFWT_FORCE_THRESHOLD} eV/Angstrom (OC20's EFwT)"
        ),
    }


def _reference_elements(config: dict) -> list[str]:
    """The elements config.json has a fitted reference energy for (`atom_reference_energies`, indexed by atomic
    number; `data.xtb.fit_atom_reference_energies` leaves the elements absent from the training split at 0)."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    references = config.get("atom_reference_energies") or []
    return [table.GetElementSymbol(number) for number, energy in enumerate(references) if number and energy]


def _potential_text(config: dict, model_class: type[PreTrainedModel], title: str, info: StudentCardInfo) -> _KindText:
    """An interatomic potential: atoms and positions in, energy and forces out; the ASE calculator serves it."""
    from .data.domain import ApplicabilityDomain

    model_type = config.get("model_type", "unknown")
    # config.json holds every setting save_pretrained knows; the class default covers a hand-written one.
    direct_forces = bool(config.get("direct_forces", getattr(model_class.config_class, "direct_forces", False)))
    if direct_forces:
        forces = (
            "Forces come from a direct force head (`direct_forces: true` in config.json), not from the gradient of "
            "the energy: cheap (no backward pass) but not conservative. In NVE molecular dynamics the total energy "
            "drifts, and a geometry optimiser may stop where the predicted forces vanish rather than at a minimum of "
            'the predicted energy. For dynamics and optimisation, `MolformerCalculator(..., force_source="gradient")` '
            "returns -dE/dx of the predicted energy instead (one backward pass)."
        )
        force_fact = "- forces: direct force head (not conservative)"
        calculator_options = ', force_source="gradient"'
        calculator_comment = ["# -dE/dx of the energy: this model's direct forces are not conservative"]
    else:
        forces = (
            "Forces are -dE/dx of the predicted energy (autograd): conservative and consistent with the energy, "
            "as NVE molecular dynamics and geometry optimisation need."
        )
        force_fact = "- forces: -dE/dx of the energy (autograd, conservative)"
        calculator_options, calculator_comment = "", []

    closing = (
        "Outside this envelope (other elements, molecules or geometries unlike the training set's) the potential "
        "still returns energies and forces, but nothing in its training vouches for them; `MolformerCalculator` "
        "does not flag such inputs."
    )
    # The training stages record no domain for potentials; then the card's own statement, else config.json's
    # reference energies, which exist exactly for the training split's elements.
    domain = ApplicabilityDomain.from_config(config)
    reference_elements = _reference_elements(config)
    if domain is not None:
        domain_lines = _domain_section(_domain_intro(domain.source), domain.describe(), closing)
    elif info.training_elements or reference_elements:
        element_line = (
            f"elements: {', '.join(info.training_elements)}"
            if info.training_elements
            else f"elements: {', '.join(reference_elements)} (those with a fitted reference energy in config.json, "
            "`atom_reference_energies`)"
        )
        domain_lines = _domain_section(_domain_intro(None), [element_line], closing)
    else:
        domain_lines = []

    notes = _energy_force_metric_notes()
    return _KindText(
        summary=[
            f"A 3D interatomic potential of type `{model_type}` ({model_class.__name__}) trained with molformer_kd. "
            "It reads the atomic numbers and positions (Angstrom) of every atom of a molecule, hydrogens included, "
            "in any order, and predicts the molecule's energy (eV) and the force on each atom (eV/Angstrom). There "
            "is no processor (no SMILES input), and molecules are isolated: no periodic boundary conditions.",
            forces,
        ],
        model_facts=[
            *([f"- cutoff: {config['cutoff']} Angstrom"] if "cutoff" in config else []),
            "- outputs: energy (eV), forces (eV/Angstrom), per-atom energies (eV)",
            force_fact,
        ],
        metric_notes=[f"- `{name}`: {text}" for name, text in notes.items() if name in _metric_names(info.metrics)],
        domain=domain_lines,
        usage=[
            'With ASE (`pip install "molformer_kd[ase]"`), as a calculator:',
            "",
            "```python",
            "from ase.build import molecule",
            "from ase.md.verlet import VelocityVerlet",
            "from ase.optimize import BFGS",
            "from ase.units import fs",
            "",
            "from molformer_kd.calculators import MolformerCalculator",
            "",
            'atoms = molecule("CH3CH2OH")  # every atom, hydrogens included, positions in Angstrom',
            *calculator_comment,
            f'atoms.calc = MolformerCalculator.from_pretrained("{title}"{calculator_options})',
            "energy, forces = atoms.get_potential_energy(), atoms.get_forces()  # eV, eV/Angstrom",
            "",
            "BFGS(atoms).run(fmax=0.05, steps=200)  # geometry optimisation",
            "atoms.rattle(stdev=0.05, seed=0)  # off the minimum, then NVE molecular dynamics",
            "VelocityVerlet(atoms, timestep=0.5 * fs).run(steps=200)",
            "```",
        ],
        tags=["interatomic-potential"],
    )


def write_model_card(student_dir: str | os.PathLike, info: StudentCardInfo | dict | None = None) -> Path:
    """Write `README.md` (YAML metadata + data, teacher, objective, metrics table, parity plot) into `student_dir`.

    When `info.parity` is given the plot is drawn into `student_dir/parity_plot.png`; an existing `info.parity_plot`
    PNG is copied there. Architecture facts (model type, size, labels) are read from `config.json`, and so is what the
    model is: an energy/force model (`energy_and_forces_class`) gets a potential's description, metric notes,
    applicability domain and ASE usage, any other model a property student's.
    """
    student_dir = Path(student_dir)
    info = StudentCardInfo.coerce(info)
    config = _read_config(student_dir)
    model_type = config.get("model_type", "unknown")
    title = info.model_name or student_dir.name
    energy_class = energy_and_forces_class(config)
    kind = (
        _potential_text(config, energy_class, title, info)
        if energy_class is not None
        else _property_student_text(config, title)
    )

    plot_path = student_dir / PARITY_PLOT_NAME
    if info.parity is not None:
        _write_card_parity_plot(info.parity, plot_path)
    elif info.parity_plot is not None and Path(info.parity_plot).resolve() != plot_path.resolve():
        plot_path.write_bytes(Path(info.parity_plot).read_bytes())

    base_tags = ["molformer_kd", "chemistry", "knowledge-distillation", model_type, *kind.tags, *info.tags]
    metadata: dict[str, Any] = {"library_name": "molformer_kd", "tags": list(dict.fromkeys(base_tags))}
    if info.license:
        metadata["license"] = info.license
    if info.datasets:
        metadata["datasets"] = list(info.datasets)
    metric_names = sorted(_metric_names(info.metrics))
    if metric_names:
        metadata["metrics"] = metric_names

    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "", f"# {title}", ""]
    if info.description:
        lines += [info.description, ""]
    for paragraph in kind.summary:
        lines += [paragraph, ""]
    lines += ["## Model", "", f"- model type: `{model_type}`"]
    for key in ("hidden_size", "num_hidden_layers", "num_layers", "num_attention_heads"):
        if key in config:
            lines.append(f"- {key}: {config[key]}")
    lines += kind.model_facts
    lines.append("")
    for heading, text in (
        ("Training data", info.data),
        ("Teacher", info.teacher),
        ("Distillation objective", info.objective),
        ("Training", info.training),
    ):
        if text:
            lines += [f"## {heading}", "", text, ""]
    if info.metrics:
        lines += ["## Metrics", "", *_metric_table(info.metrics), ""]
        if kind.metric_notes:
            lines += [*kind.metric_notes, ""]
    if info.comparison:
        own = info.metrics.get("test", {}) if all(isinstance(v, dict) for v in info.metrics.values()) else info.metrics
        lines += ["## Comparison on the same test split", ""]
        if info.comparison_note:
            lines += [info.comparison_note, ""]
        lines += [*_comparison_table(own, info.comparison, "this model"), ""]
    if plot_path.is_file():
        lines += ["## Parity plot", "", f"![parity plot]({PARITY_PLOT_NAME})", ""]
    if info.intended_use:
        lines += ["## Intended use", "", info.intended_use, ""]
    lines += kind.domain
    if info.limitations:
        lines += ["## Limitations", "", info.limitations, ""]
    lines += ["## Usage", "", *([info.usage.strip()] if info.usage else kind.usage), ""]
    if info.reproducibility:
        lines += ["## Reproducibility", "", info.reproducibility, ""]
    card_path = student_dir / MODEL_CARD_NAME
    card_path.write_text("\n".join(lines), encoding="utf-8")
    return card_path


# ---------------------------------------------------------------------------------------------------- push


def student_files(student_dir: str | os.PathLike) -> list[Path]:
    """The files of `student_dir` to share; raises `UnsafeCheckpointError` if its weights are pickle-only."""
    student_dir = Path(student_dir)
    if not (student_dir / "config.json").is_file():
        raise FileNotFoundError(f"{student_dir} has no config.json: save the student with save_pretrained first")
    names = sorted(p.name for p in student_dir.iterdir() if p.is_file())
    if not any(fnmatch.fnmatch(name, "*.safetensors") for name in names):
        pickles = [name for name in names if _matches(name, PICKLE_WEIGHT_PATTERNS)]
        detail = f" (it has pickle weights {pickles})" if pickles else ""
        raise UnsafeCheckpointError(
            f"{student_dir} has no *.safetensors weights{detail}; molformer_kd shares and loads safetensors only. "
            "Re-save the model with save_pretrained(dir) (safe_serialization is the default)."
        )
    return [student_dir / name for name in names if _matches(name, STUDENT_FILE_PATTERNS)]


def push_student_to_hub(
    student_dir: str | os.PathLike,
    repo_id: str,
    card_info: StudentCardInfo | dict | None = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload distilled student with molformer_kd",
    revision: str | None = None,
) -> CommitInfo:
    """Create `repo_id` (if needed) and upload the student's weights (safetensors), config, processor files,
    model card and parity plot in one commit. Returns the `CommitInfo`.

    With `card_info` the model card is (re)written from it first; without, an existing README.md is uploaded as is
    and a minimal card is written when there is none. The Hub endpoint comes from `HF_ENDPOINT` as usual.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    student_dir = Path(student_dir)
    if card_info is not None or not (student_dir / MODEL_CARD_NAME).is_file():
        info = StudentCardInfo.coerce(card_info)
        # The card's title is what its usage snippet loads: on the Hub that is the repo, not the local folder's name.
        write_model_card(student_dir, replace(info, model_name=info.model_name or repo_id))
    files = student_files(student_dir)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path)) for path in files]
    return api.create_commit(repo_id, operations=operations, commit_message=commit_message, revision=revision)


# ---------------------------------------------------------------------------------------------------- safe loading


def _has_file(model_id: str, filename: str, revision: str | None, token: str | None) -> bool:
    if os.path.isdir(model_id):
        return os.path.isfile(os.path.join(model_id, filename))
    from huggingface_hub import file_exists
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return file_exists(model_id, filename, revision=revision, token=token)
    except (HfHubHTTPError, OSError, ValueError):
        return False


def safetensors_only_from_pretrained(model_class: type, model_id: str | os.PathLike, **kwargs) -> PreTrainedModel:
    """`model_class.from_pretrained(model_id, use_safetensors=True, **kwargs)` with a clear error for pickle-only
    checkpoints (a directory or repo with `pytorch_model.bin` and no `*.safetensors`). `model_id` may name a shipped
    student (`qm9-gin`, data/pretrained.py), whatever `model_class` is."""
    model_id = resolve_pretrained_name(model_id)
    kwargs["use_safetensors"] = True
    try:
        return model_class.from_pretrained(model_id, **kwargs)
    except OSError as err:
        revision, token = kwargs.get("revision"), kwargs.get("token")
        model_id = str(model_id)
        if _has_file(model_id, "pytorch_model.bin", revision, token) or _has_file(
            model_id, "pytorch_model.bin.index.json", revision, token
        ):
            raise UnsafeCheckpointError(
                f"{model_id} has only pickle weights (pytorch_model.bin) and no model.safetensors. molformer_kd "
                "loads safetensors only, because unpickling a downloaded file can run arbitrary code. If you trust "
                "the file, convert it: load it with torch.load(weights_only=True) and save_pretrained() again."
            ) from err
        raise
