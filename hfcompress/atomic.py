"""Folders written whole or not at all: every folder hfcompress writes is built beside its final place and
swapped in at the end, so a run killed midway leaves the previous folder (or none), never a half-written one
that loads wrong.

Example:
    >>> with writing_folder("out/onnx") as partial:
    ...     (partial / "model.onnx").write_bytes(data)
    ...     (partial / "config.json").write_text(config)
    >>> # out/onnx now holds both files; killed inside the block, out/onnx is what it was before
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_RENAME_EXCHANGE = 2  # linux/fs.h


def _partial(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.partial")


def _old(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def restore_interrupted(folder: str | os.PathLike) -> None:
    """Where a swap was killed between its two renames (systems without an atomic exchange), put the previous
    folder back; leftovers of a killed write are removed."""
    folder = Path(folder)
    if not folder.exists() and _old(folder).exists():
        os.replace(_old(folder), folder)
    shutil.rmtree(_old(folder), ignore_errors=True)


def swap_in(partial: Path, folder: Path) -> None:
    """Make the finished ``partial`` folder ``folder``, replacing what was there."""
    if folder.exists() and _exchange(partial, folder):
        shutil.rmtree(partial)  # now the previous folder
        return
    old = _old(folder)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(partial, folder)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def writing_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``folder`` to write into; when the block ends normally it replaces
    ``folder`` in one step, when it raises it is removed and ``folder`` stays as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(folder)
    partial = _partial(folder)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    swap_in(partial, folder)


def replace_files(source: str | os.PathLike, folder: str | os.PathLike, skip: tuple[str, ...] = ()) -> None:
    """Copy the files of ``source`` into ``folder`` (which holds other things too, so it cannot be swapped whole).

    config.json is what makes a folder load as a model: it is removed first and written last, so a copy killed
    midway leaves a folder that refuses to load rather than new weights under an old config.
    """
    source, folder = Path(source), Path(folder)
    files = [item for item in source.iterdir() if item.is_file() and item.name not in skip]
    (folder / "config.json").unlink(missing_ok=True)
    for item in sorted(files, key=lambda f: f.name == "config.json"):
        tmp = folder / f".{item.name}.partial"
        shutil.copy2(item, tmp)
        os.replace(tmp, folder / item.name)


def last_complete_checkpoint(run_dir: str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """The newest ``checkpoint-N`` in ``run_dir`` that the Trainer finished writing, and the newer ones it did not.

    The Trainer writes a checkpoint in place and ``trainer_state.json`` last; a run killed while saving leaves a
    newest checkpoint without it (or with an empty ``config.json``), which ``resume_from_checkpoint=True`` would
    pick and fail on.

    Example:
        >>> checkpoint, skipped = last_complete_checkpoint("out")
    """
    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        suffix = path.name[len("checkpoint-"):]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    skipped = []
    for _, path in sorted(found, reverse=True):
        if _complete(path):
            return path, skipped
        skipped.append(path)
    return None, skipped


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        config = checkpoint / "config.json"
        if config.exists():
            json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True
