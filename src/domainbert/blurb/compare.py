"""Several models' BLURB results side by side: ``comparison.md``, ``comparison.json`` and one chart.

Input: the ``results.json`` of finished suite runs (``domainbert blurb`` writes one per model). Runs
compare only when they were made alike: per dataset the budget, ``--limit``, ``--max-steps``, sequence
length, epochs and the data files' content must match (:func:`mismatches`), else the comparison is
refused, or with ``allow_mismatch`` made and every affected row marked. Per dataset and per task
type each model gets mean ± std over its seeds, and every model after the first its difference to
the first (:mod:`domainbert.blurb.significance`): a paired t-test over the seeds both ran (Welch's
t-test when fewer than two are shared), Holm's correction of those p-values across the datasets,
and, from the two models' ``test_predictions.jsonl``, the 95% paired-bootstrap interval of the
difference over test examples. A dataset whose test predictions were all one answer is marked in
its row. A model that did not run a dataset shows "—" there; a task type is compared only
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

from domainbert.atomic import atomic_write, atomic_write_json, atomic_write_text
from domainbert.blurb.metrics import blurb_score
from domainbert.blurb.published import PUBLISHED_TOTALS, WITH_ROWS, row_cells, row_header, source_lines
from domainbert.blurb.registry import DATASETS, TASK_GROUPS
from domainbert.blurb.report import TOTAL_STYLES, model_label, plot, render_report
from domainbert.blurb.results import assemble
from domainbert.blurb.significance import BOOTSTRAP_SAMPLES, holm, paired_bootstrap, seed_test
from domainbert.errors import DataError

ALPHA = 0.05
"""Differences with Welch's p below this are marked ``*``."""


