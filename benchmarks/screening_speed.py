"""Whole-process screening speed: `molformer-kd predict` beside chemprop v2's `chemprop predict` (issue #20).

One run, side by side, on the same MOSES SMILES (drug-like; `pip install --no-deps molsets`), every row a whole
process as a user starts it (interpreter start-up, imports, model load, reading and writing the files included),
timed with the wall clock around the process and with its peak resident set size (`os.wait4`'s `ru_maxrss`: the
largest of the process and its reaped children):

1. `molformer-kd predict --model qm9-gin --input X.csv --output Y.csv`: the shipped distilled GIN student on the
   CLI's defaults (no `--threads`, no OMP/MKL thread variables: the CLI picks its own threads).
2. The same with `--threads 1` (reference).
3. `chemprop predict -i X.csv -o Y.csv --model-paths BEST.pt` on chemprop's defaults (a D-MPNN trained by
   benchmarks/chemprop_qm9.py on the same QM9 split; chemprop picks its own threads and loader workers).
4. A tiny SMILES Transformer (d=32, 1+1 layers, randomly initialised: speed does not depend on the weights) through
   `molformer-kd predict` on its defaults.
5. Each of these on a 1-molecule file: the start-up, so molecules/s after start-up is reported too.
6. The required stack's imports alone (`python -c "import torch, transformers.modeling_utils"`, quiet): no process
   that loads a transformers model starts faster, so N / those seconds bounds every whole-process rate at N rows.

Two conditions: `quiet` (nothing added) and `other core busy` (a pure-Python busy loop in a child process, no CPU
affinity, started before and killed after every timed run of that condition). Each of `--repeats` rounds runs every
(condition, row, size) once, rows interleaved and their order reversed every other round, so that load drifting over
the run hits all rows alike; the tables give medians over the rounds. A memory row runs the qm9-gin default command on
`--memory-factor` x N rows (the N SMILES repeated) in the quiet condition: its peak RSS over the N-row run's.

Targets (issue #20), each marked met / not met from the measured medians:
- molformer-kd predict (qm9-gin, defaults) >= 2x chemprop predict's molecules/s, whole process, in both conditions;
- the tiny SMILES Transformer through the CLI >= 5,000 molecules/s (whole process, quiet; the after-start-up rate
  is marked beside it, since at N = 20,000 the whole run must take <= 4 s, start-up included);
- CLI peak memory flat in input size: peak RSS at 10x N rows <= 1.5x that at N rows.

Writes `<output>.json` (every run, the medians, ratios, targets, machine, versions, commands) and `<output>.md`.

    nice -n 15 .venv/bin/python benchmarks/screening_speed.py --n 20000 --repeats 3
    # smoke: a student folder and a chemprop checkpoint (.pt or .ckpt) of your own, or skip chemprop
    .venv/bin/python benchmarks/screening_speed.py --n 300 --repeats 1 --model runs/pretrained/qm9_gin_alone/finetune \\
        --skip-missing-chemprop --output /tmp/screening_smoke
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The MOSES loader and the tiny-student builder of the inference benchmark, loaded from its file (benchmarks/ is
# not a package).
_spec = importlib.util.spec_from_file_location("inference", REPO / "benchmarks" / "inference.py")
inference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inference)
THREAD_VARIABLES, moses_smiles, save_cli_students = (
    inference.THREAD_VARIABLES,
    inference.moses_smiles,
    inference.save_cli_students,
)

import molformer_kd  # noqa: E402
from molformer_kd.cli import default_threads  # noqa: E402
from molformer_kd.data.pretrained import shipped_model  # noqa: E402

MOLFORMER_KD = Path(sys.executable).parent / "molformer-kd"
DEFAULT_CHEMPROP = Path(os.environ.get("MOLFORMER_KD_CHEMPROP", REPO / ".venv-chemprop" / "bin" / "chemprop"))
# Where benchmarks/chemprop_qm9.py leaves chemprop's model trained on the shipped students' QM9 split.
DEFAULT_CHEMPROP_MODEL = REPO / "runs" / "pretrained" / "chemprop" / "chemprop" / "model_0" / "best.pt"
CONDITIONS = ("quiet", "other core busy")
BUSY_LOOP = "while True:\n    pass\n"
TARGET_RATIO = 2.0
TARGET_ST_MOL_PER_S = 5_000.0
TARGET_MEMORY_RATIO = 1.5
# Row 6: every student is a transformers `PreTrainedModel`, so these imports are part of any molformer-kd process.
STACK_IMPORTS = "import torch, transformers.modeling_utils"
# After-start-up rates are left out (None) where the whole run is within this factor of the start-up run: the
# difference would be the start-up's own noise.
AFTER_STARTUP_MIN_FACTOR = 1.25


# ---------------------------------------------------------------------------------------------------- set-up


def resolve_student(model: str) -> tuple[str, dict]:
    """The `--model` argument as `molformer-kd predict` gets it, and what is known of it; a clear exit if it is
    neither a local student folder nor a shipped student (this benchmark runs offline)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SystemExit(f"--model {model}: the folder has no config.json (not a saved student)")
        return str(path.resolve()), {"name": model, "source": "local folder", "path": str(path.resolve())}
    shipped = shipped_model(model)
    if shipped is None:
        raise SystemExit(
            f"--model {model}: not a local student folder, and no shipped student of that name "
            f"(molformer_kd/pretrained/{model.split('/')[-1]} is missing in this checkout). Build and ship it with "
            "`make pretrained`, or pass --model PATH of any saved student folder."
        )
    info = {"name": shipped.name, "source": "shipped", "path": str(shipped.path)}
    info["test_metrics"] = shipped.test_metrics
    return model, info


