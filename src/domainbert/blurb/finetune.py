"""``domainbert finetune``: a budget's settings x seeds on one dataset, the setting selected on dev, the outputs.

This module runs the plan and writes what it gives; the jobs it calls each have their module:
:mod:`~domainbert.blurb.arguments` (what a run needs, the command line), :mod:`~domainbert.blurb.budgets`
(which settings and seeds), :mod:`~domainbert.blurb.task` (the splits read and featurized, the model with
its head), :mod:`~domainbert.blurb.training` (one run), :mod:`~domainbert.blurb.predict` (predictions and
their files) and :mod:`~domainbert.blurb.resume` (fingerprints: what a rerun may reuse).

One loop serves every task type; what differs per type is data, held in the dataset record
(:class:`domainbert.blurb.DatasetRecord`) and in :data:`domainbert.blurb.task.HEADS`:

=============  ===================================  ==========================================
task type      head / problem type                  featurizing
=============  ===================================  ==========================================
ner, pico      BertForTokenClassification           words → sub-tokens, the first sub-token of a
                                                    word carries its tag, the rest -100; inputs
                                                    longer than the maximum are split into
                                                    overlapping windows (never truncated) and each
                                                    word is scored in exactly one window, the one
                                                    where it has the most context on both sides
relation       BertForSequenceClassification,       the ``@GENE$``-style entity markers found in
               single label                         the data are added to the vocabulary as whole
                                                    tokens (embeddings resized)
similarity     BertForSequenceClassification,       sentence pair, score in [0, 4]
               regression
multilabel     BertForSequenceClassification,       document; a label is predicted when its
               multi label (BCE)                    sigmoid exceeds 0.5
classification BertForSequenceClassification,       question + context as a pair
               single label
=============  ===================================  ==========================================

Training follows BERT's fine-tuning recipe as BLURB used it (Gu et al. 2021, §4.3): AdamW with
weight decay (0.01 unless the budget says otherwise) except on biases and LayerNorm weights, linear
warmup (10% unless the budget says otherwise) then linear decay to 0, gradient clipping at 1.0,
bf16 autocast where the hardware has it (:mod:`domainbert.train.precision`),
batches grouped by length with dynamic padding. On a GPU a step is built not to wait for it
(``benchmarks/gpu_check.py``'s no-sync-finetune checks it): batches are made and their Packing found
on the host and copied through pinned memory, and the loss is read back every ``LOG_EVERY`` steps.
Each epoch is scored on dev; a run keeps its best epoch (or its last, under a budget that says so).
Which settings and seeds are trained is the budget's (:mod:`domainbert.blurb.budgets`: ``quick``,
``full-epochs``, ``grid``, ``paper``, ``linkbert``); the setting with the best mean dev score is
selected and its test mean ± std reported.

Every finished run writes ``runs/<run id>/result.json`` atomically; a restarted command skips runs
whose result exists, and a run killed after it saved its state continues from that epoch
(:class:`~domainbert.blurb.training.ResumeState`), so an interrupted grid resumes where it stopped. A run
is reused only when its fingerprint matches: the model's content (config, weights and vocabulary files, hashed: a model
re-exported into the same folder is another model), the dataset files' content, and every setting
that changes a result (budget, limit, max steps, sequence length, precision, batch grouping);
``selection.json`` carries the fingerprint and the planned runs too. An ``--out`` holding results of
other inputs or settings is an error naming what changed; ``--restart`` discards them (said aloud)
and starts afresh.

Output directory::

    metrics.json                 selected setting, dev/test mean ± std and per seed, every run
    dev_predictions.jsonl        {"id", "prediction", "gold"} per example, from the saved run
    test_predictions.jsonl
    model/                       the fine-tuned model of the best single run (by dev score):
                                 config.json (id2label, architectures) + model.safetensors +
                                 tokenizer files (markers included), loadable by transformers'
                                 AutoModelForTokenClassification / AutoModelForSequenceClassification
    selection.json               which run the model and the predictions come from
    runs/<run id>/result.json    one per (lr, batch, epochs, seed)
    runs/<run id>/epochs.jsonl   {"epoch", "step", "train_loss", "dev", "best_epoch", "seconds"}, a line
                                 as each epoch ends (also printed on stderr); dev and best_epoch
                                 null before the last epoch under final-epoch selection
    runs/<run id>/resume.pt      a long run's state at its last saved epoch (``--checkpoint-minutes``),
                                 which a killed run continues from; removed once result.json is written

With several settings the saved model is the best single run by dev score (a tie goes to the run
planned first), which belongs to the selected setting only when that setting also holds the best seed;
``metrics.json`` names both.

``--shard I/N`` trains only the runs a hash of (dataset, run id) gives to shard ``I``: the processes of a
job array share ``--out``, each run is trained by one of them, and the shared files are read and written
under a lock (``runs/.lock``); the process that finds every planned run done writes ``metrics.json``,
so the outputs are the same as one process's, whatever the order the shards finish in. ``--devices
cuda:0,cuda:1`` runs such shards in worker processes, one per device (:mod:`domainbert.blurb.workers`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import torch

from domainbert.atomic import atomic_write_json, held
from domainbert.blurb.arguments import FinetuneArgs, args_from_namespace, configure, in_shard
from domainbert.blurb.budgets import default_seeds, max_length_for, settings_for
from domainbert.blurb.metrics import breakdown
from domainbert.blurb.predict import read_predictions, write_predictions
from domainbert.blurb.registry import record_for
from domainbert.blurb.resume import check_outputs, fingerprint
from domainbert.blurb.task import prepare_task
from domainbert.blurb.training import RESUME_FILE, RunResult, train_run
from domainbert.blurb.workers import parse_devices, run_workers
from domainbert.errors import CheckpointError, ConfigError
from domainbert.model.card import finetuned_card, write_card
from domainbert.model.configuration import BertConfig
from domainbert.model.hub import ModelSource
from domainbert.train.precision import resolve_precision

__all__ = ["FinetuneArgs", "configure", "finetune", "run"]

LOCK = "runs/.lock"
"""Held while a process reads or writes the shared files of ``out`` (shards of a job array share it)."""


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def finetune(args: FinetuneArgs) -> dict[str, Any]:
    """Run a budget's settings × seeds (skipping finished runs), select on dev, write the outputs."""
    record = record_for(args.task, args.task_type, args.data, args.negative_label)
    if not (args.model / "config.json").is_file():
        raise CheckpointError(f"{args.model} has no config.json: pass a BERT checkpoint directory "
                              "(e.g. one written by `domainbert model create` or a Hugging Face BERT)")
    config = BertConfig.load(args.model)
    task = prepare_task(record, args.model, args.data_dir, args.max_seq_length or max_length_for(args.budget, record),
                        args.limit, model_max_positions=config.max_position_embeddings)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(args.precision, device, fp16=True)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    selection_path = out / "selection.json"
    expected = fingerprint(task, args.model, args, precision)
    settings = settings_for(record, args, len(task.features["train"]), config.hidden_size)
    seeds = args.seeds or default_seeds(args.budget, record)
    plan = [setting.run_id(seed) for setting in settings for seed in seeds]
    lock = out / LOCK
    with held(lock):  # shards of a job array share out: one at a time reads and writes its files
        check_outputs(out, expected, plan, args.restart)
        if selection_path.is_file():  # a plan grown by more seeds: the saved run stays the selection
            stored = json.loads(selection_path.read_text(encoding="utf-8"))
            if stored.get("plan") != plan:
                atomic_write_json(selection_path, {**stored, "plan": plan})
    started = time.perf_counter()
    for setting in settings:
        for seed in seeds:
            run_id = setting.run_id(seed)
            path = out / "runs" / run_id / "result.json"
            if path.is_file():  # done (check_outputs made sure it was made from the same inputs)
                (path.parent / RESUME_FILE).unlink(missing_ok=True)  # a state a kill left beside its result
                continue
            if not in_shard(record.name, run_id, args.shard):
                continue  # another shard's
            result, model, predictions = train_run(task, args.model, setting, seed, replace(args, precision=precision),
                                                   device, expected)  # hashed once for the grid
            with held(lock):
                stored = json.loads(selection_path.read_text()) if selection_path.is_file() else None
                # The best single run by dev is the output; a tie goes to the run planned first, so the
                # choice is the same whatever order the runs (or shards) finish in.
                if (stored is None or not (out / "dev_predictions.jsonl").is_file() or result.dev > stored["dev"]
                        or (result.dev == stored["dev"] and stored["run_id"] in plan
                            and plan.index(run_id) < plan.index(stored["run_id"]))):
                    if args.save_model:
                        model.save_pretrained(out / "model", tokenizer=task.tokenizer)
                    for split in ("dev", "test"):
                        write_predictions(out / f"{split}_predictions.jsonl", task, split, predictions[split])
                    atomic_write_json(selection_path, {"run_id": run_id, "dev": result.dev,
                                                       "fingerprint": expected, "plan": plan})
                atomic_write_json(path, asdict(result))  # last: the run counts as done only when all is written
            (path.parent / RESUME_FILE).unlink(missing_ok=True)  # the finished run's state: no longer needed
            del model
    done = {run_id: out / "runs" / run_id / "result.json" for run_id in plan}
    missing = [run_id for run_id, path in done.items() if not path.is_file()]
    if missing:  # a shard whose dataset other shards have yet to finish: they write the outputs
        return {"task": record.name, "display_name": record.display_name, "incomplete": True,
                "missing_runs": missing, "planned_runs": len(plan)}
    results = [RunResult(**json.loads(path.read_text(encoding="utf-8"))) for path in done.values()]
    by_setting: dict[str, list[RunResult]] = {}
    for r in results:
        by_setting.setdefault(json.dumps(r.setting, sort_keys=True), []).append(r)
    grid = [{"setting": json.loads(k), "dev": _mean_std([r.dev for r in rs]),
             "test": _mean_std([r.test for r in rs])} for k, rs in by_setting.items()]
    selected = max(grid, key=lambda g: g["dev"]["mean"])
    chosen = by_setting[json.dumps(selected["setting"], sort_keys=True)]
    constant = [r.constant for r in chosen if r.constant]
    metrics = {
        "task": record.name, "display_name": record.display_name, "task_type": record.task_type,
        "group": record.group, "metric": record.metric, "model": str(args.model), "budget": args.budget,
        "model_source": (args.source or ModelSource(args.model)).record(),
        "selected": selected["setting"],
        "dev": {**selected["dev"], "per_seed": {str(r.seed): r.dev for r in chosen}},
        "test": {**selected["test"], "per_seed": {str(r.seed): r.test for r in chosen}},
        "grid": grid, "runs": [asdict(r) for r in results],
        "saved_model_run": (json.loads(selection_path.read_text())["run_id"]
                            if selection_path.is_file() else None),
        "max_seq_length": task.max_length, "markers": task.markers,
        "examples": {s: len(rows) for s, rows in task.examples.items()},
        "limit": args.limit, "max_steps": args.max_steps, "precision": precision, "fingerprint": expected,
        "device": str(device), "wall_seconds": round(time.perf_counter() - started, 2),
        "notes": list(record.notes),
        # the selected setting's runs whose test predictions are all the same: they learned nothing
        "constant": (f"{constant[0]} ({len(constant)} of {len(chosen)} seeds)" if constant else None),
        "breakdown": {split: breakdown(record, *read_predictions(out / f"{split}_predictions.jsonl"))
                      for split in ("dev", "test") if (out / f"{split}_predictions.jsonl").is_file()},
        "size_checks": task.size_checks,
    }
    with held(lock):
        atomic_write_json(out / "metrics.json", metrics)
    if args.save_model and (out / "model" / "config.json").is_file():
        write_card(finetuned_card(metrics, out / "model"), out / "model")
    return metrics


