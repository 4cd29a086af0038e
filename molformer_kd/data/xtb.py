"""QM9 conformations labelled with GFN2-xTB energies and forces, for the 3D-GNN energy/force distillation task.

Unlike the SMILES-aligned records of the other loaders (DESIGN.md: `pos` = heavy atoms in SMILES order), this task
needs every atom, hydrogens included, in the order of the QM9 XYZ block. Rows therefore hold:

| column | type | meaning |
|---|---|---|
| `mol_id` | str | `qm9_<index>:<k>`: conformation k of QM9 molecule <index> (k = 0 is the DFT geometry) |
| `smiles` | str | QM9's SMILES of the molecule (for reference; atoms are NOT in SMILES order) |
| `atomic_numbers` | list[int] | (N,) all atoms in XYZ order |
| `positions` | list[list[float]] | (N, 3) Angstrom |
| `energy` | float | GFN2-xTB total energy, eV |
| `forces` | list[list[float]] | (N, 3) eV/Angstrom, = -dE/dx |

**Molecules.** `num_molecules` QM9 molecules are drawn with a seeded generator, without replacement, from the rows
of the source CSVs taken together (default: all three qm9pack parts, 133,885 molecules; rows over `max_atoms` atoms
are left out before drawing).

**Conformations.** Each molecule gets `conformations` geometries: k = 0 is the QM9 DFT (B3LYP) geometry itself,
k >= 1 are perturbations of it. For each perturbed conformation a scale `sigma` is drawn uniformly in
[`sigma_min`, `sigma_max`] Angstrom. In both schemes `sigma` means the same thing: the expected root-mean-square
displacement per Cartesian coordinate over the molecule's atoms.

* `perturbation="mass-weighted"` (default): thermal-like displacements. Harmonic thermal motion has, in
  mass-weighted coordinates q_i = sqrt(m_i) x_i, variance kT / omega^2 per vibrational mode; if every mode is given
  the same frequency (an Einstein model, which needs no Hessian), q is an isotropic Gaussian over the 3N - 6
  vibrational directions. So a standard normal vector is drawn in mass-weighted coordinates, its components along
  the rigid translations and rotations are projected out (they change no energy), and it is mapped back to
  Cartesian displacements x_i = q_i / sqrt(m_i): each atom moves with standard deviation proportional to
  1 / sqrt(m_i), hydrogen about 3.5 times as far as carbon, and the displacement is a random combination of the
  molecule's internal displacement directions. The result is scaled so that its expected RMS per coordinate is
  `sigma` (for a QM9 molecule with as many hydrogens as heavy atoms, sigma = 0.1 A moves H by about 0.13 A and C by
  about 0.04 A per coordinate). Because the total is fixed, a molecule with few hydrogens moves its heavy atoms
  more than one with many.
* `perturbation="isotropic"`: every coordinate gets Gaussian noise of standard deviation `sigma`, drawn from one
  seeded stream (`seed + 1`) over the molecules in order. This is the scheme of the shipped sample, kept so that it
  can be rebuilt exactly (scripts/build_qm9_xtb.py shows the command).

A true normal-mode sampling needs a Hessian per molecule; tblite exposes none, and a finite-difference one costs
6N gradients (about 100 single points for a QM9 molecule), so the Einstein model above is used instead.

Labels are computed on the float32-rounded positions that are stored, so stored labels belong exactly to stored
geometries. A conformation whose xTB calculation fails (SCF not converged, atoms too close) is recorded with the
reason in the file's `failed_mol_ids` (`"<mol_id> (<smiles>): <reason>"`) and in the build summary, never dropped
silently.

**Building at scale.** `build_qm9_xtb` splits the molecules into fixed shards of `shard_size` molecules, labels them
in `num_workers` processes (one OpenMP thread each) and writes each finished shard atomically (a temporary name,
then a rename) into a cache folder keyed by every setting the labels depend on (molecule count, conformations,
sigma range, seed, perturbation, shard size, method, tblite version, source file hashes). A rerun after a kill skips
the finished shards and computes only the missing ones; the result does not depend on the number of workers. The
shards are finally merged into one .npz (layout below), which `load_qm9_xtb` reads.

`tokenization.collators.PointCloudCollator` pads these rows into the point-cloud batch of the SchNet / PaiNN models.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict

from .caching import atomic_write, cache_root, file_sha256
from .qm9 import HARTREE_TO_EV, qm9pack_data_dir

__all__ = [
    "BOHR_IN_ANGSTROM",
    "PERTURBATIONS",
    "QM9_XTB_SMALL",
    "build_qm9_xtb",
    "energy_statistics",
    "fit_atom_reference_energies",
    "load_qm9_xtb",
    "perturb_conformations",
    "qm9pack_csv_path",
    "xtb_energy_and_forces",
]

BOHR_IN_ANGSTROM = 0.529177210903  # CODATA 2018, like HARTREE_TO_EV
QM9_XTB_SMALL = Path(__file__).parent / "resources" / "qm9_xtb_small.npz"
PERTURBATIONS = ("mass-weighted", "isotropic")
METHOD = "GFN2-xTB"
_ARRAY_KEYS = ("mol_id", "smiles", "num_atoms", "atomic_numbers", "positions", "energy", "forces")
# Bump when the builder's output for the same settings changes, so that stale shards are not reused.
_BUILDER_VERSION = 1
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def qm9pack_csv_path(part: int = 1) -> Path:
    """Path of qm9pack's CSV part `part` (1-3)."""
    path = qm9pack_data_dir() / f"qm9_part{part}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"qm9pack is installed but {path} is missing")
    return path