def resolve_chemprop(args) -> tuple[Path | None, str | None]:
    """(checkpoint, None), or (None, why) where chemprop's row is skipped; exits where it may not be skipped."""
    executable, model = Path(args.chemprop), Path(args.chemprop_model)
    problem = None
    if not executable.is_file():
        problem = f"no chemprop executable at {executable} (--chemprop)"
    elif not model.exists():
        problem = (
            f"no chemprop model at {model} (--chemprop-model): train it with benchmarks/chemprop_qm9.py, or pass "
            "a chemprop v2 model file (.pt) or checkpoint (.ckpt)"
        )
    if problem is None:
        return model.resolve(), None
    if args.skip_missing_chemprop:
        print(f"SKIPPING the chemprop row: {problem}", flush=True)
        return None, problem
    raise SystemExit(f"{problem}. --skip-missing-chemprop runs the other rows without it (smoke runs only).")


def write_inputs(work: Path, smiles: list[str], memory_factor: int) -> dict[str, Path]:
    """One CSV (header `smiles`, read by both CLIs) per size: N, 1 (start-up) and memory_factor x N rows."""
    rows = {"n": smiles, "one": smiles[:1], "memory": smiles * memory_factor}
    paths = {}
    for size, lines in rows.items():
        paths[size] = work / f"moses_{len(lines)}.csv"
        with open(paths[size], "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["smiles"])
            writer.writerows([s] for s in lines)
    return paths


def row_commands(args, student: str, st_dir: Path, chemprop_model: Path | None) -> dict[str, dict]:
    """row -> {"what": description, "argv": (input, output) -> the command}."""

    def ours(model: str, *options: str):
        def argv(src, dst) -> list[str]:
            return [str(MOLFORMER_KD), "predict", "--model", model, "--input", str(src), "--output", str(dst), *options]

        return argv

    def chemprop(src, dst) -> list[str]:
        command = [str(args.chemprop), "predict", "-i", str(src), "-o", str(dst), "--model-paths", str(chemprop_model)]
        return command + list(args.chemprop_arg)

    rows = {
        "qm9-gin default": {"what": f"molformer-kd predict --model {args.model} (defaults)", "argv": ours(student)},
        "qm9-gin --threads 1": {
            "what": f"molformer-kd predict --model {args.model} --threads 1",
            "argv": ours(student, "--threads", "1"),
        },
    }
    if chemprop_model is not None:
        extra = " ".join(args.chemprop_arg)
        rows["chemprop"] = {"what": f"chemprop predict ({extra or 'defaults'})", "argv": chemprop}
    rows["tiny ST default"] = {
        "what": "molformer-kd predict, SMILES Transformer tiny (defaults)",
        "argv": ours(str(st_dir)),
    }
    return rows


# ---------------------------------------------------------------------------------------------------- one run


@contextlib.contextmanager
def condition(name: str, settle: float):
    """`other core busy`: a pure-Python busy loop (no affinity) for the duration of the block."""
    if name == "quiet":
        yield
        return
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(settle)
        yield
    finally:
        busy.kill()
        busy.wait()


def run_process(argv: list[str], env: dict, log_path: Path, timeout: float) -> dict:
    """Wall seconds and peak RSS of one process; exits with its log's tail if it fails."""
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        raise SystemExit(
            f"exit code {process.returncode} after {seconds:.0f} s (timeout {timeout:.0f} s):\n{argv}\n{tail}"
        )
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def count_output(path: Path) -> dict:
    """Data rows of an output CSV and those without a prediction: molformer-kd's `error` column set, or (chemprop,
    which has no such column) an empty or NaN value beside the SMILES."""
    rows = failed = 0
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        has_error = "error" in (reader.fieldnames or [])
        for row in reader:
            rows += 1
            if has_error:
                failed += bool(row["error"])
            else:
                values = [value for key, value in row.items() if key != "smiles"]
                failed += any((value or "").strip().lower() in ("", "nan") for value in values)
    return {"rows": rows, "failed": failed}


# ---------------------------------------------------------------------------------------------------- summary


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: list[dict], n: int) -> dict:
    """condition -> row -> medians over the rounds: seconds, start-up seconds, mol/s whole process and after start-up,
    peak RSS."""
    table: dict[str, dict[str, dict]] = {}
    for run in runs:
        if run["size"] == "memory":
            continue
        entry = table.setdefault(run["condition"], {}).setdefault(
            run["row"], {"n": [], "one": [], "rss": [], "threads": []}
        )
        entry[run["size"]].append(run["seconds"])
        if run["size"] == "n":
            entry["rss"].append(run["peak_rss_mib"])
            entry["threads"].append(run["default_threads_at_start"])
    summary: dict[str, dict[str, dict]] = {}
    for name, rows in table.items():
        for row, entry in rows.items():
            seconds, startup = median_or_none(entry["n"]), median_or_none(entry["one"])
            after = None
            if seconds is not None and startup is not None and seconds > AFTER_STARTUP_MIN_FACTOR * startup:
                after = n / (seconds - startup)
            summary.setdefault(name, {})[row] = {
                "seconds": seconds,
                "startup_seconds": startup,
                "mol_per_s": n / seconds if seconds else None,
                "after_startup_mol_per_s": after,
                "peak_rss_mib": median_or_none(entry["rss"]),
                "runs": len(entry["n"]),
                "default_threads_at_start": sorted(set(entry["threads"])),
            }
    return summary


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def evaluate(summary: dict, memory_runs: list[dict], import_runs: list[dict], n: int) -> tuple[dict, dict]:
    """Ratios the targets name, and each target: value, threshold, met (None where not measured)."""
    ratios: dict[str, float | None] = {}
    imports = median_or_none([run["seconds"] for run in import_runs])
    ratios[f"whole-process mol/s ceiling at {n} rows: rows / stack import seconds [quiet]"] = ratio(n, imports)
    for name, rows in summary.items():
        chem = rows.get("chemprop", {})
        for ours in ("qm9-gin default", "qm9-gin --threads 1"):
            mine = rows.get(ours, {})
            ratios[f"{ours} / chemprop, whole process [{name}]"] = ratio(mine.get("mol_per_s"), chem.get("mol_per_s"))
            ratios[f"{ours} / chemprop, after start-up [{name}]"] = ratio(
                mine.get("after_startup_mol_per_s"), chem.get("after_startup_mol_per_s")
            )
    small = summary.get("quiet", {}).get("qm9-gin default", {}).get("peak_rss_mib")
    large = median_or_none([run["peak_rss_mib"] for run in memory_runs])
    ratios["qm9-gin default peak RSS, memory rows / N rows [quiet]"] = ratio(large, small)

    def target(value, threshold, at_least=True):
        met = None if value is None else (value >= threshold if at_least else value <= threshold)
        return {"value": value, "threshold": threshold, "met": met}

    targets = {}
    for name in CONDITIONS:
        targets[f"qm9-gin default >= {TARGET_RATIO:g}x chemprop mol/s, whole process [{name}]"] = target(
            ratios.get(f"qm9-gin default / chemprop, whole process [{name}]"), TARGET_RATIO
        )
    st = summary.get("quiet", {}).get("tiny ST default", {})
    targets[f"tiny ST >= {TARGET_ST_MOL_PER_S:,.0f} mol/s, whole process [quiet]"] = target(
        st.get("mol_per_s"), TARGET_ST_MOL_PER_S
    )
    # Informational beside it: N / 5,000 s of work can be shorter than the start-up alone.
    targets[f"tiny ST >= {TARGET_ST_MOL_PER_S:,.0f} mol/s, after start-up [quiet]"] = target(
        st.get("after_startup_mol_per_s"), TARGET_ST_MOL_PER_S
    )
    targets[f"peak RSS memory rows / N rows <= {TARGET_MEMORY_RATIO:g} [quiet]"] = target(
        ratios["qm9-gin default peak RSS, memory rows / N rows [quiet]"], TARGET_MEMORY_RATIO, at_least=False
    )
    return ratios, targets


