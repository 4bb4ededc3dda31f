"""``domainbert blurb``: fine-tune one model on the BLURB suite and report it beside the published rows.

For each requested dataset the suite checks which split files exist (``dataset_status``), fine-tunes
the complete ones with :func:`domainbert.blurb.finetune.finetune` (into ``<out>/<dataset>/``, so an
interrupted suite resumes per dataset and per run), and writes:

``results.json``
    per dataset: status (complete / partial / missing / failed), the selected setting, dev and test
    mean ± std and per seed, the notes of its record; and the BLURB score over what was run.
``report.md`` (:mod:`domainbert.blurb.report` renders it, the chart and the TSV row)
    a per-dataset table, a per-task-type table and the BLURB score, with the published totals of
    Gu et al. (2021) beside it, and every missing, partial or failed dataset marked with its reason.
``blurb.png``
    a bar chart of the same (test score per dataset, per task type, BLURB score; published totals
    as lines).
a cumulative TSV
    one row appended per suite run (default ``<out>/../blurb_results.tsv``).

The BLURB score is the mean over the six task types of the mean of each type's datasets
(:func:`domainbert.blurb.metrics.blurb_score`). When a type has no dataset run, the score is over the types
present and the report says it is not comparable to the published numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from domainbert.atomic import atomic_write_json, atomic_write_text
from domainbert.blurb.arguments import OVERRIDABLE, add_training_arguments, read_overrides, training_options
from domainbert.blurb.compare import add_mismatch_argument, write_comparison
from domainbert.blurb.finetune import FinetuneArgs, finetune
from domainbert.blurb.registry import DATASETS, dataset_status, get_record, how_to_get
from domainbert.blurb.report import append_tsv, model_label, plot, render_report
from domainbert.blurb.results import assemble, dataset_entry, incomplete_entry, summarize
from domainbert.blurb.workers import DEVICES_HELP, parse_devices, run_workers
from domainbert.data.sources import default_data_dir
from domainbert.errors import CheckpointError, ConfigError, DomainBertError
from domainbert.model.card import add_blurb_results
from domainbert.model.hub import ModelSource, add_revision_argument, resolve_model


def run_suite(model: Path, out: Path, tasks: list[str] | None = None, budget: str = "quick",
              data_dir: Path | None = None, save_models: bool = False, results_tsv: Path | None = None,
              name: str | None = None, source: ModelSource | None = None,
              overrides: dict[str, dict[str, Any]] | None = None, **options: Any) -> dict[str, Any]:
    """Fine-tune on every complete dataset of ``tasks`` (default: all 13) and write the outputs.

    ``options`` are :class:`FinetuneArgs` fields every run gets (``seeds``, ``learning_rate``,
    ``batch_size``, ``epochs``, ``max_steps``, ``limit``, ``precision``, ``device`` ...), ``overrides`` a
    dataset's own (:func:`~domainbert.blurb.arguments.read_overrides`); ``source`` says where ``model``
    came from (a Hub repo id and commit) for the outputs."""
    source = source or ModelSource(Path(model))
    # before the loop below, whose variable is a dataset's name
    label = name or source.repo_id or model_label(model)
    names = [get_record(t).name for t in (tasks or list(DATASETS))]
    if not (Path(model) / "config.json").is_file():  # every dataset would fail the same way: refuse before writing
        raise CheckpointError(f"{model} is not a model directory (no config.json): pass a BERT checkpoint folder")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    datasets: dict[str, dict[str, Any]] = {}
    for name in names:
        record = get_record(name)
        status = dataset_status(name, root)
        entry: dict[str, Any] = {"display_name": record.display_name, "task_type": record.task_type,
                                 "group": record.group, "metric": record.metric,
                                 "notes": list(record.notes), "status": status.state,
                                 "missing_files": [str(p) for p in status.missing_files]}
        if status.state != "complete":
            entry["reason"] = (", ".join(
                str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else str(p)
                for p in status.missing_files) + f" not found; {how_to_get(record)}")
            datasets[name] = entry
            continue
        args = FinetuneArgs(model=model, out=out / name, task=name, data_dir=root, budget=budget,  # type: ignore[arg-type]
                            save_model=save_models, source=source, **{**options, **(overrides or {}).get(name, {})})
        try:
            metrics = finetune(args)
        except DomainBertError as exc:  # bad data in one dataset: report it, run the others
            entry.update(status="failed", reason=str(exc))
            datasets[name] = entry
            continue
        if metrics.get("incomplete"):  # --shard: other shards' runs of this dataset are not done yet
            datasets[name] = {**entry, **incomplete_entry(metrics["missing_runs"], metrics["planned_runs"])}
            continue
        datasets[name] = dataset_entry(metrics)
    results = {
        "model": str(model), "name": label, "model_source": source.record(), "budget": budget, "out": str(out),
        "data_dir": str(root),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "limit": options.get("limit"), "max_steps": options.get("max_steps"), "epochs": options.get("epochs"),
        "seeds": list(options.get("seeds") or ()) or None, "overrides": overrides or None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "datasets": datasets, "blurb": summarize(datasets),
    }
    return write_outputs(results, out, results_tsv)


def write_outputs(results: dict[str, Any], out: Path, results_tsv: Path | None) -> dict[str, Any]:
    """A suite's ``results.json``, ``report.md``, chart and TSV row."""
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", render_report(results))
    plot(results, out / "blurb.png")
    append_tsv(results, results_tsv or out.resolve().parent / "blurb_results.tsv")
    return results


