"""Writing a file so that an interruption never leaves it half-written: write a temporary file in
the same folder, flush it to disk, then rename it over the target (a rename within one file
system is atomic). Used for checkpoints, configs, vocabularies, metrics and reports.

``download.py`` keeps its own ``.part`` files: there the partial file is what a resumed transfer
continues from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


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