def xtb_energy_and_forces(atomic_numbers: np.ndarray, positions: np.ndarray) -> tuple[float, np.ndarray]:
    """GFN2-xTB single point: (energy in eV, forces (N, 3) in eV/Angstrom) for positions in Angstrom."""
    try:
        from tblite.interface import Calculator
    except ImportError as error:
        raise ImportError("labelling needs tblite: `pip install tblite` (the `xtb` extra)") from error
    numbers = np.asarray(atomic_numbers, dtype=np.int64)
    bohr = np.asarray(positions, dtype=np.float64) / BOHR_IN_ANGSTROM
    calculator = Calculator(METHOD, numbers, bohr)
    calculator.set("verbosity", 0)
    result = calculator.singlepoint()
    energy = float(result.get("energy")) * HARTREE_TO_EV
    forces = -np.asarray(result.get("gradient")) * (HARTREE_TO_EV / BOHR_IN_ANGSTROM)
    return energy, forces


def _resolve_sources(sources: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    if sources is None:
        return [qm9pack_csv_path(part) for part in (1, 2, 3)]
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths = [Path(source) for source in sources]
    if not paths:
        raise ValueError("no source CSV given")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"source CSV {path} does not exist")
    return paths


def _read_qm9_rows(
    sources: Sequence[Path], num_molecules: int, seed: int, max_atoms: int | None
) -> list[tuple[int, str, list[str], np.ndarray]]:
    """The drawn molecules as (QM9 index, SMILES, elements, DFT coordinates in Angstrom), in source order."""
    import pandas as pd

    tables = []
    for path in sources:
        table = pd.read_csv(path, usecols=["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"])
        table["source"] = path.name
        table["line"] = np.arange(len(table)) + 2  # the header is line 1
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    if max_atoms is not None:
        table = table[table["N_atoms"] <= max_atoms]
    duplicated = table["Index"][table["Index"].duplicated()]
    if len(duplicated):
        raise ValueError(f"QM9 indices {sorted(set(duplicated.tolist()))[:5]} occur more than once in {sources}")
    if num_molecules > len(table):
        names = ", ".join(path.name for path in sources)
        raise ValueError(f"{names} hold {len(table)} usable molecules, {num_molecules} were asked for")
    chosen = np.sort(np.random.default_rng(seed).choice(len(table), size=num_molecules, replace=False))
    rows = []
    for row_number in chosen:
        row = table.iloc[row_number]
        where = f"{row['source']} line {row['line']} (QM9 index {row['Index']})"
        try:
            elements = ast.literal_eval(row["Elements"])
            coords = np.asarray(ast.literal_eval(row["XYZ_Ang"]), dtype=np.float64)
        except (ValueError, SyntaxError) as error:
            raise ValueError(f"{where}: {error}") from error
        if coords.shape != (len(elements), 3):
            raise ValueError(f"{where}: {len(elements)} elements but coordinates of shape {coords.shape}")
        rows.append((int(row["Index"]), str(row["SMILES"]), elements, coords))
    return rows


