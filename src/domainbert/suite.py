"""``domainbert blurb``: fine-tune one model on the BLURB suite and report it beside the published rows.

For each requested dataset the suite checks which split files exist (``dataset_status``), fine-tunes
the complete ones with :func:`domainbert.finetune.finetune` (into ``<out>/<dataset>/``, so an
interrupted suite resumes per dataset and per run), and writes:

``results.json``
    per dataset: status (complete / partial / missing / failed), the selected setting, dev and test
    mean ± std and per seed, the notes of its record; and the BLURB score over what was run.
``report.md``
    a per-dataset table, a per-task-type table and the BLURB score, with the published totals of
    Gu et al. (2021) beside it, and every missing, partial or failed dataset marked with its reason.
``blurb.png``
    a bar chart of the same (test score per dataset, per task type, BLURB score; published totals
    as lines).
a cumulative TSV
    one row appended per suite run (default ``<out>/../blurb_results.tsv``).

The BLURB score is the mean over the six task types of the mean of each type's datasets
(:func:`domainbert.metrics.blurb_score`). When a type has no dataset run, the score is over the types
present and the report says it is not comparable to the published numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

from domainbert.atomic import atomic_write_json, atomic_write_text
from domainbert.blurb import DATASETS, TASK_GROUPS, dataset_status, default_data_dir, get_record
from domainbert.errors import DomainBertError
from domainbert.finetune import FinetuneArgs, finetune
from domainbert.metrics import blurb_score

#: Published BLURB scores (Gu et al. 2021, "Domain-Specific Language Model Pretraining for
#: Biomedical Natural Language Processing", BLURB score row). Only the totals are quoted: the
#: per-dataset rows could not be checked against the paper's table from here, so none is shown.
PUBLISHED_TOTALS: dict[str, float] = {
    "PubMedBERT (base, uncased, abstracts)": 81.16,
    "BioBERT": 80.34,
    "BERT-base (uncased)": 76.11,
}
PUBLISHED_SOURCE = "Gu et al. 2021 (BLURB score; totals only)"

TSV_COLUMNS = ["date", "model", "budget", "blurb_score", "complete", *DATASETS]


def run_suite(model: Path, out: Path, tasks: list[str] | None = None, budget: str = "quick",
              data_dir: Path | None = None, seeds: tuple[int, ...] = (), max_steps: int | None = None,
              limit: int | None = None, epochs: int | None = None, max_seq_length: int | None = None,
              precision: str = "auto", device: str | None = None, save_models: bool = False,
              results_tsv: Path | None = None) -> dict[str, Any]:
    """Fine-tune on every complete dataset of ``tasks`` (default: all 13) and write the outputs."""
    names = [get_record(t).name for t in (tasks or list(DATASETS))]
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
                for p in status.missing_files) + " not found")
            datasets[name] = entry
            continue
        args = FinetuneArgs(model=model, out=out / name, task=name, data_dir=root, budget=budget,  # type: ignore[arg-type]
                            seeds=seeds, epochs=epochs, max_steps=max_steps, limit=limit,
                            max_seq_length=max_seq_length, precision=precision, device=device,
                            save_model=save_models)
        try:
            metrics = finetune(args)
        except DomainBertError as exc:  # bad data in one dataset: report it, run the others
            entry.update(status="failed", reason=str(exc))
            datasets[name] = entry
            continue
        entry.update(selected=metrics["selected"], dev=metrics["dev"], test=metrics["test"],
                     wall_seconds=metrics["wall_seconds"], examples=metrics["examples"],
                     precision=metrics["precision"], device=metrics["device"])
        datasets[name] = entry
    scores = {n: d["test"]["mean"] for n, d in datasets.items() if "test" in d}
    summary: dict[str, Any] | None = None
    if scores:
        bs = blurb_score(scores)
        summary = {"score": bs.score, "per_type": bs.per_type, "missing_types": list(bs.missing_types),
                   "complete": bs.complete and len(scores) == len(names) == len(DATASETS)}
    results = {
        "model": str(model), "budget": budget, "data_dir": str(root),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "limit": limit, "max_steps": max_steps, "epochs": epochs, "seeds": list(seeds) or None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "datasets": datasets, "blurb": summary,
    }
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", render_report(results))
    plot(results, out / "blurb.png")
    append_tsv(results, results_tsv or out.resolve().parent / "blurb_results.tsv")
    return results


def _pct(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "—"
    text = f"{100 * stats['mean']:.2f}"
    return text + (f" ± {100 * stats['std']:.2f} (n={stats['n']})" if stats.get("n", 1) > 1 else "")


def render_report(results: dict[str, Any]) -> str:
    """``report.md``: per dataset, per task type, the BLURB score, published totals, gaps marked."""
    lines = [f"# BLURB results: {Path(results['model']).name}", "",
             f"- model: `{results['model']}`", f"- budget: `{results['budget']}`, "
             f"date {results['date']}, wall time {results['wall_seconds']:.0f} s",
             f"- data: `{results['data_dir']}`"]
    caveats = []
    if results["budget"] != "full":
        caveats.append("`--budget quick` (one setting, one seed, capped epochs) — not BLURB's grid")
    if results.get("limit"):
        caveats.append(f"only the first {results['limit']} examples of each split")
    if results.get("max_steps"):
        caveats.append(f"at most {results['max_steps']} optimizer steps per run")
    if caveats:
        lines += ["", "**Not comparable to published BLURB numbers:** " + "; ".join(caveats) + "."]
    lines += ["", "## Per dataset (test, selected on dev)", "",
              "| Dataset | Task type | Metric | Status | Dev | Test | Setting |",
              "|---|---|---|---|---|---|---|"]
    gaps = []
    for name, d in results["datasets"].items():
        setting = d.get("selected")
        shown = (f"lr {setting['learning_rate']:g}, batch {setting['batch_size']}, "
                 f"{setting['epochs']} ep") if setting else "—"
        status = d["status"]
        if status != "complete":
            gaps.append(f"- **{d['display_name']}** ({status}): {d.get('reason', '')}"
                        + "".join(f"; {n}" for n in d["notes"] if "not " in n and "shipped" in n
                                  or "not present" in n))
        lines.append(f"| {d['display_name']} | {d['group']} | {d['metric']} | {status} | "
                     f"{_pct(d.get('dev'))} | {_pct(d.get('test'))} | {shown} |")
    summary = results["blurb"]
    lines += ["", "## Per task type", "", "| Task type | Datasets run | Score |", "|---|---|---|"]
    for task_type, group in TASK_GROUPS.items():
        run = [d["display_name"] for d in results["datasets"].values()
               if d["task_type"] == task_type and "test" in d]
        value = summary["per_type"].get(task_type) if summary else None
        lines.append(f"| {group} | {', '.join(run) or '—'} | "
                     f"{'—' if value is None else f'{100 * value:.2f}'} |")
    lines += ["", "## BLURB score", "", "| Model | BLURB score |", "|---|---|"]
    if summary:
        mark = "" if summary["complete"] else " (partial: see below)"
        lines.append(f"| **this model** | **{100 * summary['score']:.2f}**{mark} |")
    else:
        lines.append("| **this model** | — (no dataset could be run) |")
    lines += [f"| {m} (published) | {v:.2f} |" for m, v in PUBLISHED_TOTALS.items()]
    lines += ["", f"Published rows: {PUBLISHED_SOURCE}. Per-dataset published rows are not shown "
              "because they could not be checked against the paper's table here."]
    if summary and not summary["complete"]:
        missing = [TASK_GROUPS[t] for t in summary["missing_types"]]  # type: ignore[index]
        lines += ["", "This score averages only the task types and datasets that were run"
                  + (f" (no score for: {', '.join(missing)})" if missing else "")
                  + "; BLURB's score needs all 13 datasets."]
    if gaps:
        lines += ["", "## Missing or partial datasets", "", *gaps]
    lines += ["", "## Notes per dataset", ""]
    for d in results["datasets"].values():
        for note in d["notes"]:
            lines.append(f"- {d['display_name']}: {note}")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """A bar chart of the test scores, per-type means and the BLURB score, published totals as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [(d["display_name"], d["test"]) for d in results["datasets"].values() if "test" in d]
    summary = results["blurb"]
    labels = [n for n, _ in ran]
    values = [100 * t["mean"] for _, t in ran]
    errors = [100 * t["std"] for _, t in ran]
    colors = ["tab:blue"] * len(ran)
    if summary:
        for task_type, value in summary["per_type"].items():
            labels.append(f"[{TASK_GROUPS[task_type]}]")  # type: ignore[index]
            values.append(100 * value)
            errors.append(0.0)
            colors.append("tab:green")
        labels.append("BLURB score")
        values.append(100 * summary["score"])
        errors.append(0.0)
        colors.append("tab:red")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(labels) + 2), 4.5))
    ax.bar(range(len(labels)), values, yerr=errors, color=colors, capsize=3)
    for (name, value), style in zip(PUBLISHED_TOTALS.items(), ("--", "-.", ":")):
        ax.axhline(value, color="gray", linestyle=style, linewidth=1, label=f"{name}: {value:.2f}")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test score (×100)")
    ax.set_title(f"BLURB: {Path(results['model']).name} ({results['budget']})")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def append_tsv(results: dict[str, Any], path: Path) -> None:
    """Append one row (date, model, budget, BLURB score, test score per dataset) to ``path``."""
    summary = results["blurb"]
    row = {"date": results["date"], "model": results["model"], "budget": results["budget"],
           "blurb_score": f"{100 * summary['score']:.2f}" if summary else "",
           "complete": str(bool(summary and summary["complete"])).lower()}
    for name in DATASETS:
        d = results["datasets"].get(name, {})
        row[name] = f"{100 * d['test']['mean']:.2f}" if "test" in d else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8") as fh:
        if new:
            fh.write("\t".join(TSV_COLUMNS) + "\n")
        fh.write("\t".join(row[c].replace("\t", " ") for c in TSV_COLUMNS) + "\n")


