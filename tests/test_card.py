"""Model cards: what ``export``, ``finetune`` and ``blurb --update-card`` write, parsed back with
``huggingface_hub.ModelCard`` and checked against the run's own files (never against the card code's
own constants)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from conftest import REPO
from domainbert.cli import main
from domainbert.model.card import add_blurb_results, finetuned_card
from inference_models import minilm_dir

TINY = str(REPO / "src" / "domainbert" / "train" / "recipes" / "tiny.yaml")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, shared_data) -> Path:
    """A tiny pretraining run on real abstracts plus the NCBI-disease test abstracts (PubTator), which
    --decontaminate must drop; its vocabulary compared with MiniLM's."""
    root = tmp_path_factory.mktemp("card")
    corpus = [shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt",
              shared_data / "ncbi_disease" / "pubtator" / "NCBItestset_corpus.txt"]
    assert main(["vocab", "build", "--corpus", str(corpus[0]), "--vocab-size", "3000", "--compare", str(minilm_dir()),
                 "--out", str(root / "vocab")]) == 0
    assert main(["data", "prepare", "--corpus", *map(str, corpus), "--vocab", str(root / "vocab"), "--out",
                 str(root / "data"), "--dupe-factor", "1", "--min-words", "0", "--decontaminate", str(shared_data),
                 "--quiet"]) == 0
    assert main(["data", "prepare", "--corpus", str(shared_data / "pubmed_corpus" / "medline16n0902.txt"),
                 "--vocab", str(root / "vocab"), "--out", str(root / "heldout"), "--dupe-factor", "1",
                 "--min-words", "0", "--quiet"]) == 0
    assert main(["pretrain", "--data", str(root / "data"), "--eval-data", str(root / "heldout"), "--out",
                 str(root / "run"), "--recipe", TINY, "--max-steps", "12", "--eval-every", "6", "--no-progress"]) == 0
    return root


