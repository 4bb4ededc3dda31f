"""Writing a file so that an interruption never leaves it half-written: write a temporary file in
the same folder, flush it to disk, then rename it over the target (a rename within one file
system is atomic). Used for checkpoints, configs, vocabularies, metrics and reports. And
:func:`one_writer`, which keeps a second run from writing into a folder another run is writing.

``download.py`` keeps its own ``.part`` files: there the partial file is what a resumed transfer
continues from.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from domainbert.errors import DomainBertError

try:
    import fcntl  # POSIX
except ImportError:  # pragma: no cover - elsewhere no lock; concurrent runs into one folder are the user's call
    fcntl = None  # type: ignore[assignment]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], fsync: bool = True) -> Path:
    """Call ``write(tmp)`` for a temporary path beside ``path``, then rename it to ``path``.

    The folder is created if needed. Whatever ``write`` raises, the temporary file is removed and
    an existing ``path`` is left as it was. ``fsync`` flushes the data to disk before the rename
    (for large files whose loss would cost work: weights, checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=False)


def atomic_write_json(path: str | os.PathLike, data: Any, **dumps: Any) -> Path:
    """Write ``data`` as indented JSON (and a final newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, **dumps) + "\n")


@contextlib.contextmanager
def held(lock: Path) -> Iterator[None]:
    """Hold ``lock`` (POSIX ``flock``, waiting for another holder) for a few reads and writes that several
    processes sharing a folder must not interleave; the file stays (removing it would let a waiting
    process lock a file no other process sees)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def one_writer(folder: Path, command: str, error: type[DomainBertError] = DomainBertError) -> Iterator[None]:
    """Hold ``<folder>/.<last word of command>.lock`` (POSIX ``flock``) while ``command`` writes into ``folder``;
    a second holder gets ``error``: "another `domainbert <command>` is writing to <folder>". The lock
    file is removed when the command ends (a folder left empty by a failed command is the CLI's to
    remove: :func:`domainbert.cli.main`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    lock = folder / f".{command.split()[-1]}.lock"
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A holder removes the file when it ends: a lock taken on the removed file is no lock.
            if not lock.exists() or os.stat(lock).st_ino != os.fstat(handle.fileno()).st_ino:
                raise OSError("the lock file was replaced")
        except OSError:
            raise error(f"another `domainbert {command}` is writing to {folder}; wait for it to finish, "
                        "or pass another --out DIR") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # leave the folder as the command's output alone
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