# ---------------------------------------------------------------------------------------------------- report


def fmt(value, spec: str = ".0f", missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def markdown(report: dict) -> str:
    machine, versions = report["machine"], report["versions"]
    lines = [
        "# Screening speed, whole process: molformer-kd predict vs chemprop predict",
        "",
        f"`{report['command']}`",
        "",
        (
            f"{report['n']} MOSES SMILES ({report['split']} split, first N), median of {report['repeats']} round(s); "
            f"{machine['cpu']}, {machine['cpu_count']} cores ({machine['affinity']} usable), "
            f"{machine['memory_gib']:.0f} GiB. 1-minute load average before each round: "
            + ", ".join(f"{load:.2f}" for load in report["load_average_before_round"])
            + ". Versions: "
            + ", ".join(f"{name} {version}" for name, version in versions.items())
            + "."
        ),
        "",
        (
            f"Student: `{report['student']['name']}` ({report['student']['source']}). Chemprop: "
            + (
                f"`{report['chemprop_model']}`."
                if report["chemprop_model"]
                else f"skipped ({report['chemprop_skipped']})."
            )
            + " Each row is a whole process (start-up, model load, reading and writing included); start-up is the same "
            "command on a 1-molecule file; `threads` is what the CLI's `default_threads()` gave just before the run "
            "(the CLI decides again at its own start)."
        ),
    ]
    for name in CONDITIONS:
        rows = report["summary"].get(name)
        if not rows:
            continue
        lines += [
            "",
            f"## {name}",
            "",
            "| row | mol/s (whole process) | mol/s after start-up | seconds | start-up s | peak RSS MiB | threads |",
            "|---|---|---|---|---|---|---|",
        ]
        for row, cells in rows.items():
            threads = "" if row == "chemprop" else ", ".join(str(t) for t in cells["default_threads_at_start"])
            if row == "qm9-gin --threads 1":
                threads = "1"
            lines.append(
                f"| {report['rows'][row]} | {fmt(cells['mol_per_s'])} | {fmt(cells['after_startup_mol_per_s'])} "
                f"| {fmt(cells['seconds'], '.1f')} | {fmt(cells['startup_seconds'], '.1f')} "
                f"| {fmt(cells['peak_rss_mib'])} | {threads} |"
            )
    memory = report["memory_runs"]
    lines += [
        "",
        f"## Memory: {report['rows']['qm9-gin default']} on N and {report['memory_factor']} x N rows (quiet)",
        "",
        "| rows | peak RSS MiB | seconds |",
        "|---|---|---|",
    ]
    small = report["summary"].get("quiet", {}).get("qm9-gin default")
    if small:
        lines.append(f"| {report['n']} (median) | {fmt(small['peak_rss_mib'])} | {fmt(small['seconds'], '.1f')} |")
    lines += [f"| {run['rows']} | {run['peak_rss_mib']:.0f} | {run['seconds']:.1f} |" for run in memory]
    imports = [run["seconds"] for run in report["import_runs"]]
    if imports:
        lines += [
            "",
            "## Start-up floor of the required stack (quiet)",
            "",
            f'`python -c "{STACK_IMPORTS}"`: median {statistics.median(imports):.2f} s over {len(imports)} run(s) '
            f"({', '.join(f'{s:.2f}' for s in imports)}). Every student is a transformers model, so no molformer-kd "
            f"process starts faster: at {report['n']} rows no whole-process rate can exceed "
            f"{report['n'] / statistics.median(imports):,.0f} mol/s, whatever the model and the featurizer do.",
        ]
    lines += ["", "## Ratios", ""]
    lines += [f"- {name}: {fmt(value, '.2f')}" for name, value in report["ratios"].items()]
    lines += ["", "## Targets (issue #20)", ""]
    lines += [f"- {name}: {fmt(t['value'], '.2f')} -> **{verdict(t['met'])}**" for name, t in report["targets"].items()]
    lines += ["", "## Commands", ""]
    lines += [f"- {report['rows'][row]}: `{command}`" for row, command in report["commands"].items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- main


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory,
        "nice": os.nice(0),
    }


def versions(chemprop: Path | None) -> dict:
    import rdkit
    import torch
    import transformers

    found = {
        "molformer_kd": molformer_kd.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "rdkit": rdkit.__version__,
        "python": platform.python_version(),
    }
    if chemprop is not None:
        code = (
            "import importlib.metadata as m, platform; "
            "print(m.version('chemprop'), m.version('torch'), platform.python_version())"
        )
        result = subprocess.run([str(chemprop.parent / "python"), "-c", code], capture_output=True, text=True)
        if result.returncode == 0:
            chem, torch_version, python = result.stdout.split()
            found.update({"chemprop": chem, "chemprop's torch": torch_version, "chemprop's python": python})
    return found


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="MOSES SMILES per run")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="MOSES split (first N SMILES)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; tables give the medians")
    parser.add_argument("--model", default="qm9-gin", help="student of rows 1-2: shipped name or saved folder")
    parser.add_argument("--chemprop", default=str(DEFAULT_CHEMPROP), help="chemprop v2 executable")
    parser.add_argument("--chemprop-model", default=str(DEFAULT_CHEMPROP_MODEL), help="chemprop model (.pt / .ckpt)")
    parser.add_argument(
        "--chemprop-arg",
        action="append",
        default=[],
        help="extra argument of chemprop predict, repeatable (e.g. --chemprop-arg=--num-workers --chemprop-arg=0)",
    )
    parser.add_argument("--skip-missing-chemprop", action="store_true", help="run without chemprop if it is missing")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--memory-factor", type=int, default=10, help="memory row: this many x N rows")
    parser.add_argument("--memory-repeats", type=int, default=1, help="memory runs (in the first rounds)")
    parser.add_argument("--busy-settle", type=float, default=1.0, help="seconds the busy loop runs before a run")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is killed")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "screening_speed"))
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    student, student_info = resolve_student(args.model)
    chemprop_model, chemprop_skipped = resolve_chemprop(args)
    if not MOLFORMER_KD.is_file():
        raise SystemExit(f"no molformer-kd console script at {MOLFORMER_KD}: pip install -e . in this environment")
    smiles = moses_smiles(args.n, f"{args.split}.csv.gz")
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    report = {
        "command": " ".join(
            ["python", str(Path(__file__).relative_to(REPO)), *(argv if argv is not None else sys.argv[1:])]
        ),
        "n": args.n,
        "split": args.split,
        "repeats": args.repeats,
        "memory_factor": args.memory_factor,
        "busy_settle_s": args.busy_settle,
        "student": student_info,
        "chemprop_model": str(chemprop_model) if chemprop_model else None,
        "chemprop_skipped": chemprop_skipped,
        "chemprop_extra_args": list(args.chemprop_arg),
        "machine": machine_info(),
        "versions": versions(Path(args.chemprop) if chemprop_model else None),
        "removed_environment_variables": [key for key in THREAD_VARIABLES if key in os.environ],
        "load_average_before_round": [],
        "runs": [],
        "memory_runs": [],
        "import_runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="screening_speed_") as tmp:
        work = Path(tmp)
        inputs = write_inputs(work, smiles, args.memory_factor)
        st_dir = save_cli_students(work / "students")["st_tiny"]
        rows = row_commands(args, student, st_dir, chemprop_model)
        report["rows"] = {row: spec["what"] for row, spec in rows.items()}
        report["commands"] = {
            row: " ".join(spec["argv"]("X.csv", "Y.csv")).replace(str(work), "$TMP").replace(str(REPO) + "/", "")
            for row, spec in rows.items()
        }
        for round_index in range(args.repeats):
            report["load_average_before_round"].append(os.getloadavg()[0])
            order = list(rows) if round_index % 2 == 0 else list(reversed(rows))
            conditions = args.conditions if round_index % 2 == 0 else list(reversed(args.conditions))
            for name in conditions:
                for row in order:
                    for size in ("n", "one"):
                        output = work / f"out_{size}.csv"
                        record = {"round": round_index, "condition": name, "row": row, "size": size}
                        with condition(name, args.busy_settle):
                            record["load_average_at_start"] = os.getloadavg()[0]
                            record["default_threads_at_start"] = default_threads(0)
                            argv = rows[row]["argv"](inputs[size], output)
                            record.update(run_process(argv, env, work / "log.txt", args.timeout))
                        record.update(count_output(output))
                        report["runs"].append(record)
                        print(json.dumps(record), flush=True)
            record = {"round": round_index, "condition": "quiet", "row": "stack imports", "size": "imports"}
            record.update(run_process([sys.executable, "-c", STACK_IMPORTS], env, work / "log.txt", args.timeout))
            report["import_runs"].append(record)
            print(json.dumps(record), flush=True)
            if round_index < args.memory_repeats:
                output = work / "out_memory.csv"
                record = {"round": round_index, "condition": "quiet", "row": "qm9-gin default", "size": "memory"}
                record["load_average_at_start"] = os.getloadavg()[0]
                argv = rows["qm9-gin default"]["argv"](inputs["memory"], output)
                record.update(run_process(argv, env, work / "log.txt", args.timeout))
                record.update(count_output(output))
                report["memory_runs"].append(record)
                print(json.dumps(record), flush=True)
    report["summary"] = summarize(report["runs"], args.n)
    report["ratios"], report["targets"] = evaluate(
        report["summary"], report["memory_runs"], report["import_runs"], args.n
    )
    report["wall_s"] = time.perf_counter() - started

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"total {report['wall_s']:.0f} s", flush=True)
    return report


if __name__ == "__main__":
    main()