def test_export_card_parses_and_matches_the_run(pretrained, tmp_path):
    run = pretrained / "run"
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "model"), "--name", "tiny-pubmed-bert",
                 "--license", "mit"]) == 0
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert (tmp_path / "model" / "README.md").read_text() == (run / "export" / "README.md").read_text().replace(
        "# run", "# tiny-pubmed-bert").replace('"run"', '"tiny-pubmed-bert"').replace(
        "model_name: run", "model_name: tiny-pubmed-bert").replace("license: apache-2.0", "license: mit")
    meta = card.data
    assert (meta.license, meta.language, meta.library_name, meta.pipeline_tag) == ("mit", "en", "transformers",
                                                                                    "fill-mask")
    assert {"bert", "biomedical"} <= set(meta.tags) and meta.model_name == "tiny-pubmed-bert"
    assert meta.base_model is None  # from scratch

    body = card.text
    run_config = json.loads((run / "run_config.json").read_text())
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    manifest = json.loads((pretrained / "data" / "manifest.json").read_text())
    vocab = json.loads((pretrained / "vocab" / "vocab_stats.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train, evals = [r for r in rows if not r.get("eval")], [r for r in rows if r.get("eval")]
    assert (f"{config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
            f"{config['num_attention_heads']} heads, intermediate {config['intermediate_size']}") in body
    assert f"| optimizer steps | {train[-1]['step']} " in body and train[-1]["step"] == 12
    assert f"| global batch | {run_config['args']['global_batch_size']} sequences" in body
    tokens = round(train[-1]["consumed_samples"] * manifest["counts"]["example_tokens"] / manifest["counts"]["pairs"])
    assert f"≈ {tokens:,} " in body
    assert f"peak {run_config['args']['learning_rate']} " in body
    assert f"| precision | {run_config['precision']} |" in body
    counts, corpus = manifest["counts"], manifest["corpus_counts"]
    assert corpus["dropped_test_pmid"] == 100  # every NCBI-disease test abstract, by PMID
    assert (f"documents kept: {counts['documents']:,}, sentences {counts['sentences']:,}, words "
            f"{counts['words']:,} " in body)
    assert counts["words"] == sum(len(line.split()) for line in (
        REPO.parent / "shared" / "data" / "pubmed_corpus" / "ncbi_disease_train_dev.txt").read_text().splitlines())
    assert f"{corpus['dropped_test_pmid']} documents dropped by PMID" in body
    assert "- files: 2 (ncbi_disease_train_dev.txt, NCBItestset_corpus.txt)" in body
    assert f"size {vocab['vocab_size']:,}; {100 * vocab['split_share']:.1f}% of {vocab['words_measured']:,}" in body
    assert f"splits {100 * vocab['reference_split_share']:.1f}% of the same words" in body
    assert (f"At step {evals[-1]['step']} on `{pretrained / 'heldout'}`: masked-token accuracy "
            f"{evals[-1]['eval_mlm_accuracy']:.3f}, MLM loss {evals[-1]['eval_mlm_loss']:.3f}") in body


def test_finetune_card_and_blurb_update_card(pretrained, tmp_path, shared_data):
    model = tmp_path / "model"
    assert main(["export", "--run", str(pretrained / "run"), "--out", str(model), "--name", "tiny-pubmed-bert"]) == 0
    out = tmp_path / "ft"
    assert main(["finetune", "--model", str(model), "--task", "ncbi-disease", "--data-dir", str(shared_data),
                 "--out", str(out), "--limit", "30", "--max-steps", "2", "--seed", "3", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    card = ModelCard.load(out / "model" / "README.md")
    meta = card.data
    assert (meta.pipeline_tag, meta.library_name, meta.license) == ("token-classification", "transformers",
                                                                    "apache-2.0")
    assert meta.datasets == ["ncbi-disease"] and meta.base_model is None  # a local base is named in the body
    # a smoke run (--limit, --max-steps, the quick budget) publishes no model-index, and says why
    assert meta.eval_results is None and "\nmodel-index:" not in (out / "model" / "README.md").read_text()
    assert ("A smoke run, not a result: `--budget quick` (the cheap budget: a few epochs, one seed); only the "
            "first 30 examples of each split; at most 2 optimizer steps per run.") in card.text
    # the same run had it been a result (all of the data, a named budget): its test score is the model-index
    full = {**metrics, "limit": None, "max_steps": None, "budget": "linkbert"}
    published = ModelCard(str(finetuned_card(full, out / "model")))
    [result] = published.data.eval_results
    assert (result.task_type, result.dataset_type, result.dataset_split, result.metric_type) == (
        "token-classification", "ncbi-disease", "test", "f1")
    assert result.metric_value == round(100 * metrics["test"]["mean"], 2)
    assert "smoke run" not in published.text
    setting = metrics["selected"]
    assert (f"learning rate {setting['learning_rate']:g}, batch {setting['batch_size']}, {setting['epochs']} "
            "epochs") in card.text
    assert f"this model is run `{metrics['saved_model_run']}`" in card.text
    for split in ("dev", "test"):
        per_seed = metrics[split]["per_seed"]
        assert (f"| {split} | {100 * metrics[split]['mean']:.2f} ± {100 * metrics[split]['std']:.2f} | "
                f"{100 * per_seed['3']:.2f} | {100 * per_seed['5']:.2f} |") in card.text

    # blurb --update-card: results join the pretrained model's card, replacing a dataset's older entry
    before = ModelCard.load(model / "README.md").data.to_dict()
    for steps in ("1", "2"):
        assert main(["blurb", "--model", str(model), "--tasks", "biosses", "gad", "--data-dir", str(shared_data),
                     "--out", str(tmp_path / f"suite{steps}"), "--limit", "20", "--max-steps", steps,
                     "--update-card"]) == 0
    results = json.loads((tmp_path / "suite2" / "results.json").read_text())
    card = ModelCard.load(model / "README.md")
    assert card.data.eval_results is None  # smoke runs: scores in the prose only
    after = card.data.to_dict()
    assert {k: v for k, v in after.items() if k not in ("model-index", "model_name")} == {
        k: v for k, v in before.items() if k != "model_name"}
    assert card.text.count("## BLURB") == 1 and "Not evaluated yet" not in card.text
    assert "A smoke run, not a result" in card.text and "## Held-out evaluation" in card.text

    # results (a named budget over all the data) become model-index entries, replacing a dataset's older
    # one; a smoke run afterwards leaves them as they are
    for mean in (0.5, 0.75):
        full = {**results, "limit": None, "max_steps": None, "budget": "linkbert",
                "datasets": {n: {**d, "test": {**d["test"], "mean": mean}} for n, d in results["datasets"].items()}}
        add_blurb_results(model, full)
    add_blurb_results(model, results)
    card = ModelCard.load(model / "README.md")
    entries = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert entries == {("biosses", "pearsonr"): 75.0, ("gad", "f1"): 75.0}
