"""`make demo`: the main job on the embedded QM9 set, end to end on CPU.

1. Train a 3D Graphormer teacher on DFT geometries (HOMO-LUMO gap, eV), distil it with CCMD into a 2D Graphormer
   that reads only the molecular graph, and test both (configs/demo/ccmd.yaml, teacher_eval.yaml).
2. Train the same 2D Graphormer alone with the same budget: the baseline (configs/demo/baseline.yaml).
3. Reload the distilled student with `AutoModel.from_pretrained` / the `molecular-property-prediction` pipeline
   and predict a few SMILES.
4. Predict the same SMILES with the student that ships inside the package (`qm9-gin`: HOMO, LUMO and gap of the full
   QM9 set, loaded by name, offline), with its applicability-domain flags.
Every stage goes through `distill.py`, exactly as a user runs it.
"""

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "demo"
OUTPUT = ROOT / "demo_output"
EXAMPLES = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "O=C1NC(=O)C=C1", "C#CC1(O)CC1"]


def run_distill(config: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "distill.py"), "--config", str(CONFIGS / config)], cwd=ROOT, check=True)
    return time.perf_counter() - start


def test_mae(run_dir: str) -> float:
    metrics = json.loads((OUTPUT / run_dir / "evaluate" / "metrics.json").read_text())
    return metrics["metrics"]["test"]["gap_mae"]


def main():
    import molformer_kd
    from molformer_kd.data import load_embedded_qm9

    records = load_embedded_qm9()
    print("embedded QM9:", {split: len(rows) for split, rows in records.items()}, flush=True)

    seconds = {
        "teacher + CCMD distillation": run_distill("ccmd.yaml"),
        "teacher test": run_distill("teacher_eval.yaml"),
        "2D baseline": run_distill("baseline.yaml"),
    }

    from transformers import AutoModel, pipeline

    student_dir = OUTPUT / "ccmd" / "distill"
    backbone = AutoModel.from_pretrained(student_dir)
    predict = pipeline("molecular-property-prediction", model=str(student_dir))
    predictions = predict(EXAMPLES)

    rows = [
        ("3D Graphormer teacher (DFT coordinates)", test_mae("teacher_eval")),
        ("2D Graphormer baseline (trained alone)", test_mae("baseline")),
        ("2D Graphormer distilled with CCMD", test_mae("ccmd")),
    ]
    print(f"\nmolformer_kd {molformer_kd.__version__}: HOMO-LUMO gap on the embedded QM9 test split (300 molecules)")
    print(f"{'model':<44} {'test MAE (eV)':>14}")
    for name, mae in rows:
        print(f"{name:<44} {mae:>14.4f}")
    baseline, distilled = rows[1][1], rows[2][1]
    print(f"distilled / baseline MAE: {distilled / baseline:.3f}")
    print(f"\nreloaded {type(backbone).__name__} from {student_dir.relative_to(ROOT)} with AutoModel.from_pretrained")
    print(f"{'SMILES':<24} {'predicted gap (eV)':>18}")
    for smiles, prediction in zip(EXAMPLES, predictions):
        print(f"{smiles:<24} {prediction['gap']:>18.3f}")
    predict_with_shipped_student()
    print("\nwall time: " + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()))


@contextlib.contextmanager
def disabled_progress_bars():
    """No transformers bar per weight load in the demo's tables (a library user keeps transformers' default)."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def predict_with_shipped_student() -> None:
    """The shipped default student on the same SMILES (and one outside its domain), or a note when none ships."""
    from molformer_kd.data.pretrained import DEFAULT_MODEL, shipped_model
    from molformer_kd.pipelines import MolecularPropertyPredictionPipeline

    shipped = shipped_model(DEFAULT_MODEL)
    if shipped is None:
        print(f"\nno shipped student {DEFAULT_MODEL!r} in this checkout (`make pretrained` builds and ships it)")
        return
    with disabled_progress_bars():
        predict = MolecularPropertyPredictionPipeline.from_pretrained(DEFAULT_MODEL)
    smiles = [*EXAMPLES, "c1ccccc1Cl"]
    labels = predict.label_names
    metrics = shipped.test_metrics
    test_mae = ", ".join(f"{label} {metrics[f'{label}_mae']:.3f}" for label in labels if f"{label}_mae" in metrics)
    print(f"\nshipped student {DEFAULT_MODEL} (loaded by name; test MAE in eV: {test_mae or 'n/a'})")
    print(f"{'SMILES':<24} " + " ".join(f"{label + ' (eV)':>11}" for label in labels) + "  in domain")
    for one, result in zip(smiles, predict(smiles)):
        values = " ".join(f"{result[label]:>11.3f}" for label in labels)
        flag = "yes" if result.get("in_domain") else f"no: {result.get('domain_reason')}"
        print(f"{one:<24} {values}  {flag}")


if __name__ == "__main__":
    main()
