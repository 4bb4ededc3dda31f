"""Fine-tuning and the BLURB suite: featurizing, every task type end to end on real data, export to
transformers, resume, the report, and the command's errors.

Real examples are read from ``../shared/data`` (the ``shared_data`` fixture) and cut with
``limit``; nothing is copied into the repository. The model is a tiny random BERT (hidden 32,
2 layers) with MiniLM's uncased vocabulary, so every run takes about a second.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import scipy.stats
import seqeval.metrics
import sklearn.metrics
import torch
from sklearn.preprocessing import MultiLabelBinarizer

from domainbert.blurb import get_record, load_split, user_record
from domainbert.blurb.budgets import BUDGET_NAMES, BUDGETS, Setting, default_seeds, max_length_for, settings_for
from domainbert.blurb.featurize import (
    IGNORE,
    featurize_tokens,
    length_grouped_batches,
    markers_in,
    window_owners,
    word_windows,
)
from domainbert.blurb.finetune import FinetuneArgs, finetune
from domainbert.blurb.metrics import constant_prediction
from domainbert.blurb.report import render_report
from domainbert.cli import main
from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import ConfigError
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertModel


def _args(model: Path, out: Path, data_dir: Path, **kw) -> FinetuneArgs:
    defaults = dict(limit=64, max_steps=3, epochs=1, progress=False, precision="fp32", device="cpu")
    return FinetuneArgs(model=model, out=out, data_dir=data_dir, **{**defaults, **kw})


# ------------------------------------------------------------------------------ featurizing
def test_word_windows_cover_every_word_once():
    rng = random.Random(0)
    for _ in range(300):
        lengths = [rng.randint(1, 6) for _ in range(rng.randint(1, 80))]
        budget = rng.randint(6, 30)
        windows = word_windows(lengths, budget, overlap=budget // 4)
        assert windows[0][0] == 0 and windows[-1][1] == len(lengths)
        for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
            assert s0 < s1 <= e0 < e1  # advance, overlap or touch, never leave a gap
        for start, end in windows:
            assert end - start == 1 or sum(lengths[start:end]) <= budget
        owners = window_owners(len(lengths), windows)
        for word, w in enumerate(owners):
            assert windows[w][0] <= word < windows[w][1]


def test_token_features_label_first_subtoken_and_window_long_sentences(shared_data, minilm_dir):
    from domainbert.data.tokenization import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(minilm_dir)
    examples = load_split("ncbi-disease", "train", shared_data)[:40]
    labels = list(get_record("ncbi-disease").labels)
    label2id = {t: i for i, t in enumerate(labels)}
    features = featurize_tokens(tokenizer, examples, label2id, max_length=16)
    assert len(features) > len(examples)  # windows were needed
    for index, example in enumerate(examples):
        mine = [f for f in features if f.example == index]
        scored: dict[int, int] = {}
        for f in mine:
            assert len(f) <= 16 and f.input_ids[0] == tokenizer.cls_token_id
            assert f.input_ids[-1] == tokenizer.sep_token_id
            for pos, word in enumerate(f.word_index):
                assert (word >= 0) == (f.labels[pos] != IGNORE)
                if word >= 0:
                    assert word not in scored, "a word is scored in one window only"
                    scored[word] = f.labels[pos]
                    # the scored position is the word's first sub-token
                    first = tokenizer.encode(example.tokens[word], add_special_tokens=False).input_ids
                    assert f.input_ids[pos] == (first[0] if first else tokenizer.unk_token_id)
        assert sorted(scored) == list(range(len(example.tokens)))
        assert [labels[scored[i]] for i in range(len(example.tokens))] == list(example.tags)


def test_entity_markers_stay_whole_tokens(shared_data, minilm_dir):
    from domainbert.data.tokenization import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(minilm_dir)
    examples = load_split("gad", "train", shared_data)[:50]
    markers = markers_in(examples)
    assert {"@GENE$", "@DISEASE$", "@CHEMICAL$", "@CHEM-GENE$"} <= set(markers)
    before = tokenizer.vocab_size
    assert tokenizer.add_tokens(markers) == len(markers)
    assert tokenizer.vocab_size == before + len(markers)
    enc = tokenizer.encode(examples[0].text)
    for marker in ("@GENE$", "@DISEASE$"):
        assert enc.tokens.count(marker) == examples[0].text.count(marker) >= 1
        assert tokenizer.vocab[marker] in enc.input_ids


# ------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("task,max_len", [("ncbi-disease", 24), ("gad", None), ("biosses", None),
                                          ("hoc", 128), ("pubmedqa", 128), ("bioasq", 128)])
def test_each_task_type_fine_tunes_end_to_end(task, max_len, tiny_model, shared_data, tmp_path):
    out = tmp_path / task
    metrics = finetune(_args(tiny_model, out, shared_data, task=task, max_seq_length=max_len,
                             batch_size=16))
    assert sorted(p.name for p in out.iterdir()) == [
        "dev_predictions.jsonl", "metrics.json", "model", "runs", "selection.json",
        "test_predictions.jsonl"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    # quick: a 32-wide model tries the published rate and the one scaled for its width, one run each
    assert metrics["task"] == task and len(metrics["runs"]) == 2 and {r["steps"] for r in metrics["runs"]} == {3}
    assert metrics["selected"] == max(metrics["grid"], key=lambda g: g["dev"]["mean"])["setting"]
    assert -1.0 <= metrics["test"]["mean"] <= 1.0
    run = next(r for r in metrics["runs"] if r["run_id"] == metrics["saved_model_run"])  # the saved predictions'
    assert run["dev"] == max(r["dev"] for r in metrics["runs"])
    for split in ("dev", "test"):
        rows = [json.loads(line) for line in (out / f"{split}_predictions.jsonl").read_text().splitlines()]
        assert len(rows) == metrics["examples"][split]
        if task == "ncbi-disease":
            assert all(len(r["prediction"]) == len(r["gold"]) for r in rows)
        # The gold labels are the split's own, in order (a dev/test mix-up or a shift fails here) ...
        assert [r["gold"] for r in rows] == _gold_from_files(task, split, shared_data, len(rows))
        # ... and the score recomputed from the written predictions by the reference libraries is the
        # one reported (dev: the saved run's best epoch; test: that run's test score).
        assert _reference_score(task, rows) == pytest.approx(run[split], abs=1e-9)
        # metrics.json's breakdown is of the same predictions, and says whether they are all one answer
        assert metrics["breakdown"][split]["score"] == pytest.approx(run[split], abs=1e-9)
        predictions = [tuple(r["prediction"]) if task == "hoc" else r["prediction"] for r in rows]
        constant = constant_prediction(get_record(task), predictions)
        assert metrics["breakdown"][split]["constant"] == constant
        if split == "test":
            assert metrics["constant"] == (None if constant is None else f"{constant} (1 of 1 seeds)")
    assert metrics["size_checks"] == []  # BLURB's own files, before --limit cut them


def _gold_from_files(task: str, split: str, data: Path, n: int) -> list:
    """The first ``n`` gold labels of ``split``, read straight from the files where the format is plain."""
    name = {"dev": "dev.tsv", "test": "test.tsv"}[split]
    if task == "gad":
        return [line.split("\t")[2] for line in (data / "gad" / name).read_text().splitlines()[1:n + 1]]
    if task == "bioasq":
        return [line.split("\t")[3] for line in (data / "bioasq" / name).read_text().splitlines()[:n]]
    if task == "biosses":
        return [float(line.split("\t")[3]) for line in (data / "biosses" / name).read_text().splitlines()[1:n + 1]]
    if task == "ncbi-disease":
        text = (data / "ncbi_disease" / {"dev": "devel.tsv", "test": "test.tsv"}[split]).read_text()
        return [[line.split("\t")[1] for line in block.splitlines()] for block in text.strip().split("\n\n")][:n]
    examples = load_split(task, split, data)[:n]
    return [list(e.label) if isinstance(e.label, tuple) else e.label for e in examples]


def _reference_score(task: str, rows: list[dict]) -> float:
    gold, pred = [r["gold"] for r in rows], [r["prediction"] for r in rows]
    if task == "ncbi-disease":
        return seqeval.metrics.f1_score(gold, pred)
    if task == "gad":
        return sklearn.metrics.f1_score(gold, pred, pos_label="1", zero_division=0)
    if task == "biosses":
        return 0.0 if len(set(pred)) < 2 else scipy.stats.pearsonr(gold, pred)[0]
    if task == "hoc":  # BLURB's: micro F1 pooled over document x hallmark cells
        binarizer = MultiLabelBinarizer(classes=[str(i) for i in range(10)])
        return sklearn.metrics.f1_score(binarizer.fit_transform(gold), binarizer.transform(pred), average="micro",
                                        zero_division=0)
    return sklearn.metrics.accuracy_score(gold, pred)


def test_pico_fine_tunes_with_its_macro_f1(tiny_model, shared_data, tmp_path):
    """EBM-PICO ships no train split: build one (in tmp) from the first dev abstracts to run PICO."""
    docs = (shared_data / "ebm_pico" / "dev.tsv").read_text().split("-DOCSTART-")
    folder = tmp_path / "data" / "ebm_pico"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("-DOCSTART-".join(docs[:6]))
    (folder / "dev.tsv").write_text("-DOCSTART-" + "-DOCSTART-".join(docs[6:9]))
    (folder / "test.tsv").write_text("-DOCSTART-" + "-DOCSTART-".join(docs[9:12]))
    metrics = finetune(_args(tiny_model, tmp_path / "out", tmp_path / "data", task="ebm-pico",
                             max_seq_length=64, batch_size=8, save_model=False))
    assert metrics["metric"] == "pico_macro_f1" and metrics["task_type"] == "pico"
    rows = [json.loads(x) for x in (tmp_path / "out" / "test_predictions.jsonl").read_text().splitlines()]
    assert all(len(r["prediction"]) == len(r["gold"]) for r in rows)
    assert set(t for r in rows for t in r["prediction"]) <= {"O", "I-PAR", "I-INT", "I-OUT"}


def test_user_multilabel_folder_in_hoc_layout_runs_from_the_cli(tiny_model, shared_data, tmp_path,
                                                                 capsys):
    folder = tmp_path / "my-hallmarks"
    folder.mkdir()
    for name in ("train", "dev", "test"):
        for suffix in (".tsv", "_pmid.tsv"):
            (folder / f"{name}{suffix}").symlink_to(shared_data / "hoc" / f"{name}{suffix}")
    out = tmp_path / "out"
    assert main(["finetune", "--task-type", "multilabel", "--data", str(folder), "--model",
                 str(tiny_model), "--out", str(out), "--limit", "24", "--max-steps", "2",
                 "--epochs", "1", "--max-seq-length", "64", "--precision", "fp32",
                 "--device", "cpu"]) == 0
    assert "my-hallmarks (hoc_micro_f1): dev" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task_type"] == "multilabel" and metrics["examples"]["train"] == 24
    (folder / "dev_pmid.tsv").unlink()
    _fails(["finetune", "--task-type", "multilabel", "--data", str(folder), "--model", str(tiny_model),
            "--out", str(out)], capsys, "dev_pmid.tsv", "HoC layout")


def _reference_logits(out: Path, kind: str):
    transformers = pytest.importorskip("transformers")
    from domainbert.data.tokenization import BertTokenizer
    from domainbert.model.modeling import BertForSequenceClassification, BertForTokenClassification

    auto = (transformers.AutoModelForTokenClassification if kind == "token"
            else transformers.AutoModelForSequenceClassification)
    ours_cls = BertForTokenClassification if kind == "token" else BertForSequenceClassification
    theirs = auto.from_pretrained(out / "model").eval()
    ours = ours_cls.from_pretrained(out / "model").eval()
    tokenizer = BertTokenizer.from_pretrained(out / "model")
    batch = tokenizer(["The @GENE$ variant raises @DISEASE$ risk .", "BRCA1 mutations"],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        a = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
        b = theirs(**batch).logits
    return theirs, a, b


@pytest.mark.parametrize("task,kind", [("ncbi-disease", "token"), ("gad", "sequence"),
                                       ("biosses", "sequence")])
def test_saved_model_loads_in_transformers_with_identical_logits(task, kind, tiny_model, shared_data,
                                                                 tmp_path):
    finetune(_args(tiny_model, tmp_path, shared_data, task=task, max_seq_length=32))
    theirs, a, b = _reference_logits(tmp_path, kind)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    record = get_record(task)
    expected = ["similarity"] if task == "biosses" else list(record.labels)
    assert list(theirs.config.id2label.values()) == expected
    if task == "gad":  # markers were added as tokens and the embeddings resized
        assert theirs.config.vocab_size == 30522 + len(json.loads(
            (tmp_path / "metrics.json").read_text())["markers"])
    if task == "biosses":
        assert theirs.config.problem_type == "regression"


def test_beats_chance_when_overfitting_a_small_relation_set(tiny_model, shared_data, tmp_path):
    """A user relation set whose dev and test are its train split: the tiny model must learn it."""
    rows = (shared_data / "gad" / "train.tsv").read_text().splitlines()[1:49]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (data / name).write_text("index\tsentence\tlabel\n" + "\n".join(rows) + "\n")
    metrics = finetune(FinetuneArgs(model=tiny_model, out=tmp_path / "out", task_type="relation",
                                    data=data, negative_label="0", learning_rate=3e-3, batch_size=8,
                                    epochs=20, progress=False, precision="fp32", device="cpu",
                                    save_model=False))
    gold = [r.split("\t")[2] for r in rows]
    positive = gold.count("1") / len(gold)
    all_positive_f1 = 2 * positive / (1 + positive)  # the best constant prediction
    assert metrics["test"]["mean"] > all_positive_f1 + 0.1, (metrics["test"], all_positive_f1)


# ------------------------------------------------------------------------------ resume
def test_interrupted_grid_resumes_without_redoing_finished_runs(tiny_model, shared_data, tmp_path,
                                                                monkeypatch):
    import domainbert.blurb.finetune as ft

    real = ft.train_run
    calls: list[str] = []

    def counting(task, model_dir, setting, seed, *rest):
        calls.append(setting.run_id(seed))
        if len(calls) == 3 and interrupt:
            raise KeyboardInterrupt
        return real(task, model_dir, setting, seed, *rest)

    monkeypatch.setattr(ft, "train_run", counting)
    args = _args(tiny_model, tmp_path, shared_data, task="gad", budget="grid", seeds=(1,),
                 limit=32, max_steps=1, save_model=False)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        finetune(args)
    done = sorted(p.parent.name for p in (tmp_path / "runs").glob("*/result.json"))
    assert done == sorted(calls[:2])
    interrupt = False
    calls.clear()
    metrics = finetune(args)
    assert len(calls) == 6 and not set(calls) & set(done)  # 8 grid points, 2 already finished
    assert len(metrics["grid"]) == 8 and len(metrics["runs"]) == 8
    assert metrics["selected"] in [g["setting"] for g in metrics["grid"]]
    calls.clear()
    finetune(args)
    assert calls == []  # everything finished: nothing retrained


# ------------------------------------------------------------------------------ suite + report
def test_blurb_suite_writes_report_chart_and_tsv(tiny_model, shared_data, tmp_path):
    out = tmp_path / "suite"
    argv = ["blurb", "--model", str(tiny_model), "--out", str(out), "--data-dir", str(shared_data),
            "--tasks", "gad", "ebm-pico", "bc2gm", "biosses", "--limit", "32", "--max-steps", "2",
            "--epochs", "1", "--precision", "fp32", "--device", "cpu"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["datasets"]["gad"]["status"] == "complete"
    assert results["datasets"]["ebm-pico"]["status"] == "partial"
    assert results["datasets"]["bc2gm"]["status"] == "missing"
    assert set(results["datasets"]["gad"]["test"]["per_seed"]) == {"42"}
    assert results["blurb"]["complete"] is False
    report = (out / "report.md").read_text()
    for published in ("81.16", "80.34", "76.11", "83.39", "84.30"):
        assert published in report
    assert "**EBM PICO** (partial)" in report and "ebm_pico/train.tsv" in report
    assert "**BC2GM** (missing)" in report
    assert "Not comparable to published BLURB numbers" in report
    assert "Published values are shown only where two sources agree" in report
    assert (out / "blurb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(argv) == 0  # resumes: every run is already done
    tsv = (tmp_path / "blurb_results.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[:4] == ["date", "model", "budget", "blurb_score"]
    assert len(tsv) == 3  # header + one row per suite run


def test_blurb_takes_finetunes_options_and_a_per_dataset_override_file(tiny_model, shared_data, tmp_path,
                                                                       capsys):
    out = tmp_path / "suite"
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("gad:\n  batch-size: 2\n  epochs: 2\n  lr: 2.0e-3\n  micro-batch-size: 1\n", encoding="utf-8")
    base = ["blurb", "--model", str(tiny_model), "--data-dir", str(shared_data), "--tasks", "biosses", "gad",
            "--limit", "8", "--lr", "1e-3", "--batch-size", "4", "--epochs", "1", "--no-unpad",
            "--no-group-by-length", "--precision", "fp32", "--device", "cpu"]
    assert main([*base, "--out", str(out), "--overrides", str(overrides)]) == 0
    selected = {name: json.loads((out / name / "metrics.json").read_text())["selected"] for name in ("biosses", "gad")}
    assert (selected["biosses"]["learning_rate"], selected["biosses"]["batch_size"], selected["biosses"]["epochs"]) \
        == (1e-3, 4, 1)
    assert (selected["gad"]["learning_rate"], selected["gad"]["batch_size"], selected["gad"]["epochs"]) == (2e-3, 2, 2)
    assert json.loads((out / "results.json").read_text())["overrides"] == {
        "gad": {"batch_size": 2, "epochs": 2, "learning_rate": 2e-3, "micro_batch_size": 1}}
    fingerprint = json.loads((out / "gad" / "metrics.json").read_text())["fingerprint"]
    assert fingerprint["group_by_length"] is False
    # a bad file or value is refused in one line before anything runs
    for text, words in (("nope: {epochs: 1}\n", "not a BLURB dataset"), ("gad: {speed: 2}\n", "not an option"),
                        ("gad: {batch-size: 0}\n", "batch_size must be at least 1"), ("gad: [1, 2\n", "not valid YAML"),
                        ("- gad\n", "must map dataset names")):
        overrides.write_text(text, encoding="utf-8")
        capsys.readouterr()
        assert main([*base, "--out", str(tmp_path / "bad"), "--overrides", str(overrides)]) == 1, text
        err = capsys.readouterr().err.strip()
        assert err.startswith("domainbert blurb: error:") and words in err and "\n" not in err, (text, err)
        assert not (tmp_path / "bad").exists()


def test_blurb_with_several_models_runs_each_and_compares_them(tiny_model, shared_data, tmp_path, capsys):
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model, other)
    out = tmp_path / "two"
    argv = ["blurb", "--model", str(tiny_model), str(other), "--name", "tiny", "tiny copy", "--out", str(out),
            "--data-dir", str(shared_data), "--tasks", "biosses", "gad", "--limit", "24", "--max-steps", "1",
            "--epochs", "1", "--seed", "42", "43", "--precision", "fp32", "--device", "cpu"]
    assert main(argv) == 0
    for folder, name in (("tiny", "tiny"), ("tiny_copy", "tiny copy")):
        results = json.loads((out / folder / "results.json").read_text())
        assert results["name"] == name and results["datasets"]["biosses"]["test"]["n"] == 2
        assert (out / folder / "report.md").read_text().startswith(f"# BLURB results: {name}\n")
    cmp = json.loads((out / "comparison.json").read_text())
    assert [m["name"] for m in cmp["models"]] == ["tiny", "tiny copy"]
    same = cmp["datasets"]["gad"]["models"][1]["vs_first"]  # the same weights, seeds and data: no difference
    assert same["delta"] == 0.0 and same["test"] == "paired t"  # seeds 42 and 43 on both sides
    # the bootstrap over test examples reads both models' saved predictions: identical, so [0, 0]
    boot = cmp["datasets"]["gad"]["models"][1]["bootstrap"]
    assert (boot["delta"], boot["low"], boot["high"], boot["examples"]) == (0.0, 0.0, 0.0, 24)
    assert "tiny vs tiny copy" in (out / "comparison.md").read_text()
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main([*argv[:4], "--name", "just-one", *argv[7:]]) == 1  # one name for two models
    err = capsys.readouterr().err.strip()
    assert "1 --name value(s) for 2 --model value(s)" in err and "\n" not in err


# ------------------------------------------------------------------------------ bad input
def _user_ner(folder: Path, shared_data: Path, test_extra: str = "") -> Path:
    folder.mkdir()
    text = (shared_data / "ncbi_disease" / "devel.tsv").read_text().split("\n\n")
    (folder / "train.tsv").write_text("\n\n".join(text[:20]) + "\n")
    (folder / "dev.tsv").write_text("\n\n".join(text[20:30]) + "\n")
    (folder / "test.tsv").write_text("\n\n".join(text[30:40]) + "\n" + test_extra)
    return folder


def _fails(argv: list[str], capsys, *needles: str) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_cli_errors_are_one_line(tiny_model, shared_data, tmp_path, capsys):
    base = ["finetune", "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--max-steps", "1"]
    data = _user_ner(tmp_path / "ner", shared_data, test_extra="\nAspirin\tB-Drug\n")
    _fails([*base, "--task-type", "ner", "--data", str(data)], capsys, "unknown label 'B-Drug'",
           "test.tsv")
    (data / "test.tsv").unlink()
    _fails([*base, "--task-type", "ner", "--data", str(data)], capsys, "no test file")

    rel = tmp_path / "rel"
    rel.mkdir()
    good = (shared_data / "gad" / "train.tsv").read_text().splitlines()[:20]
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (rel / name).write_text("\n".join(good) + "\n")
    (rel / "dev.tsv").write_text("\n".join(good[:5]) + "\nthis line has no tabs\n")
    _fails([*base, "--task-type", "relation", "--data", str(rel), "--negative-label", "0"], capsys,
           "dev.tsv:6", "malformed")
    for name in ("train.tsv", "dev.tsv", "test.tsv"):  # the entities not masked: which pair is meant?
        (rel / name).write_text("\n".join(g.replace("@GENE$", "CYP1A1").replace("@DISEASE$", "lung cancer")
                                          for g in good) + "\n")
    _fails([*base, "--task-type", "relation", "--data", str(rel), "--negative-label", "0"], capsys,
           "no train example marks its entities")

    broken = tmp_path / "no-mask"
    shutil.copytree(tiny_model, broken)
    (broken / "tokenizer.json").unlink()
    vocab = (broken / "vocab.txt").read_text().splitlines()
    (broken / "vocab.txt").write_text("\n".join(t for t in vocab if t != "[MASK]") + "\n")
    _fails(["finetune", "--model", str(broken), "--out", str(tmp_path / "o2"), "--task", "gad",
            "--data-dir", str(shared_data)], capsys, "[MASK]")

    _fails(["finetune", "--model", str(tiny_model), "--out", str(tmp_path / "o3"), "--task",
            "ebm-pico", "--data-dir", str(shared_data)], capsys, "train.tsv", "--blurb ebm_pico")
    _fails(["finetune", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o4"),
            "--task", "gad", "--data-dir", str(shared_data)], capsys, "config.json")
    _fails(["finetune", "--model", str(tiny_model), "--out", str(tmp_path / "o5"), "--task", "gad",
            "--data", str(rel)], capsys, "either --task")


def test_quick_budget_chooses_among_the_published_rate_and_a_narrow_models(tmp_path: Path) -> None:
    def rates(task: str, hidden: int, **kw: object) -> list[float]:
        args = FinetuneArgs(model=tmp_path, out=tmp_path / "o", task=task, **kw)  # type: ignore[arg-type]
        return [s.learning_rate for s in settings_for(get_record(task), args, 5424, hidden)]
    # BERT-base and wider: LinkBERT's published rate alone
    assert rates("ncbi-disease", 768) == [5e-5] and rates("chemprot", 1024) == [3e-5]
    # narrower: that rate and the record's scaled for the width (all-MiniLM-L6-v2: 2.8e-4), chosen on dev
    assert rates("chemprot", 384) == pytest.approx([3e-5, 5e-5 * 2 ** 2.5])
    assert rates("ncbi-disease", 256) == pytest.approx([5e-5, 5e-5 * 3 ** 2.5])  # the small preset: 7.8e-4
    assert rates("ncbi-disease", 32) == [5e-5, 1e-3]  # never above 1e-3
    assert rates("ncbi-disease", 256, learning_rate=3e-5) == [3e-5]  # an explicit --lr wins


def test_named_budgets_are_their_definitions(tmp_path: Path) -> None:
    def settings(task: str, budget: str, **kw: object) -> list[Setting]:
        args = FinetuneArgs(model=tmp_path, out=tmp_path / "o", task=task, budget=budget, **kw)  # type: ignore[arg-type]
        return settings_for(get_record(task), args, 4261, 768)
    paper = settings("gad", "paper")
    assert sorted((s.learning_rate, s.batch_size) for s in paper) == [
        (1e-5, 16), (1e-5, 32), (3e-5, 16), (3e-5, 32), (5e-5, 16), (5e-5, 32)]
    assert all(s.warmup == 0.1 and s.min_epoch == 2 and s.select == "best-epoch" for s in paper)
    assert default_seeds("paper", get_record("biosses")) == tuple(range(42, 52))  # ten runs for BIOSSES,
    assert len(default_seeds("paper", get_record("gad"))) == 5  # five for the others
    [linkbert] = settings("chemprot", "linkbert")
    assert (linkbert.learning_rate, linkbert.batch_size, linkbert.epochs, linkbert.warmup, linkbert.weight_decay,
            linkbert.select) == (3e-5, 32, 10, 0.0, 0.0, "final")
    assert max_length_for("linkbert", get_record("gad")) == 256 and max_length_for("quick", get_record("gad")) == 128
    assert settings("pubmedqa", "linkbert")[0].warmup == 100  # 100 warmup steps for the QA sets
    assert len(settings("gad", "grid")) == 8
    assert set(BUDGETS) == set(BUDGET_NAMES)
    with pytest.raises(ConfigError, match="no LinkBERT recipe"):
        settings_for(user_record("relation", _user_relation_set(tmp_path)),
                     FinetuneArgs(model=tmp_path, out=tmp_path, task="gad", budget="linkbert"), 10)


def _user_relation_set(root: Path) -> Path:
    folder = root / "gad"  # a user's folder may carry a BLURB name: it is still not BLURB's GAD
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text("1\t@GENE$ causes @DISEASE$.\t1\n2\t@GENE$ and @DISEASE$.\t0\n")
    return folder


@pytest.mark.parametrize("budget,kept", [("linkbert", [3]), ("paper", [2])])
def test_final_and_from_second_epoch_selection(budget, kept, tiny_model, shared_data, tmp_path, monkeypatch):
    """linkbert keeps the last epoch's model whatever dev says; paper never keeps the first epoch."""
    import domainbert.blurb.training as ft

    dev_gold = [e.label for e in load_split("gad", "dev", shared_data)[:16]]
    dev_scores = iter([0.9, 0.5, 0.1] * 6)  # dev falls every epoch: best-epoch would keep epoch 1
    real_score = ft.score
    monkeypatch.setattr(ft, "score", lambda record, gold, pred: next(dev_scores) if gold == dev_gold
                        else real_score(record, gold, pred))
    metrics = finetune(_args(tiny_model, tmp_path, shared_data, task="gad", budget=budget, epochs=3, limit=16,
                             max_steps=None, seeds=(1,), batch_size=None if budget == "paper" else 16,
                             save_model=False))
    assert {r["best_epoch"] for r in metrics["runs"]} == {kept[0]}
    if budget == "linkbert":
        assert metrics["runs"][0]["setting"]["weight_decay"] == 0.0 and metrics["max_seq_length"] == 128


