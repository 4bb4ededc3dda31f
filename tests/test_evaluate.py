"""``domainbert evaluate``: a fine-tuned model scored on a BLURB split without training, checked against
seqeval and scikit-learn on the predictions it writes, and against finetune's own predictions of the
same examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import seqeval.metrics
import sklearn.metrics

from domainbert.blurb.finetune import FinetuneArgs, finetune
from domainbert.cli import main


def _finetuned(tiny_model: Path, shared_data: Path, out: Path, task: str) -> Path:
    finetune(FinetuneArgs(model=tiny_model, out=out, data_dir=shared_data, task=task, limit=48, max_steps=4,
                          epochs=1, learning_rate=1e-3, batch_size=16, progress=False, precision="fp32", device="cpu"))
    return out / "model"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_a_fine_tuned_ner_model(tiny_model, shared_data, tmp_path, capsys):
    model = _finetuned(tiny_model, shared_data, tmp_path / "ft", "ncbi-disease")
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(model), "--task", "ncbi-disease", "--data-dir", str(shared_data),
                 "--out", str(out), "--device", "cpu", "--precision", "fp32"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    rows = _rows(out / "test_predictions.jsonl")
    assert len(rows) == metrics["examples"] == 940 and metrics["size_check"] is None
    gold, pred = [r["gold"] for r in rows], [r["prediction"] for r in rows]
    assert all(len(g) == len(p) for g, p in zip(gold, pred))  # every word scored, none dropped
    assert metrics["score"] == pytest.approx(seqeval.metrics.f1_score(gold, pred))
    assert metrics["precision"] == pytest.approx(seqeval.metrics.precision_score(gold, pred))
    assert metrics["recall"] == pytest.approx(seqeval.metrics.recall_score(gold, pred))
    report = seqeval.metrics.classification_report(gold, pred, output_dict=True, zero_division=0)
    assert metrics["per_type"]["Disease"]["f1"] == pytest.approx(report["Disease"]["f1-score"])  # gold has them
    assert f"NCBI-disease test (entity_f1): {100 * metrics['score']:.2f}" in printed
    # the same model's predictions of the first 48 test sentences, as finetune made them
    assert pred[:48] == [r["prediction"] for r in _rows(tmp_path / "ft" / "test_predictions.jsonl")]


def test_evaluate_a_fine_tuned_relation_classifier(tiny_model, shared_data, tmp_path):
    model = _finetuned(tiny_model, shared_data, tmp_path / "ft", "gad")
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(model), "--task", "gad", "--split", "dev", "--data-dir",
                 str(shared_data), "--out", str(out), "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = _rows(out / "dev_predictions.jsonl")
    gold, pred = [r["gold"] for r in rows], [r["prediction"] for r in rows]
    assert len(rows) == 535
    assert metrics["score"] == pytest.approx(sklearn.metrics.f1_score(gold, pred, pos_label="1", zero_division=0))
    assert metrics["confusion"]["rows_gold_columns_predicted"] == sklearn.metrics.confusion_matrix(
        gold, pred, labels=["0", "1"]).tolist()
    for label in ("0", "1"):
        assert metrics["per_class"][label]["recall"] == pytest.approx(
            sklearn.metrics.recall_score(gold, pred, labels=[label], average="micro", zero_division=0))
    assert (metrics["constant"] is None) == (len(set(pred)) > 1)
    assert pred[:48] == [r["prediction"] for r in _rows(tmp_path / "ft" / "dev_predictions.jsonl")]


def test_evaluate_refuses_a_model_for_another_task(tiny_model, shared_data, tmp_path, capsys):
    ner = _finetuned(tiny_model, shared_data, tmp_path / "ft", "ncbi-disease")
    for model, needle in ((ner, "needs a fine-tuned BertForSequenceClassification"),
                          (tiny_model, "needs a fine-tuned BertForSequenceClassification"),
                          (tmp_path / "nowhere", "")):
        capsys.readouterr()
        assert main(["evaluate", "--model", str(model), "--task", "gad", "--data-dir", str(shared_data),
                     "--out", str(tmp_path / "ev")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err
    assert main(["evaluate", "--model", str(ner), "--task", "bc5-chem", "--data-dir", str(shared_data),
                 "--out", str(tmp_path / "ev")]) == 1
    assert "not B-Chemical" in capsys.readouterr().err  # an NER model of another entity type
    assert not (tmp_path / "ev").exists()
