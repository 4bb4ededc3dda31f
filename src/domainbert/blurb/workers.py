"""``--devices``: fine-tuning runs spread over worker processes, one per device, for ``finetune`` and ``blurb``.

:func:`parse_devices` checks the list (each a device this machine has, at least two); :func:`run_workers`
starts one spawned process per device, each running ``target(index, count, **kwargs, device=device)`` on its
shard of the runs (``--shard index/count``: the runs a hash gives it), a CPU worker with its share of
the cores, and waits for all. Every run is the one a single process makes on such a device; the
outputs are written by whichever worker finishes a dataset's last run, as with ``--shard``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from typing import Any

import torch

from domainbert.errors import ConfigError, DomainBertError

DEVICES_HELP = ("run on several devices at once, one worker process per device, each fine-tuning its share of the "
                "runs (e.g. cuda:0,cuda:1,cuda:2,cuda:3; cpu,cpu splits the cores); each run is the one a single "
                "process makes on such a device")


def parse_devices(text: str) -> list[str]:
    """``--devices cuda:0,cuda:1`` (or ``cpu,cpu``) as a list; each must be a device torch knows here."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for device in devices:
        try:
            kind = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"--devices: {device!r} is not a device: give e.g. cuda:0,cuda:1 or cpu,cpu") from None
        if kind.type == "cuda" and (not torch.cuda.is_available() or (kind.index or 0) >= torch.cuda.device_count()):
            raise ConfigError(f"--devices: {device} is not on this machine ({torch.cuda.device_count()} CUDA "
                              "device(s)): name the GPUs it has, or cpu")
    if len(devices) < 2:
        raise ConfigError(f"--devices needs at least two devices for parallel workers, got {text!r}: give e.g. "
                          "cuda:0,cuda:1, or use --device for one")
    return devices


def _worker(index: int, devices: list[str], target: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    if devices[index] == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices.count("cpu")))
    target(index, len(devices), **{**kwargs, "device": devices[index]})


def run_workers(devices: list[str], target: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Run ``target`` (a module-level function) once per device in its own process, and wait for all."""
    context = multiprocessing.get_context("spawn")  # a fresh process each: no CUDA state inherited
    workers = [context.Process(target=_worker, args=(i, devices, target, kwargs)) for i in range(len(devices))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    bad = [f"{devices[i]} (exit {w.exitcode})" for i, w in enumerate(workers) if w.exitcode != 0]
    if bad:
        raise DomainBertError(f"--devices: the worker(s) on {', '.join(bad)} failed (their error is above); "
                              "rerun the same command: finished runs are kept")
