"""A suite's ``results.json``: one entry per dataset, built from that dataset's ``metrics.json``, and the
BLURB score over them.

:func:`dataset_entry` and :func:`summarize` are what ``domainbert blurb`` writes after fine-tuning;
:func:`assemble` builds the same file again from the dataset folders alone (``<dataset>/metrics.json``),
so that a suite whose datasets were run apart (some on a CPU, the rest on a GPU; over several sessions;
as shards of a job array) or kept without its models (``benchmarks/results/``) gives one report.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from domainbert.blurb.metrics import blurb_score
from domainbert.blurb.registry import DATASETS, get_record
from domainbert.errors import DataError


def conditions(metrics: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two models' scores on a dataset to compare: the budget, the examples used
    (limit), the step cap, the sequence length, the epochs asked for, the data files' content and, for
    similarity, the head's dtype."""
    fingerprint = metrics["fingerprint"]  # what a rerun must match; these are the parts two models must share
    return {**{key: fingerprint[key] for key in ("budget", "limit", "max_steps", "max_length", "data_sha256")},
            "epochs": metrics["selected"]["epochs"],
            **({"score_head": fingerprint["score_head"]} if "score_head" in fingerprint else {})}


def dataset_entry(metrics: dict[str, Any]) -> dict[str, Any]:
    """A fine-tuned dataset's ``results.json`` entry, from its ``metrics.json``."""
    return {"display_name": metrics["display_name"], "task_type": metrics["task_type"], "group": metrics["group"],
            "metric": metrics["metric"], "notes": list(metrics["notes"]), "status": "complete", "missing_files": [],
            **{key: metrics[key] for key in ("selected", "dev", "test", "wall_seconds", "examples", "precision",
                                              "device", "constant", "size_checks")},
            "conditions": conditions(metrics)}


def incomplete_entry(missing: list[str], planned: int) -> dict[str, Any]:
    """The status of a dataset some of whose runs are not done (shards of a job array still running)."""
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return {"status": "incomplete", "missing_runs": missing,
            "reason": f"{len(missing)} of {planned} runs not done yet ({shown}): run the shards that hold them "
                      "(the same command with their --shard I/N), then `domainbert report` this folder"}


def _missing_runs(folder: Path) -> tuple[list[str], int] | None:
    """A dataset folder's planned runs without a result (None when it holds no plan)."""
    if not (folder / "selection.json").is_file():
        return None
    plan = _read(folder / "selection.json").get("plan") or []
    return [r for r in plan if not (folder / "runs" / r / "result.json").is_file()], len(plan)


def summarize(datasets: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The BLURB score over the datasets with a test score (None when there is none); ``complete`` only
    when all 13 have one."""
    scores = {n: d["test"]["mean"] for n, d in datasets.items() if "test" in d}
    if not scores:
        return None
    bs = blurb_score(scores)
    return {"score": bs.score, "per_type": bs.per_type, "missing_types": list(bs.missing_types),
            "complete": bs.complete and len(scores) == len(DATASETS)}


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} cannot be read as JSON ({exc}): rerun that dataset or remove its folder") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} is not a JSON object: rerun that dataset or remove its folder")
    return value


def assemble(folder: Path) -> dict[str, Any]:
    """``results.json`` for ``folder`` rebuilt from its dataset folders: an entry from each
    ``<dataset>/metrics.json``; where a dataset has no folder, the entry ``folder/results.json`` holds
    (a missing or failed dataset and its reason). The datasets' models must be the same checkpoint."""
    old = _read(folder / "results.json") if (folder / "results.json").is_file() else {}
    found = {name: _read(folder / name / "metrics.json") for name in DATASETS
             if (folder / name / "metrics.json").is_file()}
    planned = {name: _missing_runs(folder / name) for name in DATASETS if name not in found}
    planned = {name: runs for name, runs in planned.items() if runs is not None}
    if not found and not old and not planned:
        raise DataError(f"{folder} holds neither results.json nor <dataset>/metrics.json: pass the --out folder of "
                        "a `domainbert blurb` run (or a copy of its dataset folders)")
    models = {m["fingerprint"]["model_sha256"] for m in found.values()}
    if len(models) > 1:
        raise DataError(f"{folder}: its datasets were fine-tuned from {len(models)} different checkpoints "
                        f"({', '.join(sorted(n for n in found))}); keep one model's datasets per folder")
    old_datasets = old.get("datasets") or {}
    datasets = {name: dataset_entry(found[name]) if name in found else old_datasets[name]
                for name in DATASETS if name in found or name in old_datasets}
    for name, runs in planned.items():  # runs of a dataset whose shards have not all finished: say which
        if runs[0]:
            record = get_record(name)
            base = old_datasets.get(name) or {"display_name": record.display_name, "task_type": record.task_type,
                                              "group": record.group, "metric": record.metric,
                                              "notes": list(record.notes), "missing_files": []}
            datasets[name] = {**base, **incomplete_entry(*runs)}
    datasets = {name: datasets[name] for name in DATASETS if name in datasets}
    first = next(iter(found.values()), None)
    budgets = sorted({m["budget"] for m in found.values()}) or [old.get("budget", "quick")]
    return {
        **old,
        "model": first["model"] if first else old.get("model", "(no dataset finished yet)"),
        "name": old.get("name"),
        "model_source": first["model_source"] if first else old.get("model_source"),
        "budget": "+".join(budgets),
        "out": str(folder),
        "data_dir": old.get("data_dir", ""),
        "date": old.get("date") or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "limit": first["limit"] if first else old.get("limit"),
        "max_steps": first["max_steps"] if first else old.get("max_steps"),
        "wall_seconds": round(sum(d.get("wall_seconds", 0.0) for d in datasets.values()), 1),
        "datasets": datasets,
        "blurb": summarize(datasets),
    }
