"""Several models' BLURB results side by side: ``comparison.md``, ``comparison.json`` and one chart.

Input: the ``results.json`` of finished suite runs (``domainbert blurb`` writes one per model). Per
dataset and per task type each model gets mean ± std over its seeds, and every model after the
first its difference to the first with **Welch's t-test over seeds** (two-sided, unequal variances:
``scipy.stats.ttest_ind(equal_var=False)``), which needs two or more seeds on both sides and allows
unequal counts. A model that did not run a dataset shows "—" there; a task type is compared only
where both models ran the same datasets of it. Every model's BLURB score is shown (marked partial
when it is not over all 13 datasets), and beside it the score over the datasets *every* model ran,
which is the one to compare. The chart draws the published totals only when every model's BLURB
score is complete: a partial score is never drawn beside them as if it were comparable.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from domainbert.atomic import atomic_write, atomic_write_json, atomic_write_text
from domainbert.blurb.metrics import blurb_score
from domainbert.blurb.published import PUBLISHED_TOTALS, WITH_ROWS, row_cells, row_header, source_lines
from domainbert.blurb.registry import DATASETS, TASK_GROUPS
from domainbert.blurb.report import TOTAL_STYLES, model_label
from domainbert.errors import DataError

ALPHA = 0.05
"""Differences with Welch's p below this are marked ``*``."""


def load_results(run_dir: Path) -> dict[str, Any]:
    """A finished suite run's ``results.json`` (``run_dir`` is the folder or the file itself)."""
    path = run_dir / "results.json" if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise DataError(f"{run_dir} holds no results.json: pass the --out folder of a finished `domainbert blurb`")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}): rerun that suite") from None
    if not isinstance(results, dict) or not isinstance(results.get("datasets"), dict):
        raise DataError(f"{path} is not a `domainbert blurb` results file (no datasets)")
    return results


def _seed_scores(entry: dict[str, Any] | None) -> dict[str, float] | None:
    """A dataset's test score per seed, or None when the model did not run it."""
    if not entry or "test" not in entry:
        return None
    test = entry["test"]
    return {str(k): float(v) for k, v in (test.get("per_seed") or {"0": test["mean"]}).items()}