def _internal_displacement_basis(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal (3N, r) basis of the rigid translations and rotations in mass-weighted coordinates."""
    sqrt_masses = np.sqrt(masses)[:, None]
    centred = positions - (masses[:, None] * positions).sum(0) / masses.sum()
    vectors = []
    for axis in np.eye(3):
        vectors.append((np.broadcast_to(axis, positions.shape) * sqrt_masses).ravel())
        vectors.append((np.cross(axis, centred) * sqrt_masses).ravel())
    left, singular, _ = np.linalg.svd(np.stack(vectors, axis=1), full_matrices=False)
    return left[:, singular > 1e-8 * singular.max()]  # 5 columns for a linear molecule, 3 for one atom


def perturb_conformations(
    atomic_numbers: Sequence[int] | np.ndarray,
    positions: np.ndarray,
    conformations: int,
    sigma_min: float,
    sigma_max: float,
    rng: np.random.Generator,
    perturbation: str = "mass-weighted",
) -> list[np.ndarray]:
    """`conformations` float32 (N, 3) geometries: the given one (k = 0), then perturbations of it (module docstring).

    `sigma` of each perturbed conformation is drawn uniformly in [`sigma_min`, `sigma_max`] Angstrom and is its
    expected root-mean-square displacement per Cartesian coordinate, in both schemes.
    """
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturbation!r}")
    coords = np.asarray(positions, dtype=np.float64)
    if perturbation == "isotropic":  # the stream of the original builder: conformation 0 draws (unused) noise too
        result = []
        for conformation in range(conformations):
            sigma = 0.0 if conformation == 0 else rng.uniform(sigma_min, sigma_max)
            result.append((coords + sigma * rng.standard_normal(coords.shape)).astype(np.float32))
        return result
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    masses = np.array([table.GetAtomicWeight(int(number)) for number in atomic_numbers])
    basis = _internal_displacement_basis(coords, masses)
    inverse_sqrt_masses = np.repeat(1.0 / np.sqrt(masses), 3)
    # E|x|^2 = sum_j P_jj / m_j for a unit normal vector q projected by P = 1 - B B^T and mapped to x_j = q_j/sqrt(m_j)
    expected_square = float(((1.0 - (basis**2).sum(axis=1)) * inverse_sqrt_masses**2).sum())
    normalisation = np.sqrt(coords.size / expected_square) if expected_square > 1e-12 else 0.0
    result = [coords.astype(np.float32)]
    for _ in range(1, conformations):
        sigma = rng.uniform(sigma_min, sigma_max)
        mass_weighted = rng.standard_normal(coords.size)
        mass_weighted -= basis @ (basis.T @ mass_weighted)
        displacement = (sigma * normalisation * inverse_sqrt_masses * mass_weighted).reshape(coords.shape)
        result.append((coords + displacement).astype(np.float32))
    return result


def _molecule_conformations(
    rows: Sequence[tuple[int, str, list[str], np.ndarray]], settings: dict
) -> list[tuple[int, str, np.ndarray, list[np.ndarray]]]:
    """(QM9 index, SMILES, atomic numbers, conformations) of every drawn molecule, independent of the sharding."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    shared_stream = np.random.default_rng(settings["seed"] + 1)  # the isotropic scheme's single stream
    molecules = []
    for index, smiles, elements, coords in rows:
        numbers = np.array([table.GetAtomicNumber(element) for element in elements], dtype=np.int64)
        if settings["perturbation"] == "isotropic":
            rng = shared_stream
        else:  # one stream per molecule: its conformations do not depend on which other molecules were drawn
            rng = np.random.default_rng([settings["seed"], index])
        geometries = perturb_conformations(
            numbers,
            coords,
            settings["conformations"],
            settings["sigma_min"],
            settings["sigma_max"],
            rng,
            settings["perturbation"],
        )
        molecules.append((index, smiles, numbers, geometries))
    return molecules


def _pack(records: dict, failures: Sequence[str], **extra: object) -> dict:
    """The arrays of the .npz layout (shards and the merged file alike)."""
    return {
        "mol_id": np.array(records["mol_id"], dtype=str),
        "smiles": np.array(records["smiles"], dtype=str),
        "num_atoms": np.array(records["num_atoms"], dtype=np.int16),
        "atomic_numbers": np.concatenate(records["atomic_numbers"]).astype(np.int8, copy=False)
        if records["atomic_numbers"]
        else np.zeros(0, dtype=np.int8),
        "positions": np.concatenate(records["positions"]).astype(np.float32, copy=False)
        if records["positions"]
        else np.zeros((0, 3), dtype=np.float32),
        "energy": np.array(records["energy"], dtype=np.float64),
        "forces": np.concatenate(records["forces"]).astype(np.float32, copy=False)
        if records["forces"]
        else np.zeros((0, 3), dtype=np.float32),
        "failed_mol_ids": np.array(list(failures), dtype=str),
        **{key: np.array(value) for key, value in extra.items()},
    }


def _save_npz_atomically(path: Path, arrays: dict) -> None:
    """A killed build never leaves half a file (`atomic_write`)."""
    atomic_write(path, lambda file: np.savez_compressed(file, **arrays))


def _label_shard(
    path: str,
    molecules: Sequence[tuple[int, str, np.ndarray, list[np.ndarray]]],
    on_molecule: Callable[[], None] | None = None,
) -> None:
    """Label every conformation of `molecules` with GFN2-xTB and save them as the shard file `path`."""
    records = {key: [] for key in _ARRAY_KEYS}
    failures = []
    for index, smiles, numbers, geometries in molecules:
        for conformation, positions in enumerate(geometries):
            mol_id = f"qm9_{index:06d}:{conformation}"
            try:
                energy, forces = xtb_energy_and_forces(numbers, positions.astype(np.float64))
            except (RuntimeError, ValueError) as error:  # SCF not converged, atoms too close: keep the reason
                reason = " ".join(str(error).split()) or type(error).__name__
                failures.append(f"{mol_id} ({smiles}): {reason}")
                continue
            records["mol_id"].append(mol_id)
            records["smiles"].append(smiles)
            records["num_atoms"].append(len(numbers))
            records["atomic_numbers"].append(numbers)
            records["positions"].append(positions)
            records["energy"].append(energy)
            records["forces"].append(forces)
        if on_molecule is not None:
            on_molecule()
    attempted = sum(len(geometries) for *_, geometries in molecules)
    arrays = _pack(records, failures, num_molecules=len(molecules), num_conformations=attempted)
    _save_npz_atomically(Path(path), arrays)


_worker_progress = None  # in a worker process: the shared count of labelled molecules


def _exit_with_parent(parent: int) -> None:
    """Poll for the death of the building process (killed: no clean-up reached us) and end this worker then."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)  # the shard being labelled is lost (never half-written); a rerun computes it


def _init_worker(progress: object, parent: int) -> None:
    global _worker_progress
    for variable in _THREAD_VARIABLES:  # the spawned process has it from its start already; this is for clarity
        os.environ[variable] = "1"
    _worker_progress = progress
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _count_molecule() -> None:
    with _worker_progress.get_lock():
        _worker_progress.value += 1


def _label_shard_in_worker(path: str, molecules: Sequence[tuple[int, str, np.ndarray, list[np.ndarray]]]) -> None:
    _label_shard(path, molecules, on_molecule=_count_molecule)


@contextlib.contextmanager
def _single_threaded_environment() -> Iterator[None]:
    """OMP_NUM_THREADS=1 (and the BLAS equivalents) for processes started, and libraries first loaded, inside."""
    saved = {variable: os.environ.get(variable) for variable in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard_{shard:05d}.npz"


def _finished_shard(path: Path, expected_molecules: int) -> bool:
    """Whether `path` is a readable shard of `expected_molecules` molecules (a damaged one is deleted)."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as archive:
            if int(archive["num_molecules"]) == expected_molecules:
                return True
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass
    path.unlink()  # damaged or foreign: compute it again
    return False


def _run_shards(tasks: list[tuple[Path, list]], num_workers: int, bar: object) -> None:
    """Label the shards of `tasks` ((path, molecules) pairs), in this process or in `num_workers` spawned ones."""
    if num_workers <= 1:
        with _single_threaded_environment():  # effective if tblite's OpenMP runtime is not loaded yet
            for path, molecules in tasks:
                _label_shard(str(path), molecules, on_molecule=lambda: bar.update(1))
        return
    import multiprocessing

    # "spawn": fresh processes that start with OMP_NUM_THREADS=1, whatever OpenMP state this process is in
    context = multiprocessing.get_context("spawn")
    progress = context.Value("q", 0)
    with _single_threaded_environment():
        executor = ProcessPoolExecutor(
            num_workers, mp_context=context, initializer=_init_worker, initargs=(progress, os.getpid())
        )
        try:
            pending: set[Future] = {
                executor.submit(_label_shard_in_worker, str(path), molecules) for path, molecules in tasks
            }
            counted = 0
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()  # a worker's exception ends the build; the finished shards stay
                value = progress.value
                if value > counted:
                    bar.update(value - counted)
                    counted = value
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)