def test_final_epoch_selection_scores_dev_once_and_keeps_the_same_model(tiny_model, shared_data, tmp_path,
                                                                        monkeypatch):
    """Under final-epoch selection dev is scored after the last epoch only (no per-epoch dev pass or weight
    copy): the run trains, keeps and predicts exactly what a run that scores dev every epoch and keeps the
    last one does."""
    import domainbert.blurb.training as ft
    from domainbert.blurb.task import prepare_task

    task = prepare_task(get_record("gad"), tiny_model, shared_data, 64, limit=24)
    dev_passes: list[str] = []
    real_predict = ft.predict
    monkeypatch.setattr(ft, "predict", lambda model, task, split, *a: dev_passes.append(split) or
                        real_predict(model, task, split, *a))
    args = _args(tiny_model, tmp_path, shared_data, task="gad")
    runs = {}
    for select, min_epoch in (("final", 1), ("best-epoch", 3)):  # best-epoch from epoch 3 of 3: the last too
        dev_passes.clear()
        setting = Setting(1e-3, 8, 3, warmup=0.1, weight_decay=0.0, select=select, min_epoch=min_epoch)
        result, _, predictions = ft.train_run(task, tiny_model, setting, 7, replace(args, max_steps=None),
                                              torch.device("cpu"))
        runs[select] = (result, predictions, dev_passes.count("dev"))
    (final, final_pred, final_passes), (every, every_pred, every_passes) = runs["final"], runs["best-epoch"]
    assert (final_passes, every_passes) == (1, 3)
    assert final.dev_history[:2] == [None, None] and final.dev_history[2] == every.dev_history[2] == final.dev
    assert (final.best_epoch, final.dev, final.test, final.steps) == (every.best_epoch, every.dev, every.test,
                                                                      every.steps)
    assert final_pred == every_pred
    rows = [json.loads(line) for line in (tmp_path / "runs" / final.run_id / "epochs.jsonl").read_text().splitlines()]
    assert [(r["dev"], r["best_epoch"]) for r in rows] == [(None, None), (None, None), (final.dev, 3)]