def _summary(values: Sequence[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": list(values)}


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Welch's two-sided t-test of ``a`` against ``b``: {"t", "p"} or {"p": None, "why": ...}."""
    if len(a) < 2 or len(b) < 2:
        return {"p": None, "why": "needs 2+ seeds on both sides"}
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return {"p": None, "why": "no variance over seeds"}
    result = scipy_stats.ttest_ind(a, b, equal_var=False)
    return {"t": float(result.statistic), "p": float(result.pvalue)}


def _difference(values: Sequence[float], first: Sequence[float] | None) -> dict[str, Any] | None:
    if first is None:
        return None
    return {"delta": statistics.fmean(values) - statistics.fmean(first), **welch(values, first)}


def _type_seeds(per_dataset: dict[str, dict[str, float]]) -> list[float] | None:
    """A task type's per-seed scores (the mean over its datasets), over the seeds every dataset has."""
    common = set.intersection(*(set(s) for s in per_dataset.values()))
    if not common:
        return None
    return [statistics.fmean(s[seed] for s in per_dataset.values()) for seed in sorted(common)]


def compare(runs: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The comparison of ``runs`` (suite results), the first being the reference."""
    if len(runs) != len(names):
        raise DataError(f"{len(names)} name(s) for {len(runs)} model(s): give one --name per model")
    if len(set(names)) != len(names):
        raise DataError(f"two models share a name ({', '.join(names)}): give each its own --name")
    order = [n for n in DATASETS if any(n in r["datasets"] for r in runs)]
    seeds = [{n: _seed_scores(r["datasets"].get(n)) for n in order} for r in runs]
    datasets: dict[str, Any] = {}
    for name in order:
        first = seeds[0][name]
        rows = []
        for i, run in enumerate(runs):
            s = seeds[i][name]
            entry = run["datasets"].get(name, {})
            if s is None:
                rows.append({"model": names[i], "status": entry.get("status", "not run"),
                             "reason": entry.get("reason", "not in this run")})
                continue
            values = list(s.values())
            rows.append({"model": names[i], "status": "complete", **_summary(values),
                         "vs_first": _difference(values, list(first.values()) if first else None) if i else None})
        datasets[name] = {"display_name": DATASETS[name].display_name, "task_type": DATASETS[name].task_type,
                          "metric": DATASETS[name].metric, "models": rows}
    types: dict[str, Any] = {}
    for task_type in TASK_GROUPS:
        members = [n for n in order if DATASETS[n].task_type == task_type]
        rows = []
        first_ran = [n for n in members if seeds[0][n] is not None]
        first_seeds = _type_seeds({n: seeds[0][n] for n in first_ran}) if first_ran else None
        for i in range(len(runs)):
            ran = [n for n in members if seeds[i][n] is not None]
            if not ran:
                rows.append({"model": names[i], "datasets": []})
                continue
            per_seed = _type_seeds({n: seeds[i][n] for n in ran})
            mean = statistics.fmean(statistics.fmean(seeds[i][n].values()) for n in ran)
            row: dict[str, Any] = {"model": names[i], "datasets": ran, "mean": mean,
                                   **({k: v for k, v in _summary(per_seed).items() if k != "mean"} if per_seed
                                      else {"std": None, "n": 0})}
            if i and ran == first_ran and per_seed and first_seeds:
                row["vs_first"] = {"delta": mean - statistics.fmean(
                    statistics.fmean(seeds[0][n].values()) for n in first_ran), **welch(per_seed, first_seeds)}
            elif i:
                row["vs_first"] = None if ran == first_ran else {"why": "other datasets than the first model's"}
            rows.append(row)
        if any(r["datasets"] for r in rows):
            types[task_type] = {"group": TASK_GROUPS[task_type], "models": rows}
    common = [n for n in order if all(s[n] is not None for s in seeds)]
    totals = []
    for i in range(len(runs)):
        own = {n: statistics.fmean(v.values()) for n, v in seeds[i].items() if v is not None}
        score = blurb_score(own) if own else None
        shared = blurb_score({n: own[n] for n in common}) if common else None
        totals.append({"model": names[i], "blurb": score.score if score else None,
                       "complete": bool(score and score.complete and len(own) == len(DATASETS)),
                       "datasets": len(own), "blurb_common": shared.score if shared else None})
    return {"models": [{"name": names[i], "model": r.get("model"), "budget": r.get("budget"),
                        "seeds": r.get("seeds"), "date": r.get("date")} for i, r in enumerate(runs)],
            "test": "Welch's two-sided t-test over seeds (scipy.stats.ttest_ind, equal_var=False)",
            "datasets": datasets, "task_types": types, "blurb": totals, "common_datasets": common}


def _cell(row: dict[str, Any]) -> str:
    if "mean" not in row:
        return f"— ({row.get('status', 'not run')})"
    text = f"{100 * row['mean']:.2f}"
    if row.get("std") is not None and row.get("n", 0) > 1:
        text += f" ± {100 * row['std']:.2f} (n={row['n']})"
    return text


def _diff(row: dict[str, Any]) -> str:
    d = row.get("vs_first")
    if not d:
        return "—"
    if "delta" not in d:
        return d.get("why", "—")
    p = d.get("p")
    sig = f"p = {p:.3f}{' *' if p < ALPHA else ''}" if p is not None else d["why"]
    return f"{100 * d['delta']:+.2f} ({sig})"


def render_comparison(cmp: dict[str, Any]) -> str:
    """``comparison.md``: per dataset, per task type and BLURB, each model beside the first."""
    names = [m["name"] for m in cmp["models"]]
    first = names[0]
    lines = [f"# BLURB comparison: {' vs '.join(names)}", ""]
    lines += [f"- **{m['name']}**: `{m['model']}` (budget `{m['budget']}`, {m['date']})" for m in cmp["models"]]
    lines += ["", f"Test scores ×100, mean ± sample std over seeds. Differences are to **{first}**, tested with "
              f"{cmp['test']}; `*` marks p < {ALPHA}. With one seed per model no test is possible: run more "
              "seeds (`--seed 42 43 44`) to tell a difference from seed noise.", ""]
    header = "| | " + " | ".join(names) + " | " + " | ".join(f"{n} − {first}" for n in names[1:]) + " |"
    rule = "|---|" + "---|" * (2 * len(names) - 1)
    lines += ["## Per dataset", "", header, rule]
    for d in cmp["datasets"].values():
        rows = d["models"]
        lines.append(f"| {d['display_name']} ({d['metric']}) | " + " | ".join(_cell(r) for r in rows) + " | "
                     + " | ".join(_diff(r) for r in rows[1:]) + " |")
    lines += ["", "## Per task type", "", "Mean over the type's datasets; std and test over the seeds every "
              "dataset of the type has.", "", header, rule]
    for t in cmp["task_types"].values():
        rows = t["models"]
        lines.append(f"| {t['group']} | " + " | ".join(_cell(r) if r["datasets"] else "—" for r in rows) + " | "
                     + " | ".join(_diff(r) for r in rows[1:]) + " |")
    common = cmp["common_datasets"]
    lines += ["", "## BLURB score", "", "| Model | BLURB score (its own datasets) | over the "
              f"{len(common)} dataset(s) every model ran |", "|---|---|---|"]
    for row in cmp["blurb"]:
        own = "—" if row["blurb"] is None else (f"{100 * row['blurb']:.2f}" + (
            "" if row["complete"] else f" (partial: {row['datasets']} of {len(DATASETS)} datasets)"))
        shared = "—" if row["blurb_common"] is None else f"{100 * row['blurb_common']:.2f}"
        lines.append(f"| {row['model']} | {own} | {shared} |")
    if all(row["complete"] for row in cmp["blurb"]):
        lines += [f"| {m} (published) | {v:.2f} | |" for m, v in PUBLISHED_TOTALS.items()]
    else:
        lines += ["", "Published BLURB totals are over all 13 datasets; they are not shown beside partial scores."]
    published = [name for name in cmp["datasets"] if any(name in m.rows for m in WITH_ROWS)]
    if published:
        lines += ["", "## Published per-dataset results", "", "| Dataset |" + row_header(),
                  "|---|" + "---|" * row_header().count("|")]
        lines += [f"| {cmp['datasets'][name]['display_name']} |" + row_cells(name) for name in published]
    lines += ["", *source_lines(totals=all(row["complete"] for row in cmp["blurb"]))]
    return "\n".join(lines) + "\n"


def plot_comparison(cmp: dict[str, Any], path: Path) -> Figure:
    """Grouped bars (one colour per model) per dataset and per task type, legend below the axes;
    written to ``path`` and returned."""
    names = [m["name"] for m in cmp["models"]]
    groups = [(d["display_name"], d["models"]) for d in cmp["datasets"].values()]
    groups += [(f"[{t['group']}]", t["models"]) for t in cmp["task_types"].values()]
    common = cmp["common_datasets"]
    if common:
        groups.append((f"BLURB over {len(common)} common", [
            {"mean": r["blurb_common"], "std": None} for r in cmp["blurb"]]))
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(7.0, 0.35 * len(groups) * len(names) + 3), 5.0))
    ax = fig.subplots()
    for i, name in enumerate(names):
        xs, ys, errs = [], [], []
        for g, (_, rows) in enumerate(groups):
            row = rows[i]
            if row.get("mean") is None:
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(100 * row["mean"])
            errs.append(100 * row["std"] if row.get("std") else 0.0)
        ax.bar(xs, ys, width=width, yerr=errs, capsize=2, label=name)
    complete = all(r["complete"] for r in cmp["blurb"])
    if complete:
        for (label, value), style in zip(PUBLISHED_TOTALS.items(), TOTAL_STYLES):
            ax.axhline(value, color="gray", linestyle=style, linewidth=1, label=f"{label} (published): {value:.2f}")
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test score (×100), mean ± std over seeds")
    ax.set_title(f"BLURB: {' vs '.join(names)}" + ("" if complete else " (partial BLURB: published totals not drawn)"),
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=min(4, len(names) + 3),
              frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight"), fsync=False)
    return fig


def write_comparison(runs: Sequence[dict[str, Any]], names: Sequence[str] | None, out: Path) -> dict[str, Any]:
    """Compare ``runs`` and write ``comparison.json``, ``comparison.md`` and ``comparison.png`` into ``out``."""
    labels = list(names) if names else [r.get("name") or model_label(r["model"]) for r in runs]
    cmp = compare(runs, labels)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", cmp)
    atomic_write_text(out / "comparison.md", render_comparison(cmp))
    plot_comparison(cmp, out / "comparison.png")
    return cmp


# ==================================================================================== command
def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``domainbert report``."""
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="--out folders of finished `domainbert blurb` runs; the first is the reference")
    parser.add_argument("--out", type=Path, required=True, help="where comparison.{md,json,png} go")
    parser.add_argument("--name", nargs="+", action="extend", default=None,
                        help="one label per run (default: from the model path)")


def run(ns: argparse.Namespace) -> int:
    """``domainbert report``: compare finished suite runs."""
    if len(ns.runs) < 2:
        raise DataError("give two or more RUN_DIRs to compare (one run's report is its own report.md)")
    write_comparison([load_results(r) for r in ns.runs], ns.name, ns.out)
    print(f"wrote {ns.out / 'comparison.md'} and comparison.png")
    return 0
