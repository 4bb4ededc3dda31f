"""A pretraining run's resumable state: checkpoints on disk and every RNG state of every rank.

A checkpoint (``checkpoints/step-NNNNNNNN/training_state.pt``) holds the model, the optimizer
state, the step, the number of samples consumed (the data position), every RNG state of every rank
(python, numpy, torch, CUDA), the resolved arguments and the model config. It is written into a
temporary directory, fsynced and renamed, so a ``kill -9`` at any moment leaves the previous
checkpoint intact; it is read back with ``torch.load(weights_only=True)``. This is the training
side of "checkpoint"; the Hugging Face directory a user publishes is
:mod:`domainbert.model.hf_io` (written from a checkpoint by :mod:`domainbert.train.export`).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domainbert.errors import TrainingError

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "training_state.pt"


def rng_states() -> dict[str, Any]:
    """Every random state the run touches, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict[str, Any]) -> None:
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def gather_rng_states() -> list[dict[str, Any]]:
    """The RNG states of every rank, in rank order (a collective call under DDP)."""
    mine = rng_states()
    if not torch.distributed.is_initialized():
        return [mine]
    everyone: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, mine)
    return everyone


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary directories are not complete)."""
    root = run_dir / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE_FILE).is_file())


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    consumed_samples: int, args: dict[str, Any], rng: list[dict[str, Any]], keep_last: int) -> Path:
    """Write ``checkpoints/step-NNNNNNNN`` atomically (temporary dir, fsync, rename); keep the last
    ``keep_last``. ``args`` are the run's resolved training arguments, stored for the resume."""
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    state = {"step": step, "consumed_samples": consumed_samples, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "rng": rng, "args": args,
             "config": model.config.to_dict()}
    torch.save(state, tmp / STATE_FILE)
    with open(tmp / STATE_FILE, "rb") as fh:
        os.fsync(fh.fileno())
    if final.exists():  # a checkpoint of the same step from an earlier attempt: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    dir_fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself reaches the disk
    finally:
        os.close(dir_fd)
    for old in checkpoint_dirs(run_dir)[:-keep_last]:
        shutil.rmtree(old)
    for stale in root.glob(".tmp-step-*"):  # left by a process killed while saving
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


#: What a training checkpoint holds (save_checkpoint writes all of them).
STATE_KEYS = ("step", "consumed_samples", "model", "optimizer", "rng", "args", "config")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state; a damaged one, or one that is not domainbert's, is a TrainingError."""
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: name it and the way out
        raise TrainingError(f"checkpoint {path} cannot be read ({type(exc).__name__}): delete that directory "
                            "to resume from the checkpoint before it") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise TrainingError(f"checkpoint {path} is not a domainbert training checkpoint (no {', '.join(missing)}): "
                            "delete that directory to resume from the checkpoint before it")
    return state