# ==================================================================================== command
def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``domainbert blurb``."""
    parser.add_argument("--model", nargs="+", action="extend", required=True,
                        help="BERT checkpoint directory or Hugging Face Hub repo id; several: each is run, then "
                        "compared with the first")
    add_revision_argument(parser)
    parser.add_argument("--name", nargs="+", action="extend", default=None,
                        help="a label per model for the reports (default: from the model's path)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output directory (reused to resume); with several models, one folder per model "
                        "in it and comparison.{md,json,png}")
    parser.add_argument("--tasks", nargs="+", action="extend", default=None,
                        help=f"datasets (default: all): {', '.join(DATASETS)}")
    add_training_arguments(parser)
    parser.add_argument("--overrides", type=Path, default=None, metavar="FILE.yaml",
                        help="per-dataset options over the ones above, e.g. `chemprot: {batch-size: 16}` (keys: "
                        f"{', '.join(k.replace('_', '-') for k in OVERRIDABLE)})")
    parser.add_argument("--save-models", action="store_true", help="also write each fine-tuned model")
    parser.add_argument("--results-tsv", type=Path, default=None,
                        help="cumulative TSV to append to (default: <out>/../blurb_results.tsv)")
    parser.add_argument("--devices", default=None, metavar="DEV,DEV,...", help=DEVICES_HELP)
    add_mismatch_argument(parser)
    parser.add_argument("--update-card", action="store_true",
                        help="add the test scores to each evaluated model's card (its README.md: model-index "
                        "entries and a BLURB section); local model folders only")


def _suite_worker(index: int, count: int, **suite: Any) -> None:
    """One ``--devices`` worker: its shard of the suite's runs on its device (``suite["device"]``)."""
    run_suite(**{**suite, "shard": (index, count),
                 "results_tsv": Path(os.devnull)})  # the suite's row is written once, by the parent


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_.") or "model"


def run(ns: argparse.Namespace) -> int:
    """``domainbert blurb``: run the suite for each model, print the BLURB scores; exit 1 if a dataset failed.

    With several models each runs into ``--out/<name>/`` and ``--out`` gets the comparison."""
    # every model must resolve (directory or Hub snapshot, with a config) before any is fine-tuned
    sources = [resolve_model(m, ns.revision) for m in ns.model]
    for source in sources:
        if not (source.path / "config.json").is_file():
            raise CheckpointError(f"{source.path} is not a model directory (no config.json): pass a BERT "
                                  "checkpoint folder or a Hub repo id")
    if ns.update_card:
        hub = [s.repo_id for s in sources if s.repo_id]
        if hub:
            raise ConfigError(f"--update-card writes the card in the model's folder, and {hub[0]} is a Hub model "
                              f"(its folder is the cache): download it with `hf download {hub[0]} --local-dir DIR` "
                              "and pass DIR")
    models = [s.path for s in sources]
    names = ns.name or [s.repo_id or model_label(s.path) for s in sources]
    if len(names) != len(models):
        raise ConfigError(f"{len(names)} --name value(s) for {len(models)} --model value(s): give one name per model")
    if len(set(map(_slug, names))) != len(names):
        raise ConfigError(f"the models' names ({', '.join(names)}) are not distinct: give each its own --name")
    options = training_options(ns)
    budget, data_dir = options.pop("budget"), options.pop("data_dir")
    overrides = read_overrides(ns.overrides) if ns.overrides else {}
    for dataset, fields in overrides.items():  # a bad value is refused before anything runs
        FinetuneArgs(model=models[0], out=ns.out, task=dataset, budget=budget, **{**options, **fields})
    devices = parse_devices(ns.devices) if ns.devices else []
    if devices and ns.shard:
        raise ConfigError("--devices runs its own shards, one per device: give --devices or --shard, not both")
    failed = []
    runs = []
    for model, name, source in zip(models, names, sources):
        out = ns.out if len(models) == 1 else ns.out / _slug(name)
        if devices:  # every run once, on whichever worker its hash gives it; the last to finish a dataset writes it
            run_workers(devices, _suite_worker, dict(model=model, out=out, tasks=ns.tasks, budget=budget,
                                                     data_dir=data_dir, save_models=ns.save_models, name=name,
                                                     source=source, overrides=overrides, **options))
            results = write_outputs({**assemble(out), "name": name}, out, ns.results_tsv)
        else:
            results = run_suite(model, out, ns.tasks, budget, data_dir, ns.save_models, ns.results_tsv, name=name,
                                source=source, overrides=overrides, **options)
        runs.append(results)
        if ns.update_card:
            print(f"updated the model card {add_blurb_results(model, results)}")
        summary = results["blurb"]
        score = f"{100 * summary['score']:.2f}" if summary else "—"
        print(f"{name}: BLURB score {score} ({'complete' if summary and summary['complete'] else 'partial'}); "
              f"wrote {out / 'report.md'}")
        failed += [(name, n, d["reason"]) for n, d in results["datasets"].items() if d["status"] == "failed"]
    if len(models) > 1:
        write_comparison(runs, names, ns.out, ns.allow_mismatch)
        print(f"comparison: {ns.out / 'comparison.md'}")
    for name, dataset, reason in failed:
        print(f"domainbert blurb: error: {name}: {dataset}: {reason}")
    return 1 if failed else 0
