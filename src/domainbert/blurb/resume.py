"""When a stored fine-tuning result may be reused: content hashes of a model and a dataset, and the
check of an output folder against the fingerprint of the run about to start.

A run is reused only when its fingerprint matches (the model's files and the dataset files, hashed,
and every setting that changes a result; :func:`fingerprint` builds it);
``selection.json`` also carries the planned runs. A folder holding results of other inputs or
settings is an error naming what changed, or with ``restart`` is cleared, said aloud.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from domainbert.blurb.arguments import FinetuneArgs
from domainbert.blurb.registry import default_data_dir
from domainbert.blurb.task import Task
from domainbert.errors import ConfigError

#: The files of a model directory that decide what fine-tuning starts from.
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
               "pytorch_model.bin.index.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json")
FINGERPRINT_VERSION = 4
#: The dtype of a similarity head's scores (fp32 under autocast too), in a similarity task's fingerprint:
#: outputs from the bf16 head that came before (no such field) are not reused.
SCORE_HEAD = "float32"


def content_hash(paths: Sequence[Path]) -> str:
    """SHA-256 over the names and bytes of ``paths`` (a model's files, a dataset's files)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode("utf-8") + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def model_files(model_dir: Path) -> list[Path]:
    """The files :data:`MODEL_FILES` names that ``model_dir`` holds, weight shards included."""
    found = [model_dir / n for n in MODEL_FILES if (model_dir / n).is_file()]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (model_dir / index).is_file():
            shards = set(json.loads((model_dir / index).read_text(encoding="utf-8")).get("weight_map", {}).values())
            found += [model_dir / n for n in sorted(shards)]
    return found


def _changes(stored: dict[str, Any] | None, expected: dict[str, Any]) -> list[str]:
    """The fields of ``expected`` that ``stored`` differs in, as ``name: old -> new``."""
    if not isinstance(stored, dict):
        return ["no fingerprint (made by an older domainbert)"]
    def shown(value: Any) -> str:
        return value[:12] if isinstance(value, str) and len(value) == 64 else json.dumps(value)
    return [f"{k}: {shown(stored.get(k)) if k in stored else 'not recorded'} -> {shown(v)}"
            for k, v in expected.items() if stored.get(k) != v]


#: What ``finetune`` writes into ``out``; ``--restart`` removes these and nothing else.
OUTPUTS = ("runs", "model", "dev_predictions.jsonl", "test_predictions.jsonl", "selection.json", "metrics.json")


def check_outputs(out: Path, expected: dict[str, Any], plan: list[str], restart: bool) -> None:
    """Refuse (or, with ``restart``, clear) an ``out`` holding results of other inputs or settings."""
    changes: list[str] = []
    selection = out / "selection.json"
    if selection.is_file():
        stored = json.loads(selection.read_text(encoding="utf-8"))
        changes += _changes(stored.get("fingerprint"), expected)
        # More seeds (or settings) than before reuse every finished run; fewer, or others, would leave
        # the saved model and predictions belonging to a run outside the plan.
        if "fingerprint" in stored and not set(stored.get("plan") or []) <= set(plan):
            changes.append(f"runs planned: {len(stored.get('plan') or [])} -> {len(plan)}, not a superset "
                           "(other settings, seeds or budget)")
    for result in sorted((out / "runs").glob("*/result.json")):
        changes += _changes(json.loads(result.read_text(encoding="utf-8")).get("fingerprint"), expected)
    changes = list(dict.fromkeys(changes))
    if not changes:
        return
    what = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
    if not restart:
        raise ConfigError(f"{out} holds fine-tuning results of other inputs or settings ({what}): pass "
                          "another --out, or --restart to discard them")
    print(f"note: --restart: discarding {out}'s results of other inputs or settings ({what})", file=sys.stderr)
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def fingerprint(task: Task, model_dir: Path, args: FinetuneArgs, precision: str | None = None) -> dict[str, Any]:
    """What a stored run must match to be reused: the model's and the data's content, the labels and
    negative class scored, and every setting that changes a result, precision as resolved on this
    machine (the setting and seed are in the run's id)."""
    root = Path(args.data_dir) if args.data_dir is not None else default_data_dir()
    data = [p for split in task.examples for p in (task.record.locate(split, root) or ((), None))[0]]
    sizes = {split: len(rows) for split, rows in task.examples.items()}
    return {"version": FINGERPRINT_VERSION, "task": task.record.name,
            "model_sha256": content_hash(model_files(Path(model_dir))), "data_sha256": content_hash(data),
            "sizes": sizes, "limit": args.limit, "max_length": task.max_length, "max_steps": args.max_steps,
            "precision": precision or args.precision, "group_by_length": args.group_by_length, "budget": args.budget,
            "task_type": task.record.task_type, "metric": task.record.metric, "labels": list(task.labels),
            "negative_label": task.record.negative_label,
            **({"score_head": SCORE_HEAD} if task.record.task_type == "similarity" else {})}