def test_killed_run_resumes_from_its_last_saved_epoch_as_if_never_stopped(tiny_model, shared_data, tmp_path,
                                                                           monkeypatch):
    """A run killed after epoch 2 of 4 (its state saved then) trains epochs 3-4 only when started again, and
    ends with the same dev history, best epoch, scores, predictions and weights as a run never stopped (which
    saved nothing); a state saved by another run is not used."""
    import domainbert.blurb.training as ft
    from domainbert.blurb.task import prepare_task

    task = prepare_task(get_record("gad"), tiny_model, shared_data, 64, limit=24)
    setting = Setting(1e-3, 8, 4, warmup=0.1, weight_decay=0.01, select="best-epoch")  # keeps an earlier epoch
    device = torch.device("cpu")
    args = _args(tiny_model, tmp_path / "never-stopped", shared_data, task="gad", max_steps=None,
                 checkpoint_minutes=None)
    whole, whole_model, whole_pred = ft.train_run(task, tiny_model, setting, 5, args, device, {"run": "a"})
    assert not list((tmp_path / "never-stopped").rglob(ft.RESUME_FILE))  # never saved: nothing written

    args = replace(args, out=tmp_path / "killed", checkpoint_minutes=0.0)
    real_write, real_step = ft.EpochLog.write, ft.train_step

    def killed_after_epoch_2(self, bar, **row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt
        real_write(self, bar, **row)

    monkeypatch.setattr(ft.EpochLog, "write", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        ft.train_run(task, tiny_model, setting, 5, args, device, {"run": "a"})
    monkeypatch.setattr(ft.EpochLog, "write", real_write)
    saved = tmp_path / "killed" / "runs" / setting.run_id(5) / ft.RESUME_FILE
    assert saved.is_file()
    steps: list[int] = []
    monkeypatch.setattr(ft, "train_step", lambda *a, **k: steps.append(1) or real_step(*a, **k))
    resumed, resumed_model, resumed_pred = ft.train_run(task, tiny_model, setting, 5, args, device, {"run": "a"})
    per_epoch = -(-len(task.features["train"]) // 8)
    assert len(steps) == 2 * per_epoch  # epochs 3 and 4 only
    assert whole.best_epoch not in (None, 4)  # an earlier epoch's weights were kept (and saved with the state)
    assert (resumed.dev_history, resumed.best_epoch, resumed.dev, resumed.test, resumed.steps) == (
        whole.dev_history, whole.best_epoch, whole.dev, whole.test, whole.steps)
    assert resumed_pred == whole_pred
    for name, tensor in whole_model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name
    rows = [json.loads(line) for line in saved.with_name("epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and [r["dev"] for r in rows] == whole.dev_history

    # another run's state (another fingerprint: model, data or settings) is set aside, said aloud
    steps.clear()
    monkeypatch.setattr(ft.EpochLog, "write", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="another run"):
        ft.train_run(task, tiny_model, setting, 5, args, device, {"run": "b"})  # the resumed run's last state
    monkeypatch.setattr(ft.EpochLog, "write", real_write)
    steps.clear()
    with pytest.warns(UserWarning, match="another run"):
        other, _, _ = ft.train_run(task, tiny_model, setting, 5, args, device, {"run": "a"})
    assert len(steps) == 4 * per_epoch and other.test == whole.test
    saved.write_bytes(b"not a checkpoint")
    steps.clear()
    with pytest.warns(UserWarning, match="could not be read"):
        ft.train_run(task, tiny_model, setting, 5, args, device, {"run": "a"})
    assert len(steps) == 4 * per_epoch
    # another micro-batch size splits the run differently: its state is another run's
    with pytest.warns(UserWarning, match="another run"):
        ft.train_run(task, tiny_model, setting, 5, replace(args, micro_batch_size=3), device, {"run": "a"})

    # a save that fails (a full disk) is said once and the run goes on to the same end
    saved.unlink()
    saves: list[int] = []

    def full_disk(*a, **k):
        saves.append(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ft.torch, "save", full_disk)
    with pytest.warns(UserWarning, match="could not save") as said:
        failed, _, failed_pred = ft.train_run(task, tiny_model, setting, 5, args, device, {"run": "a"})
    assert len(said) == 1 and len(saves) == 1 and not saved.exists() and not list(saved.parent.glob(".resume*"))
    assert (failed.test, failed_pred) == (whole.test, whole_pred)


def test_checkpoint_minutes_flag(tiny_model, shared_data, tmp_path, capsys):
    from domainbert.blurb.arguments import parse_minutes

    assert (parse_minutes("off"), parse_minutes("0"), parse_minutes("2.5")) == (None, 0.0, 2.5)
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(SystemExit) as exit_:
            main(["finetune", "--model", str(tiny_model), "--task", "gad", "--data-dir", str(shared_data),
                  "--out", str(tmp_path / "out"), "--checkpoint-minutes", bad])
        assert exit_.value.code == 2 and "0 or more" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="checkpoint_minutes"):
        _args(tiny_model, tmp_path, shared_data, task="gad", checkpoint_minutes=-2.0)


def test_finetune_removes_a_finished_runs_saved_state(tiny_model, shared_data, tmp_path):
    args = _args(tiny_model, tmp_path, shared_data, task="gad", max_steps=None, limit=16, epochs=2,
                 checkpoint_minutes=0.0, save_model=False)
    finetune(args)
    results = sorted((tmp_path / "runs").glob("*/result.json"))
    assert results and not list(tmp_path.rglob("resume.pt"))
    left = results[0].with_name("resume.pt")  # as a kill between writing the result and removing the state leaves it
    left.write_bytes(b"state")
    finetune(args)
    assert not left.exists()


def test_quick_budget_gives_tiny_sets_enough_steps(tmp_path: Path) -> None:
    def quick(task: str, train_size: int, **kw: object) -> Setting:
        args = FinetuneArgs(model=tmp_path, out=tmp_path / "o", task=task, **kw)  # type: ignore[arg-type]
        (setting,) = settings_for(get_record(task), args, train_size)
        return setting
    # BIOSSES: 64 pairs at batch 16 = 4 steps an epoch; 3 epochs would be 12 updates, so it trains
    # 25 epochs (100 steps), within its record's 30.
    assert quick("biosses", 64).epochs == 25
    assert quick("ncbi-disease", 5424).epochs == 3  # large sets: the usual cap
    assert quick("biosses", 64, epochs=2).epochs == 2  # an explicit --epochs wins
    assert quick("biosses", 8).epochs == get_record("biosses").finetune.epochs  # never past the record's



def test_random_batches_are_a_flag(tmp_path: Path) -> None:
    from domainbert.blurb.finetune import args_from_namespace
    from domainbert.cli import build_parser

    argv = ["--task", "gad", "--model", str(tmp_path), "--out", str(tmp_path / "o")]
    grouped = args_from_namespace(build_parser("finetune").parse_args(argv))
    random_ = args_from_namespace(build_parser("finetune").parse_args([*argv, "--no-group-by-length"]))
    assert grouped.group_by_length and not random_.group_by_length
    # With pool=1 every batch is a plain random draw: membership no longer follows length.
    lengths = list(range(1, 321))
    batches = length_grouped_batches(lengths, 32, random.Random(0), pool=1)
    assert sorted(i for b in batches for i in b) == list(range(320))
    assert max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) > 200
    grouped_batches = length_grouped_batches(lengths, 32, random.Random(0))
    assert max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in grouped_batches) == 31


# ------------------------------------------------------------------------------ stale results
def test_rerun_after_reexport_or_other_settings_never_reuses_stale_results(tiny_model, shared_data, tmp_path,
                                                                           capsys):
    """The resume fingerprint is the model's content and every setting that changes a result: a model
    re-exported into the same folder, or another --limit / --max-steps, is refused with what changed;
    --restart starts afresh, said aloud; the same inputs still resume."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    out = tmp_path / "ft"
    argv = ["finetune", "--task", "gad", "--model", str(model), "--out", str(out), "--data-dir", str(shared_data),
            "--limit", "32", "--max-steps", "2", "--epochs", "1", "--precision", "fp32", "--device", "cpu",
            "--lr", "5e-5"]
    assert main(argv) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert main(argv) == 0 and json.loads((out / "metrics.json").read_text())["runs"] == first["runs"]  # resumed
    before = (out / "metrics.json").read_bytes()
    capsys.readouterr()
    # Another model in the same folder (as `export` overwrites runs/X/export in place).
    config = BertConfig.load(model)
    torch.manual_seed(1)
    BertModel(config).save_pretrained(model, tokenizer=BertTokenizer.from_pretrained(model))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "model_sha256" in err and "--restart" in err and err.count("\n") == 1
    assert main([*argv[:9], "--limit", "16", *argv[11:]]) == 1 and "limit: 32 -> 16" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before  # refused: nothing changed
    assert main([*argv, "--restart"]) == 0
    assert "discarding" in capsys.readouterr().err
    # More seeds reuse the finished run; then going back to fewer seeds is refused (the saved model may
    # be the new seed's).
    runs = json.loads((out / "metrics.json").read_text())["runs"]
    assert main([*argv, "--seed", "42", "7"]) == 0
    grown = json.loads((out / "metrics.json").read_text())
    assert grown["runs"][0] == runs[0] and [r["seed"] for r in grown["runs"]] == [42, 7]
    assert json.loads((out / "selection.json").read_text())["plan"] == [runs[0]["run_id"],
                                                                        runs[0]["run_id"].replace("seed42", "seed7")]
    assert main([*argv, "--seed", "7"]) == 1 and "not a superset" in capsys.readouterr().err
    assert main([*argv, "--restart"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["fingerprint"]["model_sha256"] != first["fingerprint"]["model_sha256"]
    assert json.loads((out / "selection.json").read_text())["fingerprint"] == again["fingerprint"]
    assert BertConfig.load(out / "model").extra["architectures"] == ["BertForSequenceClassification"]


def test_similarity_scores_are_not_rounded_to_bf16_and_older_scores_are_not_reused(tiny_model, shared_data,
                                                                                  tmp_path, capsys):
    """BIOSSES under bf16 autocast predicts fp32 scores (a bf16 head put a barely trained model's 20 test
    scores on a few values, and Pearson measured the rounding); outputs scored by the bf16 head (their
    fingerprint has no ``score_head``) are refused, not mixed in."""
    out = tmp_path / "biosses"
    argv = ["finetune", "--task", "biosses", "--model", str(tiny_model), "--out", str(out), "--data-dir",
            str(shared_data), "--max-steps", "2", "--epochs", "1", "--precision", "bf16", "--device", "cpu",
            "--lr", "5e-5"]
    assert main(argv) == 0
    scores = [json.loads(line)["prediction"] for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    assert len(scores) == 20 and len(set(scores)) == 20
    assert any(float(torch.tensor(s).bfloat16()) != s for s in scores)
    for path in [out / "metrics.json", out / "selection.json", *out.glob("runs/*/result.json")]:
        stored = json.loads(path.read_text())
        del stored["fingerprint"]["score_head"]
        path.write_text(json.dumps(stored))
    capsys.readouterr()
    assert main(argv) == 1
    assert 'score_head: not recorded -> "float32"' in capsys.readouterr().err


@pytest.mark.parametrize("task", ["ncbi-disease", "gad"])
def test_unpad_fine_tunes_the_same_model(tiny_model, shared_data, tmp_path, task):
    """--unpad (token and sequence classification on the real tokens only) gives the padded run's
    training losses up to float rounding, and the same predictions (fp32, random batches: padding)."""
    from domainbert.data.tokenization import BertTokenizer
    from domainbert.model.modeling import BertModel

    # dropout off: the two paths draw their dropout masks over differently shaped tensors
    model = BertModel.from_pretrained(tiny_model, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    assert model.config.hidden_dropout_prob == 0.0
    model.save_pretrained(tmp_path / "model", tokenizer=BertTokenizer.from_pretrained(tiny_model))
    histories = {}
    for flag in ("--no-unpad", "--unpad"):
        out = tmp_path / flag.strip("-")
        assert main(["finetune", "--task", task, "--model", str(tmp_path / "model"), "--out", str(out), "--data-dir",
                     str(shared_data), "--limit", "48", "--max-steps", "3", "--epochs", "1", "--precision", "fp32",
                     "--device", "cpu", "--no-group-by-length", "--no-save-model", flag]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        histories[flag] = (metrics["runs"][0]["dev"], metrics["runs"][0]["test"],
                           (out / "test_predictions.jsonl").read_text())
    assert histories["--unpad"][:2] == pytest.approx(histories["--no-unpad"][:2], abs=1e-6)
    assert histories["--unpad"][2] == histories["--no-unpad"][2]


def test_training_steps_read_the_loss_back_only_every_log_every_steps(tiny_model, shared_data, tmp_path, monkeypatch):
    """On a GPU, reading a loss back (``.item()``) waits for the queued steps: the loop reads it once
    every LOG_EVERY steps (and at the last), not at every step. (A GPU check of the whole step under
    torch.cuda.set_sync_debug_mode is benchmarks/gpu_check.py's no-sync-finetune.)"""
    from domainbert.blurb import training

    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or item(self))
    steps = 2 * training.LOG_EVERY + 3
    metrics = finetune(_args(tiny_model, tmp_path / "o", shared_data, task="ncbi-disease", limit=4 * steps,
                             batch_size=4, max_steps=steps, save_model=False, learning_rate=5e-5))
    assert metrics["runs"][0]["steps"] == steps
    assert len(reads) == 3  # steps LOG_EVERY, 2 x LOG_EVERY and the last


def test_each_epoch_is_logged_as_it_ends(tiny_model, shared_data, tmp_path, capsys):
    """A long run (ChemProt's 10 epochs: 20 minutes of a 2-core CPU for the `mini` shape) shows its dev score per
    epoch on stderr and in runs/<run id>/epochs.jsonl as each epoch ends, matching result.json."""
    metrics = finetune(_args(tiny_model, tmp_path / "o", shared_data, task="ncbi-disease", limit=24,
                             batch_size=8, max_steps=None, epochs=3, save_model=False, progress=None,
                             learning_rate=5e-5))
    run = metrics["runs"][0]
    rows = [json.loads(line) for line in
            (tmp_path / "o" / "runs" / run["run_id"] / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["step"] for r in rows] == [3, 6, 9]  # 24 examples / batch 8 a epoch
    assert [r["dev"] for r in rows] == run["dev_history"]
    assert rows[-1]["best_epoch"] == run["best_epoch"]
    assert all(r["train_loss"] > 0 for r in rows) and rows[0]["seconds"] <= rows[-1]["seconds"]
    printed = [line for line in capsys.readouterr().err.splitlines() if " epoch " in line]
    assert len(printed) == 3 and printed[0].startswith("ncbi-disease ") and "dev " in printed[0]
    finetune(_args(tiny_model, tmp_path / "quiet", shared_data, task="ncbi-disease", limit=24, batch_size=8,
                   max_steps=None, epochs=2, save_model=False, progress=False))
    assert " epoch " not in capsys.readouterr().err  # suites that asked for silence get it


def test_report_flags_constant_predictions_and_other_sizes():
    """The quickstart model under --budget quick answered `false` for every ChemProt pair: the report
    says so in the row and under "Scores that are not results", never as a plain score."""
    results = {"model": "runs/qs/pretrain/export", "budget": "quick", "date": "2026-12-05", "wall_seconds": 1.0,
               "data_dir": "data", "blurb": None, "datasets": {
                   "chemprot": {"display_name": "ChemProt", "group": "Relation extraction", "task_type": "relation",
                                "metric": "relation_micro_f1", "status": "complete", "notes": [],
                                "test": {"mean": 0.0, "std": 0.0, "n": 1},
                                "constant": "predicts `false` for all 15745 (1 of 1 seeds)",
                                "size_checks": ["chemprot test: 15,000 pairs, but BLURB's test split has 15,745"]},
                   "gad": {"display_name": "GAD", "group": "Relation extraction", "task_type": "relation",
                           "metric": "relation_micro_f1", "status": "complete", "notes": [],
                           "test": {"mean": 0.7, "std": 0.0, "n": 1}, "constant": None, "size_checks": []}}}
    report = render_report(results)
    assert f"- what `quick` is: {BUDGETS['quick']}" in report  # the budget's definition, printed
    row = next(line for line in report.splitlines() if line.startswith("| ChemProt |"))
    assert "complete; **predicts `false` for all 15745 (1 of 1 seeds)**" in row
    assert "predicts" not in next(line for line in report.splitlines() if line.startswith("| GAD |"))
    section = report.split("## Scores that are not results")[1]
    assert "- **ChemProt**: predicts `false` for all 15745" in section
    assert "15,000 pairs, but BLURB's test split has 15,745" in section


@pytest.mark.parametrize("problem", ["tokens", "single_label_classification", "multi_label_classification"])
def test_micro_batches_make_the_whole_batchs_update(problem):
    """Gradient accumulation over micro-batches (each loss weighted by its share of the batch's labelled
    elements) gives the update of the whole batch, uneven lengths and unlabelled tokens included."""
    import copy

    from domainbert.blurb.featurize import IGNORE, Feature, collate
    from domainbert.blurb.training import loss_elements, micro_batches, train_step
    from domainbert.model.modeling import BertForSequenceClassification, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=53, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, id2label={0: "a", 1: "b", 2: "c"},
                        problem_type=None if problem == "tokens" else problem)
    model = (BertForTokenClassification if problem == "tokens" else BertForSequenceClassification)(config)
    rng = random.Random(1)
    features = []
    for i in range(7):
        n = rng.randint(4, 30)
        ids = [rng.randrange(5, 53) for _ in range(n)]
        if problem == "tokens":
            labels = [IGNORE if rng.random() < 0.4 else rng.randrange(3) for _ in range(n)]
        elif problem == "multi_label_classification":
            labels = [float(rng.random() < 0.5) for _ in range(3)]
        else:
            labels = rng.randrange(3)
        features.append(Feature(ids, [0] * n, labels, i))
    cpu = torch.device("cpu")
    results = []
    for size in (None, 3, 1):
        m = copy.deepcopy(model)
        optimizer = torch.optim.SGD(m.parameters(), lr=1.0)  # the update is the gradient (Adam's would hide it)
        parts, shares = micro_batches(features, size)
        cut = [features] if size is None else [features[i:i + size] for i in range(0, len(features), size)]
        assert parts == [p for p in cut if loss_elements(p)] and abs(sum(shares) - 1) < 1e-12
        loss = train_step(m, optimizer, [collate(p, 0, cpu) for p in parts], 1.0, "fp32", cpu, shares)
        results.append((float(loss), [p.detach().clone() for p in m.parameters()]))
    (whole_loss, whole), *others = results
    for loss, params in others:
        assert loss == pytest.approx(whole_loss, rel=1e-5)
        for a, b in zip(whole, params):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert any(not torch.equal(a, b) for a, b in zip(whole, [p.detach() for p in model.parameters()]))
    # a micro-batch with no labelled token has no loss to add and is left out
    if problem == "tokens":
        empty = Feature([7, 8, 9], [0, 0, 0], [IGNORE] * 3, 9)
        parts, shares = micro_batches([empty, *features[:2]], 1)
        assert len(parts) == 2 and empty not in [p[0] for p in parts]


def test_fp16_fine_tuning_scales_the_loss_and_records_its_precision(tiny_model, shared_data, tmp_path, monkeypatch):
    """--precision fp16 trains under fp16 autocast with a GradScaler (every step through scale, unscale,
    step and update), and the outputs say fp16; here on the CPU, where the selection logic is the same."""
    from domainbert.blurb import training

    steps = []
    original = training.train_step

    def counting(*args, **kwargs):
        scaler = args[7] if len(args) > 7 else kwargs.get("scaler")
        steps.append(None if scaler is None else scaler.get_scale())
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", counting)
    metrics = finetune(FinetuneArgs(model=tiny_model, out=tmp_path / "ft", task="gad", data_dir=shared_data,
                                    limit=16, max_steps=3, epochs=1, batch_size=4, learning_rate=1e-3, precision="fp16",
                                    device="cpu",
                                    save_model=False, progress=False))
    assert metrics["precision"] == "fp16" and metrics["fingerprint"]["precision"] == "fp16"
    assert len(steps) == 3 and all(scale is not None and scale > 1 for scale in steps)
    [epochs] = (tmp_path / "ft" / "runs").glob("*/epochs.jsonl")
    loss = json.loads(epochs.read_text().splitlines()[0])["train_loss"]
    assert 0 < loss < 10  # finite: the scaled fp16 loss came back down


def test_four_shards_one_after_another_give_the_unsharded_results(tiny_model, shared_data, tmp_path, capsys):
    """A job array: `blurb --shard I/4` for I = 0..3 into one folder trains each run once, and the last
    shard to finish a dataset writes its outputs: equal to one unsharded run's (the wall times aside)."""
    base = ["blurb", "--model", str(tiny_model), "--data-dir", str(shared_data), "--tasks", "biosses", "gad",
            "--limit", "12", "--max-steps", "2", "--epochs", "1", "--seed", "42", "43", "--precision", "fp32",
            "--device", "cpu"]  # quick: two rates for this narrow model x two seeds = four runs a dataset
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert main([*base, "--out", str(whole)]) == 0
    assert main([*base, "--out", str(sharded), "--shard", "0/4"]) == 0
    partial = json.loads((sharded / "results.json").read_text())
    statuses = {n: d["status"] for n, d in partial["datasets"].items()}
    assert "incomplete" in statuses.values()  # eight runs over four shards: shard 0 cannot hold them all
    for name, entry in partial["datasets"].items():
        if entry["status"] == "incomplete":
            assert not (sharded / name / "metrics.json").exists() and entry["missing_runs"]
            assert "--shard" in entry["reason"]
    for i in (1, 2, 3):
        assert main([*base, "--out", str(sharded), "--shard", f"{i}/4"]) == 0
    trained = sorted(p.parent.name for p in sharded.glob("*/runs/*/result.json"))
    assert trained == sorted(p.parent.name for p in whole.glob("*/runs/*/result.json")) and len(trained) == 8

    def same(metrics: dict) -> dict:
        runs = [{k: v for k, v in r.items() if k != "train_seconds"} for r in metrics["runs"]]
        return {**{k: v for k, v in metrics.items() if k not in ("wall_seconds", "runs")}, "runs": runs}

    for name in ("biosses", "gad"):
        a, b = (json.loads((root / name / "metrics.json").read_text()) for root in (whole, sharded))
        assert same(a) == same(b)
        for split in ("dev", "test"):
            assert (whole / name / f"{split}_predictions.jsonl").read_bytes() == \
                (sharded / name / f"{split}_predictions.jsonl").read_bytes()
    # results.json was written by each shard as it saw the folder; report assembles the finished one
    assert main(["report", str(sharded), "--out", str(sharded)]) == 0
    rebuilt = json.loads((sharded / "results.json").read_text())
    expected = json.loads((whole / "results.json").read_text())
    for name in ("biosses", "gad"):
        assert rebuilt["datasets"][name]["test"] == expected["datasets"][name]["test"]
    assert rebuilt["blurb"]["score"] == expected["blurb"]["score"]


def test_an_unfinished_shard_is_reported_with_the_runs_it_lacks(tiny_model, shared_data, tmp_path, capsys):
    out = tmp_path / "suite"
    argv = ["blurb", "--model", str(tiny_model), "--data-dir", str(shared_data), "--tasks", "gad", "--limit", "12",
            "--max-steps", "1", "--epochs", "1", "--seed", "42", "43", "44", "--precision", "fp32", "--device", "cpu",
            "--out", str(out)]
    assert main([*argv, "--shard", "1/3"]) == 0
    (out / "results.json").unlink()  # as if the shard was killed before writing it
    assert main(["report", str(out), "--out", str(out)]) == 0
    entry = json.loads((out / "results.json").read_text())["datasets"]["gad"]
    planned = json.loads((out / "gad" / "selection.json").read_text())["plan"]
    assert entry["status"] == "incomplete" and 0 < len(entry["missing_runs"]) < len(planned)
    assert "gad" in (out / "report.md").read_text().lower() and "not done yet" in (out / "report.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # argparse: I must be below N
        main([*argv, "--shard", "7/3"])
    assert exit_.value.code == 2 and "0 <= I < N" in capsys.readouterr().err


def test_two_cpu_workers_give_the_serial_results(tiny_model, shared_data, tmp_path, capsys):
    """`blurb --devices cpu,cpu`: two worker processes, each on its share of the runs and cores, then the
    outputs written once: the same metrics and predictions as one process (the wall times aside)."""
    base = ["blurb", "--model", str(tiny_model), "--data-dir", str(shared_data), "--tasks", "biosses", "gad",
            "--limit", "12", "--max-steps", "2", "--epochs", "1", "--seed", "42", "43", "--precision", "fp32"]
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # as each of the two workers: the same sums, bit for bit
    try:
        assert main([*base, "--device", "cpu", "--out", str(serial)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*base, "--devices", "cpu,cpu", "--out", str(parallel)]) == 0
    for name in ("biosses", "gad"):
        a, b = (json.loads((root / name / "metrics.json").read_text()) for root in (serial, parallel))
        for key in ("selected", "dev", "test", "grid", "saved_model_run", "breakdown"):
            assert a[key] == b[key], (name, key)
        assert (serial / name / "test_predictions.jsonl").read_bytes() == \
            (parallel / name / "test_predictions.jsonl").read_bytes()
    assert json.loads((parallel / "results.json").read_text())["blurb"]["score"] == \
        json.loads((serial / "results.json").read_text())["blurb"]["score"]
    # the workers' own rows go nowhere: one row per suite in the TSV, no file of theirs left in --out
    assert len((tmp_path / "blurb_results.tsv").read_text().splitlines()) == 3
    assert not [p.name for p in parallel.iterdir() if p.name.startswith(".")]
    for devices, words in (("cuda:0,cuda:1", "not on this machine"), ("cpu", "at least two devices"),
                           ("cpu,nope", "not a device")):
        capsys.readouterr()
        assert main([*base, "--devices", devices, "--out", str(tmp_path / "bad")]) == 1, devices
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err, err
        assert not (tmp_path / "bad").exists()


def test_finetune_on_two_cpu_workers_gives_the_serial_results(tiny_model, shared_data, tmp_path, capsys):
    """`finetune --devices cpu,cpu`: the runs of one dataset's grid on two workers, the same outputs; a suite
    interrupted with some runs done resumes with the others only."""
    base = ["finetune", "--task", "gad", "--model", str(tiny_model), "--data-dir", str(shared_data), "--limit", "12",
            "--max-steps", "2", "--epochs", "1", "--seed", "42", "43", "44", "--precision", "fp32"]
    serial, parallel, interrupted = tmp_path / "serial", tmp_path / "parallel", tmp_path / "interrupted"
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # as each of the two workers
    try:
        assert main([*base, "--device", "cpu", "--out", str(serial)]) == 0
        # what a suite killed while its second worker was still on its runs leaves: the first worker's runs
        assert main([*base, "--device", "cpu", "--shard", "0/2", "--out", str(interrupted)]) == 0
    finally:
        torch.set_num_threads(threads)
    kept = {p: p.stat().st_mtime_ns for p in interrupted.glob("runs/*/result.json")}
    assert kept and not (interrupted / "metrics.json").exists()
    capsys.readouterr()
    assert main([*base, "--devices", "cpu,cpu", "--out", str(parallel)]) == 0
    assert "GAD (" in capsys.readouterr().out
    assert main([*base, "--devices", "cpu,cpu", "--out", str(interrupted)]) == 0  # resumed: only the missing runs
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    for done in (parallel, interrupted):
        a, b = (json.loads((root / "metrics.json").read_text()) for root in (serial, done))
        for key in ("selected", "dev", "test", "grid", "saved_model_run", "breakdown"):
            assert a[key] == b[key], key
        for name in ("test_predictions.jsonl", "dev_predictions.jsonl", "model/model.safetensors"):
            assert (serial / name).read_bytes() == (done / name).read_bytes(), name
    capsys.readouterr()
    assert main([*base, "--devices", "cpu,cpu", "--shard", "0/2", "--out", str(tmp_path / "both")]) == 1
    assert "not both" in capsys.readouterr().err