# ==================================================================================== command
def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``domainbert blurb``."""
    parser.add_argument("--model", type=Path, required=True, help="BERT checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory (reused to resume)")
    parser.add_argument("--tasks", nargs="+", default=None, help=f"datasets (default: all): {', '.join(DATASETS)}")
    parser.add_argument("--budget", choices=["quick", "full"], default="quick")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="BLURB data directory (default: the `data download` cache)")
    parser.add_argument("--seed", type=int, nargs="+", default=None, help="seed(s)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every dataset")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps per run")
    parser.add_argument("--max-seq-length", type=int, default=None, help="cap on sub-words per input")
    parser.add_argument("--limit", type=int, default=None, help="first N examples per split (smoke runs)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--save-models", action="store_true", help="also write each fine-tuned model")
    parser.add_argument("--results-tsv", type=Path, default=None,
                        help="cumulative TSV to append to (default: <out>/../blurb_results.tsv)")


def run(ns: argparse.Namespace) -> int:
    """``domainbert blurb``: run the suite, print the BLURB score; exit 1 if a dataset failed."""
    results = run_suite(ns.model, ns.out, ns.tasks, ns.budget, ns.data_dir, tuple(ns.seed or ()),
                        ns.max_steps, ns.limit, ns.epochs, ns.max_seq_length, ns.precision, ns.device,
                        ns.save_models, ns.results_tsv)
    summary = results["blurb"]
    score = f"{100 * summary['score']:.2f}" if summary else "—"
    print(f"BLURB score {score} ({'complete' if summary and summary['complete'] else 'partial'}); "
          f"wrote {ns.out / 'report.md'}")
    failed = [n for n, d in results["datasets"].items() if d["status"] == "failed"]
    for name in failed:
        print(f"domainbert blurb: error: {name}: {results['datasets'][name]['reason']}")
    return 1 if failed else 0