def load_results(run_dir: Path) -> dict[str, Any]:
    """A suite run's results: a folder's ``results.json`` merged with its dataset folders' ``metrics.json``
    (:func:`~domainbert.blurb.results.assemble`: datasets run apart, or added since), or a ``results.json``
    file itself; its ``out`` is the folder it was read from (where the datasets' predictions are)."""
    if run_dir.is_dir():
        return assemble(run_dir)
    if not run_dir.is_file():
        raise DataError(f"{run_dir} holds no results.json: pass the --out folder of a finished `domainbert blurb`")
    try:
        results = json.loads(run_dir.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{run_dir} is not valid JSON ({exc}): rerun that suite") from None
    if not isinstance(results, dict) or not isinstance(results.get("datasets"), dict):
        raise DataError(f"{run_dir} is not a `domainbert blurb` results file (no datasets)")
    results["out"] = str(run_dir.parent)
    return results


#: What a dataset's runs must share to compare, with the words a refusal uses.
CONDITIONS = {"budget": "budget", "limit": "--limit", "max_steps": "--max-steps", "max_length": "sequence length",
              "epochs": "epochs", "data_sha256": "data files", "score_head": "similarity head dtype"}


def _conditions(run: dict[str, Any], name: str) -> dict[str, Any]:
    entry = run["datasets"].get(name) or {}
    found = dict(entry.get("conditions") or {})
    for key in ("budget", "limit", "max_steps"):  # results written before datasets carried their conditions
        found.setdefault(key, run.get(key))
    if entry.get("task_type") == "similarity":  # scored before the head kept fp32 under autocast
        found.setdefault("score_head", "autocast")
    return found


def mismatches(runs: Sequence[dict[str, Any]], names: Sequence[str], dataset: str) -> str | None:
    """How the runs of ``dataset`` (those that scored it) differ in what makes scores comparable, in
    words; None when they match."""
    ran = [(n, _conditions(r, dataset)) for n, r in zip(names, runs) if "test" in r["datasets"].get(dataset, {})]
    if len(ran) < 2:
        return None
    differ = []
    for key, words in CONDITIONS.items():
        values = {str(c.get(key)) for _, c in ran if key in c}
        if len(values) > 1:
            shown = ", ".join(f"{n} {str(c.get(key))[:12]}" for n, c in ran)
            differ.append(f"{words} ({shown})")
    return "; ".join(differ) or None


def _predictions(run: dict[str, Any], dataset: str) -> dict[str, tuple[Any, Any]] | None:
    """id -> (gold, prediction) of a run's saved test predictions for ``dataset``, or None."""
    folder = run.get("out")
    path = Path(folder) / dataset / "test_predictions.jsonl" if folder else None
    if path is None or not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {str(r["id"]): (r["gold"], r["prediction"]) for r in rows}


def _bootstrap(runs: Sequence[dict[str, Any]], i: int, dataset: str) -> dict[str, Any]:
    a, b = _predictions(runs[i], dataset), _predictions(runs[0], dataset)
    if a is None or b is None:
        return {"why": "no test_predictions.jsonl for both"}
    if a.keys() != b.keys():
        return {"why": "the two ran different test examples"}
    ids = sorted(a)
    gold = [a[k][0] for k in ids]
    if gold != [b[k][0] for k in ids]:
        return {"why": "the two have different gold labels"}
    return paired_bootstrap(DATASETS[dataset], gold, [a[k][1] for k in ids], [b[k][1] for k in ids])


def _seed_scores(entry: dict[str, Any] | None) -> dict[str, float] | None:
    """A dataset's test score per seed, or None when the model did not run it."""
    if not entry or "test" not in entry:
        return None
    test = entry["test"]
    return {str(k): float(v) for k, v in (test.get("per_seed") or {"0": test["mean"]}).items()}


def _summary(values: Sequence[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": list(values)}


def _difference(values: dict[str, float], first: dict[str, float] | None) -> dict[str, Any] | None:
    if first is None:
        return None
    return {"delta": statistics.fmean(values.values()) - statistics.fmean(first.values()), **seed_test(values, first)}


def _type_seeds(per_dataset: dict[str, dict[str, float]]) -> dict[str, float] | None:
    """A task type's score per seed (the mean over its datasets), over the seeds every dataset has."""
    common = set.intersection(*(set(s) for s in per_dataset.values()))
    if not common:
        return None
    return {seed: statistics.fmean(s[seed] for s in per_dataset.values()) for seed in sorted(common)}


def compare(runs: Sequence[dict[str, Any]], names: Sequence[str], allow_mismatch: bool = False) -> dict[str, Any]:
    """The comparison of ``runs`` (suite results), the first being the reference; runs made unalike are
    refused unless ``allow_mismatch`` (then the affected rows say how they differ)."""
    if len(runs) != len(names):
        raise DataError(f"{len(names)} name(s) for {len(runs)} model(s): give one --name per model")
    if len(set(names)) != len(names):
        raise DataError(f"two models share a name ({', '.join(names)}): give each its own --name")
    order = [n for n in DATASETS if any(n in r["datasets"] for r in runs)]
    differ = {n: m for n in order if (m := mismatches(runs, names, n)) is not None}
    if differ and not allow_mismatch:
        first = next(iter(differ))
        raise DataError(f"the runs were not made alike, so their scores do not compare: {first}: {differ[first]}"
                        + (f" (and {len(differ) - 1} more dataset(s))" if len(differ) > 1 else "")
                        + "; rerun them alike, or pass --allow-mismatch to compare anyway with those rows marked")
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
            row = {"model": names[i], "status": "complete", **_summary(values), "constant": entry.get("constant"),
                   "vs_first": _difference(s, first) if i else None}
            if i and first is not None:
                row["bootstrap"] = _bootstrap(runs, i, name)
            rows.append(row)
        datasets[name] = {"display_name": DATASETS[name].display_name, "task_type": DATASETS[name].task_type,
                          "metric": DATASETS[name].metric, "models": rows, "mismatch": differ.get(name)}
    for i in range(1, len(runs)):  # Holm across the datasets, per model against the first
        tests = {n: d["models"][i]["vs_first"] for n, d in datasets.items() if d["models"][i].get("vs_first")}
        for n, p_holm in holm({n: t.get("p") for n, t in tests.items()}).items():
            tests[n]["p_holm"] = p_holm
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
                                   **({k: v for k, v in _summary(list(per_seed.values())).items() if k != "mean"}
                                      if per_seed else {"std": None, "n": 0})}
            if i and ran == first_ran and per_seed and first_seeds:
                row["vs_first"] = {"delta": mean - statistics.fmean(
                    statistics.fmean(seeds[0][n].values()) for n in first_ran), **seed_test(per_seed, first_seeds)}
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
            "test": ("a paired t-test over the seeds both models ran (scipy.stats.ttest_rel), Welch's t-test "
                     "(scipy.stats.ttest_ind, equal_var=False) when fewer than two seeds are shared; per dataset "
                     "p-values Holm-corrected across the datasets; a 95% paired-bootstrap interval over test "
                     f"examples ({BOOTSTRAP_SAMPLES:,} resamples) from the saved test predictions"),
            "allow_mismatch": allow_mismatch,
            "datasets": datasets, "task_types": types, "blurb": totals, "common_datasets": common}


def _cell(row: dict[str, Any]) -> str:
    if "mean" not in row:
        return f"— ({row.get('status', 'not run')})"
    text = f"{100 * row['mean']:.2f}"
    if row.get("std") is not None and row.get("n", 0) > 1:
        text += f" ± {100 * row['std']:.2f} (n={row['n']})"
    if row.get("constant"):
        text += f" **{row['constant']}**"
    return text


def _diff(row: dict[str, Any]) -> str:
    d = row.get("vs_first")
    if not d:
        return "—"
    if "delta" not in d:
        return d.get("why", "—")
    p = d.get("p")
    if p is None:
        sig = d["why"]
    else:
        adjusted = d.get("p_holm")
        shown = p if adjusted is None else adjusted
        sig = f"{d.get('test', 'Welch t')} p = {p:.3f}" + (f", Holm {adjusted:.3f}" if adjusted is not None else "") \
            + (" *" if shown < ALPHA else "")
    text = f"{100 * d['delta']:+.2f} ({sig})"
    boot = row.get("bootstrap") or {}
    if "low" in boot:
        text += f"; 95% CI [{100 * boot['low']:+.2f}, {100 * boot['high']:+.2f}]"
    return text


def render_comparison(cmp: dict[str, Any]) -> str:
    """``comparison.md``: per dataset, per task type and BLURB, each model beside the first."""
    names = [m["name"] for m in cmp["models"]]
    first = names[0]
    lines = [f"# BLURB comparison: {' vs '.join(names)}", ""]
    lines += [f"- **{m['name']}**: `{m['model']}` (budget `{m['budget']}`, {m['date']})" for m in cmp["models"]]
    lines += ["", f"Test scores ×100, mean ± sample std over seeds. Differences are to **{first}**, tested with "
              f"{cmp['test']}; `*` marks p < {ALPHA} (after Holm's correction for the datasets). The interval "
              "is of the saved models' test-score difference when the test examples are resampled. With one seed "
              "per model no seed test is possible: run more seeds (`--seed 42 43 44`) to tell a difference from "
              "seed noise. A score marked **predicts ... for all N** is one answer for every test example: the "
              "model learned nothing it could use there.", ""]
    header = "| | " + " | ".join(names) + " | " + " | ".join(f"{n} − {first}" for n in names[1:]) + " |"
    rule = "|---|" + "---|" * (2 * len(names) - 1)
    lines += ["## Per dataset", "", header, rule]
    mismatched = []
    for d in cmp["datasets"].values():
        rows = d["models"]
        mark = " †" if d.get("mismatch") else ""
        if mark:
            mismatched.append(f"- {d['display_name']}: {d['mismatch']}")
        lines.append(f"| {d['display_name']} ({d['metric']}){mark} | " + " | ".join(_cell(r) for r in rows) + " | "
                     + " | ".join(_diff(r) for r in rows[1:]) + " |")
    if mismatched:
        lines += ["", "† Not made alike (compared with --allow-mismatch), so the difference is not only the "
                  "models':", *mismatched]
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


def write_comparison(runs: Sequence[dict[str, Any]], names: Sequence[str] | None, out: Path,
                     allow_mismatch: bool = False) -> dict[str, Any]:
    """Compare ``runs`` and write ``comparison.json``, ``comparison.md`` and ``comparison.png`` into ``out``."""
    labels = list(names) if names else [r.get("name") or model_label(r["model"]) for r in runs]
    cmp = compare(runs, labels, allow_mismatch)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", cmp)
    atomic_write_text(out / "comparison.md", render_comparison(cmp))
    plot_comparison(cmp, out / "comparison.png")
    return cmp


# ==================================================================================== command
def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``domainbert report``."""
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="--out folders of finished `domainbert blurb` runs (results.json, and the datasets' "
                        "predictions for the bootstrap); the first is the reference; one folder: its report "
                        "and chart, rebuilt")
    parser.add_argument("--out", type=Path, required=True, help="where comparison.{md,json,png} go")
    parser.add_argument("--name", nargs="+", action="extend", default=None,
                        help="one label per run (default: from the model path)")
    add_mismatch_argument(parser)


def add_mismatch_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-mismatch`` of ``report`` and ``blurb``."""
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare runs made with another budget, --limit, --max-steps, length, epochs or data "
                        "(refused by default); the affected rows are marked")


def run(ns: argparse.Namespace) -> int:
    """``domainbert report``: compare finished suite runs, or rebuild one run's report and chart from its
    ``results.json`` (a run folder kept without its models, e.g. under benchmarks/results/)."""
    runs = [load_results(r) for r in ns.runs]
    if len(runs) == 1:
        if ns.name and len(ns.name) > 1:
            raise DataError(f"{len(ns.name)} --name values for one RUN_DIR: give one")
        results = {**runs[0], **({"name": ns.name[0]} if ns.name else {})}
        ns.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(ns.out / "results.json", {**results, "out": str(ns.out)})
        atomic_write_text(ns.out / "report.md", render_report(results))
        plot(results, ns.out / "blurb.png")
        print(f"wrote {ns.out / 'results.json'}, report.md and blurb.png")
        return 0
    write_comparison(runs, ns.name, ns.out, ns.allow_mismatch)
    print(f"wrote {ns.out / 'comparison.md'} and comparison.png")
    return 0