def _worker(index: int, count: int, device: str, args: FinetuneArgs) -> None:
    """One ``--devices`` worker: its shard of the runs on its device."""
    finetune(replace(args, shard=(index, count), device=device))


def run(ns: argparse.Namespace) -> int:
    """``domainbert finetune``: fine-tune, print the selected setting's dev and test scores."""
    args = args_from_namespace(ns)
    if ns.devices:
        devices = parse_devices(ns.devices)
        if args.shard:
            raise ConfigError("--devices runs its own shards, one per device: give --devices or --shard, not both")
        run_workers(devices, _worker, {"args": args})  # the worker that finishes the last run writes the outputs
        metrics = json.loads((args.out / "metrics.json").read_text(encoding="utf-8"))
    else:
        metrics = finetune(args)
    if metrics.get("incomplete"):
        print(f"{metrics['display_name']}: this shard's runs are done; {len(metrics['missing_runs'])} of "
              f"{metrics['planned_runs']} runs are other shards' (the last shard to finish writes the outputs): "
              f"{', '.join(metrics['missing_runs'][:4])}{' ...' if len(metrics['missing_runs']) > 4 else ''}")
        return 0
    dev, test = metrics["dev"], metrics["test"]
    print(f"{metrics['display_name']} ({metrics['metric']}): dev {100 * dev['mean']:.2f} ± "
          f"{100 * dev['std']:.2f}, test {100 * test['mean']:.2f} ± {100 * test['std']:.2f} "
          f"(n={test['n']}, {metrics['selected']}); wrote {ns.out}")
    return 0
