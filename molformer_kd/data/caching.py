"""Build a DatasetDict once, keep it as Arrow files under a cache directory keyed by its inputs, reload it after."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from datasets import DatasetDict, load_from_disk

from .records import DataReport

__all__ = ["CACHE_FORMAT_VERSION", "atomic_write", "cache_root", "cached_build", "file_sha256"]

# Bump when a loader's output for the same inputs changes, so stale caches are not reused.
CACHE_FORMAT_VERSION = 1
_REPORT_FILE = "molformer_kd_report.json"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """`write(file)` into a temporary file beside `path`, synced, then renamed onto `path`: a reader (or a resumed
    run) sees the old file or the whole new one, never half of one. Missing folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:  # unlike tempfile.mkstemp's 0600, the mode follows the umask
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else $MOLFORMER_KD_CACHE, else $HF_DATASETS_CACHE/molformer_kd, else ~/.cache/molformer_kd."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("MOLFORMER_KD_CACHE"):
        return Path(os.environ["MOLFORMER_KD_CACHE"])
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]) / "molformer_kd"
    return Path.home() / ".cache" / "molformer_kd"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_build(
    kind: str,
    key: dict,
    build: Callable[[], tuple[DatasetDict, DataReport]],
    cache_dir: str | os.PathLike | None = None,
) -> tuple[DatasetDict, DataReport]:
    """Load ``kind``/hash(key) from the cache, or run ``build`` and save its result there first.

    ``key`` must hold everything the output depends on (source file hashes, options); it is JSON-serialised.
    The report is stored next to the Arrow files and returned (and logged) on every load, so a skip reported
    at build time is reported again when the cached copy is used.
    """
    digest = hashlib.sha256(
        json.dumps({"kind": kind, "version": CACHE_FORMAT_VERSION, **key}, sort_keys=True, default=str).encode()
    ).hexdigest()[:24]
    target = cache_root(cache_dir) / kind / digest
    report_path = target / _REPORT_FILE
    if report_path.exists():
        dataset = load_from_disk(str(target))
        report = DataReport.from_dict(json.loads(report_path.read_text()))
    else:
        dataset, report = build()
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write into a sibling temp dir and rename, so a crashed or concurrent build never leaves a half cache.
        staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
        try:
            dataset.save_to_disk(str(staging))
            (staging / _REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=1))
            try:
                os.replace(staging, target)
            except OSError:
                if not report_path.exists():  # not a lost race with another process: a real failure
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        dataset = load_from_disk(str(target))
    report.log()
    return dataset, report