def _merge_shards(paths: Sequence[Path]) -> tuple[dict, list[str], int]:
    """(arrays of the .npz layout, failures, molecules) of the shard files, in order."""
    parts: dict[str, list[np.ndarray]] = {key: [] for key in _ARRAY_KEYS}
    failures: list[str] = []
    molecules = 0
    for path in paths:
        with np.load(path, allow_pickle=False) as archive:
            for key in _ARRAY_KEYS:
                parts[key].append(archive[key])
            failures.extend(str(failure) for failure in archive["failed_mol_ids"])
            molecules += int(archive["num_molecules"])
    if not paths:
        return _pack({key: [] for key in _ARRAY_KEYS}, []), [], 0
    return {key: np.concatenate(values) for key, values in parts.items()}, failures, molecules


def _tblite_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tblite")
    except PackageNotFoundError as error:
        raise ImportError("labelling needs tblite: `pip install tblite` (the `xtb` extra)") from error


def build_qm9_xtb(
    output: str | os.PathLike | None,
    num_molecules: int = 500,
    conformations: int = 4,
    sigma_min: float = 0.05,
    sigma_max: float = 0.1,
    seed: int = 0,
    max_atoms: int | None = None,
    sources: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    perturbation: str = "mass-weighted",
    num_workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    shard_size: int = 500,
    max_shards: int | None = None,
    progress: bool = True,
) -> dict:
    """Draw QM9 molecules, perturb them and label every conformation with GFN2-xTB, in resumable shards; merge a .npz.

    `conformations` counts the DFT geometry (k = 0) too; `sources` are qm9pack-style CSVs (default: qm9pack's three
    parts); `perturbation`, `sigma_min` and `sigma_max` are described in the module docstring. Shards of
    `shard_size` molecules are labelled by `num_workers` processes (default: the cores this process may use; 1 labels
    in this process) and kept under `cache_dir` (default: `caching.cache_root()`) in `qm9_xtb/<settings hash>/`; a
    rerun computes only the shards that are missing. `max_shards` stops after computing that many (the output is then
    not written). `output` (skipped if None) gets the merged .npz that `load_qm9_xtb` reads.

    Returns a summary: `molecules`, `conformations` (labelled), `failures` (`"<mol_id> (<smiles>): <reason>"`, also
    in the file's `failed_mol_ids`), `complete`, `shards`, `computed_shards`, `reused_shards`, `cache` (the folder),
    `output`, `wall_time_s`, `computed_conformations` (attempted in this call) and `conformations_per_s` (of those).
    """
    start = time.perf_counter()
    if not 0 <= sigma_min <= sigma_max:
        raise ValueError(f"need 0 <= sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturbation!r}")
    for name, value in (("num_molecules", num_molecules), ("conformations", conformations), ("shard_size", shard_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    paths = _resolve_sources(sources)
    settings = {
        "builder_version": _BUILDER_VERSION,
        "method": METHOD,
        "tblite": _tblite_version(),
        "num_molecules": num_molecules,
        "conformations": conformations,
        "sigma_min": float(sigma_min),
        "sigma_max": float(sigma_max),
        "seed": seed,
        "perturbation": perturbation,
        "max_atoms": max_atoms,
        "shard_size": shard_size,
        "sources": [{"name": path.name, "sha256": file_sha256(path)} for path in paths],
    }
    text = json.dumps(settings, sort_keys=True)
    folder = cache_root(cache_dir) / "qm9_xtb" / hashlib.sha256(text.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
    num_shards = -(-num_molecules // shard_size)
    sizes = [min(shard_size, num_molecules - shard * shard_size) for shard in range(num_shards)]
    reused = [shard for shard in range(num_shards) if _finished_shard(_shard_path(folder, shard), sizes[shard])]
    todo = [shard for shard in range(num_shards) if shard not in set(reused)]
    if max_shards is not None:
        todo = todo[: max(max_shards, 0)]
    computed_conformations = 0
    labelling_time = 0.0
    if todo:
        rows = _read_qm9_rows(paths, num_molecules, seed, max_atoms)
        molecules = _molecule_conformations(rows, settings)
        tasks = [
            (_shard_path(folder, shard), molecules[shard * shard_size : (shard + 1) * shard_size]) for shard in todo
        ]
        computed_conformations = sum(len(geometries) for _, molecules in tasks for *_, geometries in molecules)
        from tqdm import tqdm

        with tqdm(
            total=num_molecules,
            initial=sum(sizes[shard] for shard in reused),
            unit="mol",
            desc="GFN2-xTB",
            disable=not progress,
            mininterval=0.5,
            dynamic_ncols=True,
        ) as bar:
            labelling_start = time.perf_counter()
            _run_shards(tasks, min(num_workers, len(tasks)), bar)
            labelling_time = time.perf_counter() - labelling_start
    finished = [shard for shard in range(num_shards) if _shard_path(folder, shard).is_file()]
    merged, failures, molecule_count = _merge_shards([_shard_path(folder, shard) for shard in finished])
    complete = len(finished) == num_shards
    if complete and output is not None:
        output = Path(output)
        if output.suffix != ".npz":  # what numpy.savez does with such a name, so the reported path is the real one
            output = output.with_name(output.name + ".npz")
        arrays = {key: merged[key] for key in _ARRAY_KEYS}
        _save_npz_atomically(output, {**arrays, "failed_mol_ids": np.array(failures, dtype=str), "settings": text})
    return {
        "molecules": molecule_count,
        "conformations": len(merged["mol_id"]),
        "failures": failures,
        "complete": complete,
        "shards": num_shards,
        "computed_shards": todo,
        "reused_shards": reused,
        "cache": str(folder),
        "output": str(output) if complete and output is not None else None,
        "wall_time_s": time.perf_counter() - start,
        "computed_conformations": computed_conformations,
        "conformations_per_s": computed_conformations / labelling_time if labelling_time > 0 else None,
    }


def _load_arrays(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; build it with scripts/build_qm9_xtb.py")
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in _ARRAY_KEYS if key not in archive]
        if missing:
            raise ValueError(f"{path} lacks arrays {missing}; expected {list(_ARRAY_KEYS)}")
        return {key: archive[key] for key in _ARRAY_KEYS}


def _split_indices(mol_ids: np.ndarray, split_by: str, fractions: tuple[float, float], seed: int):
    """Index arrays (train, validation, test); `split_by="molecule"` keeps all conformations of a molecule together."""
    if split_by == "molecule":
        groups = np.array([mol_id.split(":")[0] for mol_id in mol_ids])
    elif split_by == "conformation":
        groups = np.asarray(mol_ids)
    else:
        raise ValueError(f"split_by must be 'molecule' or 'conformation', got {split_by!r}")
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    num_validation = round(fractions[0] * len(unique))
    num_test = round(fractions[1] * len(unique))
    split_of_group = {}
    for rank, group_index in enumerate(order):
        split_of_group[unique[group_index]] = (
            1 if rank < num_validation else 2 if rank < num_validation + num_test else 0
        )
    assignment = np.array([split_of_group[group] for group in groups])
    return [np.flatnonzero(assignment == split) for split in range(3)]


def load_qm9_xtb(
    path: str | os.PathLike | None = None,
    split_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_by: str = "molecule",
) -> DatasetDict:
    """The labelled QM9/xTB conformations as a DatasetDict (`train`/`validation`/`test`) with a fixed-seed split.

    `path` defaults to the file shipped in the package (built by scripts/build_qm9_xtb.py with its defaults).
    """
    path = Path(path) if path is not None else QM9_XTB_SMALL
    arrays = _load_arrays(path)
    offsets = np.concatenate([[0], np.cumsum(arrays["num_atoms"].astype(np.int64))])
    if offsets[-1] != len(arrays["atomic_numbers"]):
        raise ValueError(f"{path}: num_atoms sums to {offsets[-1]} but there are {len(arrays['atomic_numbers'])} atoms")
    splits = _split_indices(arrays["mol_id"], split_by, (validation_fraction, test_fraction), split_seed)
    result = {}
    for name, indices in zip(("train", "validation", "test"), splits):
        columns = {key: [] for key in ("mol_id", "smiles", "atomic_numbers", "positions", "energy", "forces")}
        for index in indices:
            start, stop = offsets[index], offsets[index + 1]
            columns["mol_id"].append(str(arrays["mol_id"][index]))
            columns["smiles"].append(str(arrays["smiles"][index]))
            columns["atomic_numbers"].append(arrays["atomic_numbers"][start:stop].astype(np.int64).tolist())
            columns["positions"].append(arrays["positions"][start:stop].astype(np.float64).tolist())
            columns["energy"].append(float(arrays["energy"][index]))
            columns["forces"].append(arrays["forces"][start:stop].astype(np.float64).tolist())
        result[name] = Dataset.from_dict(columns)
    return DatasetDict(result)


def fit_atom_reference_energies(dataset: Dataset, max_atomic_number: int = 9) -> list[float]:
    """Per-element reference energies (eV) by least squares of `energy` on element counts.

    Returns a list indexed by atomic number (index 0 and absent elements are 0). Models add these to their per-atom
    outputs so that the network only learns the small remainder (binding and strain energy).
    """
    counts = np.zeros((len(dataset), max_atomic_number + 1))
    for row, numbers in enumerate(dataset["atomic_numbers"]):
        numbers = np.asarray(numbers)
        if numbers.max() > max_atomic_number:
            raise ValueError(
                f"row {row} ({dataset['mol_id'][row]}) has atomic number {numbers.max()} > {max_atomic_number}"
            )
        counts[row] = np.bincount(numbers, minlength=max_atomic_number + 1)
    present = counts.sum(axis=0) > 0
    present[0] = False
    solution, *_ = np.linalg.lstsq(counts[:, present], np.asarray(dataset["energy"]), rcond=None)
    references = np.zeros(max_atomic_number + 1)
    references[present] = solution
    return references.tolist()


def energy_statistics(dataset: Dataset, max_atomic_number: int = 9) -> dict:
    """Config entries that normalize an energy/force model for `dataset` (the energy analogue of label statistics):

    `atom_reference_energies` (least-squares per-element energies), `energy_shift` (mean per-atom remainder after
    the references, eV) and `energy_scale` (root mean square of the force components, eV/Angstrom: it puts the
    network's outputs, and so its forces, at unit scale).
    """
    references = fit_atom_reference_energies(dataset, max_atomic_number)
    reference_table = np.asarray(references)
    remainders, counts, force_squares, force_components = [], [], 0.0, 0
    for numbers, energy, forces in zip(dataset["atomic_numbers"], dataset["energy"], dataset["forces"]):
        remainders.append(energy - reference_table[np.asarray(numbers)].sum())
        counts.append(len(numbers))
        forces = np.asarray(forces)
        force_squares += float((forces**2).sum())
        force_components += forces.size
    return {
        "atom_reference_energies": references,
        "energy_shift": float(np.sum(remainders) / np.sum(counts)),
        "energy_scale": float(np.sqrt(force_squares / max(force_components, 1))) or 1.0,
    }
