"""Fault-safe run files: atomic writes, complete checkpoints, finished stages and disk errors that name the path.

A kill -9 or a full disk can stop a process in the middle of any write, and with several processes (`accelerate
launch`) one process may read what another is still writing. Three rules keep every run readable and resumable:

- A file that another process or a later stage reads (an exported model, `metrics.json`, a stage marker) is written
  under a temporary name in its own folder and renamed into place (`os.replace` is atomic on POSIX): readers see the
  old file or the new one, never half of one. Readers on other ranks wait at a barrier for the writer (`barrier`).
- A Trainer checkpoint folder counts only once it holds `CHECKPOINT_COMPLETE` (written after every rank wrote its
  part); `last_complete_checkpoint` never picks a folder without it, so resuming after a kill continues from the
  last complete checkpoint.
- A training stage that finished (model exported) writes `STAGE_COMPLETE` last; resuming a finished stage is a no-op.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..data.caching import atomic_write

__all__ = [
    "CHECKPOINT_COMPLETE",
    "STAGE_COMPLETE",
    "RunFileError",
    "atomic_export",
    "atomic_write_text",
    "barrier",
    "checkpoint_dirs",
    "clear_stage",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "mark_checkpoint_complete",
    "read_stage_marker",
    "remove_incomplete_checkpoints",
    "reported_file_errors",
    "write_stage_marker",
]

CHECKPOINT_COMPLETE = "checkpoint_complete.json"
STAGE_COMPLETE = "stage_complete.json"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# The model files `from_pretrained` looks for first: moved into place last, so that a reader that finds them also
# finds the weights and processor files they describe.
_CONFIG_FILES = ("config.json",)
_TORCH_WRITE_FAILURES = ("iostream error", "PytorchStreamWriter", "file write failed")


class RunFileError(OSError):
    """A run file could not be written or read (disk full, no permission): the message names the path."""


def barrier() -> None:
    """Wait for every process of an `accelerate launch` / torchrun run; nothing to do in a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _describe_os_error(error: BaseException, path: str | os.PathLike) -> str | None:
    """One line for the file-system errors a user can act on (full disk, permissions), None for any other error."""
    number = getattr(error, "errno", None)
    text = str(error)
    if number == errno.ENOSPC or "No space left" in text:
        return f"no space left on the device while writing {path}"
    if number in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {path} ({os.strerror(number)})"
    # torch.save reports a failed write as a C++ stream error that names neither the cause nor the file.
    if isinstance(error, RuntimeError) and any(sign in text for sign in _TORCH_WRITE_FAILURES):
        try:
            free = shutil.disk_usage(Path(path).parent if not Path(path).is_dir() else path).free
        except OSError:
            free = None
        cause = "no space left on the device" if free is not None and free < 64 * 1024**2 else "a failed write"
        return f"{cause} while writing {path} ({text.strip().splitlines()[0]})"
    return None


@contextlib.contextmanager
def reported_file_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a full-disk or permission error inside the block as a `RunFileError` naming `path`."""
    try:
        yield
    except RunFileError:
        raise
    except (OSError, RuntimeError) as error:
        message = _describe_os_error(error, path)
        if message is None:
            raise
        raise RunFileError(getattr(error, "errno", None) or errno.EIO, message) from error


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and an atomic rename."""
    with reported_file_errors(path):
        atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_export(save: Callable[[str], None], output_dir: str | os.PathLike) -> None:
    """Run `save(folder)` into a temporary folder beside `output_dir`, then move each file into `output_dir`.

    Each move is an atomic rename, config files last: a process that finds `config.json` finds a complete model.
    Other files of `output_dir` (checkpoints, logs) are left alone.
    """
    output_dir = Path(output_dir)
    with reported_file_errors(output_dir):
        output_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=output_dir))
        try:
            save(str(staging))
            names = sorted(p.name for p in staging.iterdir())
            for name in sorted(names, key=lambda n: n in _CONFIG_FILES):
                target = output_dir / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(staging / name, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def checkpoint_dirs(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """`(step, path)` of every `checkpoint-N` folder in `folder`, by step."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def mark_checkpoint_complete(checkpoint_dir: str | os.PathLike, global_step: int) -> None:
    atomic_write_text(Path(checkpoint_dir) / CHECKPOINT_COMPLETE, json.dumps({"global_step": global_step}))


def is_complete_checkpoint(checkpoint_dir: str | os.PathLike) -> bool:
    return Path(checkpoint_dir, CHECKPOINT_COMPLETE).is_file()


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The complete checkpoint of `folder` with the highest step (half-written ones are never picked), or None."""
    complete = [path for _, path in checkpoint_dirs(folder) if is_complete_checkpoint(path)]
    return str(complete[-1]) if complete else None


def remove_incomplete_checkpoints(folder: str | os.PathLike) -> list[str]:
    """Delete the checkpoint folders a killed run left half-written; returns their paths."""
    removed = []
    for _, path in checkpoint_dirs(folder):
        if not is_complete_checkpoint(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def clear_stage(stage_dir: str | os.PathLike) -> int:
    """Delete every checkpoint and the finished-stage marker of `stage_dir` (a run starting afresh); returns the
    number of checkpoints removed."""
    found = checkpoint_dirs(stage_dir)
    for _, path in found:
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(Path(stage_dir) / STAGE_COMPLETE)
    return len(found)


def write_stage_marker(stage_dir: str | os.PathLike, info: dict) -> None:
    atomic_write_text(Path(stage_dir) / STAGE_COMPLETE, json.dumps(info, indent=1, default=str))


def read_stage_marker(stage_dir: str | os.PathLike) -> dict | None:
    """What a finished stage recorded, or None when the stage has not finished (or never ran)."""
    path = Path(stage_dir) / STAGE_COMPLETE
    if not path.is_file():
        return None
    return json.loads(path.read_text())
