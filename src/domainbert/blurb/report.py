"""BLURB results -> what a reader sees: ``report.md``, the bar chart and a row of the cumulative TSV.

The report puts the user's per-dataset and per-task-type test scores and the BLURB score beside the
published per-dataset rows and totals (:mod:`domainbert.blurb.published`, with their sources), and
marks every missing, partial or failed dataset with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from domainbert.atomic import atomic_write
from domainbert.blurb.budgets import BUDGETS
from domainbert.blurb.published import PUBLISHED_TOTALS, row_cells, row_header, source_lines
from domainbert.blurb.registry import DATASETS, TASK_GROUPS
from domainbert.model.card import not_results

#: Line styles of the published totals in the charts, one per published model.
TOTAL_STYLES = ("--", "-.", ":", (0, (5, 2)), (0, (1, 3)), (0, (3, 1, 1, 1)))

TSV_COLUMNS = ["date", "model", "budget", "blurb_score", "complete", *DATASETS]


#: Folder names that say where a model sits in a run, not which model it is.
GENERIC_NAMES = frozenset({"export", "model", "models", "final", "checkpoint", "checkpoints", "pretrain", "hf"})


def model_label(model: str | Path) -> str:
    """A name a reader recognises for a model path: its folder, with the parents above it while the
    folder's own name is generic (``runs/quickstart/pretrain/export`` -> ``quickstart/pretrain/export``)."""
    parts = [p for p in Path(str(model)).parts if p not in ("/", ".", "..")]
    if not parts:
        return str(model)
    kept = [parts.pop()]
    while parts and kept[0] in GENERIC_NAMES:
        kept.insert(0, parts.pop())
    return "/".join(kept)


def _pct(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "—"
    text = f"{100 * stats['mean']:.2f}"
    return text + (f" ± {100 * stats['std']:.2f} (n={stats['n']})" if stats.get("n", 1) > 1 else "")


def _model_line(results: dict[str, Any]) -> str:
    """The model as the report names it: a Hub repo id with its commit, or the directory."""
    source = results.get("model_source") or {}
    if source.get("repo_id"):
        return f"`{source['repo_id']}` (Hugging Face Hub, revision `{source['revision']}`, commit `{source['commit']}`)"
    return f"`{results['model']}`"


def render_report(results: dict[str, Any]) -> str:
    """``report.md``: per dataset, per task type, the BLURB score, published totals, gaps marked."""
    lines = [f"# BLURB results: {results.get('name') or model_label(results['model'])}", "",
             f"- model: {_model_line(results)}", f"- budget: `{results['budget']}`, "
             f"date {results['date']}, wall time {results['wall_seconds']:.0f} s",
             f"- data: `{results['data_dir']}`"]
    lines.append(f"- what `{results['budget']}` is: {BUDGETS.get(results['budget'], 'not a budget domainbert knows')}")
    smoke = not_results(results)  # the same test that keeps a run out of a model card's model-index
    if smoke:
        lines += ["", f"**Not comparable to published BLURB numbers:** {smoke}."]
    lines += ["", "## Per dataset (test, selected on dev)", "",
              "| Dataset | Task type | Metric | Status | Dev | Test | Setting |" + row_header(),
              "|---|---|---|---|---|---|---|" + "---|" * row_header().count("|")]
    gaps: list[str] = []
    flagged: list[str] = []
    for name, d in results["datasets"].items():
        setting = d.get("selected")
        shown = (f"lr {setting['learning_rate']:g}, batch {setting['batch_size']}, "
                 f"{setting['epochs']} ep") if setting else "—"
        status = d["status"]
        if status != "complete":
            gaps.append(f"- **{d['display_name']}** ({status}): {d.get('reason', '')}")
        if d.get("constant"):  # a model that learned nothing here: its score is not a result
            status += f"; **{d['constant']}**"
            flagged.append(f"- **{d['display_name']}**: {d['constant']}")
        for problem in d.get("size_checks") or ():
            flagged.append(f"- **{d['display_name']}**: {problem}")
        lines.append(f"| {d['display_name']} | {d['group']} | {d['metric']} | {status} | "
                     f"{_pct(d.get('dev'))} | {_pct(d.get('test'))} | {shown} |" + row_cells(name))
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
    lines += ["", *source_lines()]
    if summary and not summary["complete"]:
        missing = [TASK_GROUPS[t] for t in summary["missing_types"]]  # type: ignore[index]
        lines += ["", "This score averages only the task types and datasets that were run"
                  + (f" (no score for: {', '.join(missing)})" if missing else "")
                  + "; BLURB's score needs all 13 datasets."]
    if gaps:
        lines += ["", "## Missing or partial datasets", "", *gaps]
    if flagged:
        lines += ["", "## Scores that are not results", "",
                  "Every test prediction the same answer (the model learned nothing it could use), or data of "
                  "another size than BLURB's release:", "", *flagged]
    lines += ["", "## Notes per dataset", ""]
    for d in results["datasets"].values():
        for note in d["notes"]:
            lines.append(f"- {d['display_name']}: {note}")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """A bar chart of the test scores, per-type means and the BLURB score; the published totals as
    lines when the score is over all 13 datasets (never beside a partial one)."""
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
    fig = Figure(figsize=(max(6.0, 0.6 * len(labels) + 2), 4.5))  # no pyplot: no global backend state
    ax = fig.subplots()
    ax.bar(range(len(labels)), values, yerr=errors, color=colors, capsize=3)
    complete = bool(summary and summary["complete"])
    for (name, value), style in zip(PUBLISHED_TOTALS.items() if complete else (), TOTAL_STYLES):
        ax.axhline(value, color="gray", linestyle=style, linewidth=1, label=f"{name}: {value:.2f}")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test score (×100)")
    ax.set_title(f"BLURB: {results.get('name') or model_label(results['model'])} ({results['budget']})")
    if complete:  # a partial BLURB score is never drawn beside the published totals
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight"), fsync=False)


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
