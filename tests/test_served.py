"""Served = evaluated: a NER model finds in raw text what evaluation measured on the corpus' words.

* :class:`WordCutter` with nothing kept inside words cuts as BERT's pre-tokenizer (``tokenizers``'
  ``BertPreTokenizer``, the reference) on real abstracts;
* the cutter learned from each BLURB NER corpus: NCBI-disease and BC5CDR cut every punctuation mark,
  JNLPBA keeps hyphens, slashes and dots inside words, and its test sentences, written as text, are cut
  back into their own words far more often than BERT's cut does;
* NCBI-disease's 940 test sentences, taken from the original abstracts (PubTator), are cut into exactly
  the corpus' words;
* all-MiniLM-L6-v2 fine-tuned on NCBI-disease, run through ``domainbert ner`` and the HTTP service on the
  test sentences as raw text, scores (entities mapped back onto the corpus' words, seqeval) within 0.5 F1
  of the test score in its ``metrics.json``;
* a tagger cuts text as its ``config.json`` records (``IL-2`` one word for a JNLPBA-like model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seqeval.metrics import f1_score
from tokenizers.pre_tokenizers import BertPreTokenizer

from domainbert.blurb.registry import load_split
from domainbert.blurb.words import WordCutter, bio_tags, find, locate
from domainbert.cli import main
from domainbert.errors import CheckpointError
from domainbert.serve.formats import read_pubtator


def pubtator_texts(path: Path) -> list[str]:
    """Each document's title + space + abstract, as PubTator counts offsets."""
    lines = list(enumerate(path.read_text(encoding="utf-8").splitlines(), 1))
    return [doc.text for doc in read_pubtator(lines, path.name)]


def raw_sentences(shared_data: Path, limit: int | None = None) -> list[tuple[str, list[tuple[int, int]], list[str]]]:
    """NCBI-disease's test sentences as written in the abstracts: (text, its words' spans, gold tags)."""
    texts = pubtator_texts(shared_data / "ncbi_disease" / "pubtator" / "NCBItestset_corpus.txt")
    out = []
    for example in load_split("ncbi-disease", "test", shared_data)[:limit]:
        hit = find(example.tokens, texts)
        assert hit is not None, f"{example.id} is not in the abstracts"
        text, spans = texts[hit[0]], hit[1]
        start, end = spans[0][0], spans[-1][1]
        out.append((text[start:end], [(s - start, e - start) for s, e in spans], list(example.tags)))
    return out


def test_bert_cut_is_bert_pre_tokenizer(shared_data):
    texts = pubtator_texts(shared_data / "ncbi_disease" / "pubtator" / "NCBItestset_corpus.txt")
    texts += ["IL-2 5'-UTR B-lymphocyte (CD4+) ; «quoted» naïve cells\u3002 x\ty", "", "  ", "-a-"]
    pre = BertPreTokenizer()
    for text in texts:
        assert WordCutter().spans(text) == [span for _, span in pre.pre_tokenize_str(text)], text


def test_learned_cutters_of_blurb_corpora(shared_data):
    for dataset in ("ncbi-disease", "bc5-chem", "bc5-disease"):
        assert WordCutter.learn(e.tokens for e in load_split(dataset, "train", shared_data)) == WordCutter()
    jnlpba = WordCutter.learn(e.tokens for e in load_split("jnlpba", "train", shared_data))
    assert {"-", "/", "."} <= set(jnlpba.keep_inside) and "(" not in jnlpba.keep_inside
    assert jnlpba.words("IL-2 and NF-kappa/B (p50).") == ["IL-2", "and", "NF-kappa/B", "(", "p50", ")", "."]
    test = load_split("jnlpba", "test", shared_data)

    def rebuilt(cutter: WordCutter) -> float:
        return sum(cutter.words(" ".join(e.tokens)) == list(e.tokens) for e in test) / len(test)

    assert rebuilt(jnlpba) > rebuilt(WordCutter()) + 0.4


def test_ncbi_raw_sentences_cut_into_the_corpus_words(shared_data):
    for text, spans, _ in raw_sentences(shared_data):
        assert WordCutter().spans(text) == spans, text


def test_cutter_config_round_trip_and_bad_values():
    cutter = WordCutter("-/.")
    assert WordCutter.from_config(cutter.to_config(), "x") == cutter
    assert WordCutter.from_config(None, "x") == WordCutter()
    for bad in ({"keep_inside": "a"}, {"keep": "-"}, "-", {"keep_inside": 3}):
        with pytest.raises(ValueError, match="keep_inside"):
            WordCutter.from_config(bad, "model/config.json")


def test_bio_tags_from_entity_spans():
    spans = [(0, 5), (6, 7), (8, 12), (13, 16)]
    assert bio_tags(spans, [(6, 12, "Disease")]) == ["O", "B-Disease", "I-Disease", "O"]
    assert bio_tags(spans, [(1, 3, "X"), (13, 16, "Y")]) == ["B-X", "O", "O", "B-Y"]
    assert locate(["a", "-", "b"], "x a -b", 1) == [(2, 3), (4, 5), (5, 6)] and locate(["a"], "x a", 0) is None
    assert locate(["a", "b"], "ab c", 0) == [(0, 1), (1, 2)] and locate(["a", "c"], "ab c", 0) is None
    assert find(["b", "c"], ["b x", "b, b  c"]) == (1, [(3, 4), (6, 7)]) and find(["c", "b"], ["b c"]) is None


@pytest.fixture(scope="module")
def ncbi_model(tmp_path_factory, shared_data, minilm_dir) -> Path:
    out = tmp_path_factory.mktemp("ncbi")
    assert main(["finetune", "--task", "ncbi-disease", "--model", str(minilm_dir), "--data-dir", str(shared_data),
                 "--out", str(out), "--limit", "400", "--epochs", "2", "--lr", "1e-4", "--batch-size", "16",
                 "--max-seq-length", "128", "--seed", "1"]) == 0
    return out


def evaluated_f1(out: Path) -> float:
    rows = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    f1 = f1_score([r["gold"] for r in rows], [r["prediction"] for r in rows])
    assert f1 == pytest.approx(json.loads((out / "metrics.json").read_text())["test"]["mean"], abs=1e-4)
    return f1


def served_f1(sentences, entities_per_text) -> float:
    predicted = [bio_tags(spans, [(e["start"], e["end"], e["label"]) for e in entities])
                 for (_, spans, _), entities in zip(sentences, entities_per_text)]
    return f1_score([gold for _, _, gold in sentences], predicted)


def test_ner_command_and_http_find_what_evaluation_measured(ncbi_model, shared_data, tmp_path):
    from fastapi.testclient import TestClient

    from domainbert.serve.app import Limits, create_app

    config = json.loads((ncbi_model / "model" / "config.json").read_text())
    assert config["word_cutting"] == {"keep_inside": ""} and config["max_seq_length"] == 128
    evaluated = evaluated_f1(ncbi_model)
    assert evaluated > 0.2, "the fine-tuned model learned something to compare"
    sentences = raw_sentences(shared_data, limit=400)
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(text + "\n" for text, _, _ in sentences), encoding="utf-8")
    assert main(["ner", str(texts), "--model", str(ncbi_model / "model"), "--output", str(tmp_path / "ner.jsonl")]) == 0
    by_command = [json.loads(line)["entities"] for line in (tmp_path / "ner.jsonl").read_text().splitlines()]
    assert served_f1(sentences, by_command) == pytest.approx(evaluated, abs=0.005)
    with TestClient(create_app(ner_model=ncbi_model / "model", limits=Limits(max_batch=32))) as client:
        over_http = []
        for at in range(0, len(sentences), 32):
            reply = client.post("/ner", json={"texts": [text for text, _, _ in sentences[at:at + 32]]})
            assert reply.status_code == 200, reply.text
            over_http += [r["entities"] for r in reply.json()["results"]]
    assert served_f1(sentences, over_http) == pytest.approx(evaluated, abs=0.005)


def test_tagger_cuts_as_its_config_records(tmp_path):
    from domainbert.serve.inference import Tagger
    from inference_models import save_rule_ner

    model = save_rule_ner(tmp_path / "ner")  # "breast" begins a disease, "cancer" continues one
    config = json.loads((model / "config.json").read_text())
    text = "breast-cancer risk"
    bert = Tagger(model)
    assert bert.tag_texts([text])[0][0] == [(0, 6), (6, 7), (7, 13), (14, 18)]  # no record: BERT's cut
    assert [e["text"] for e in bert([text])[0]] == ["breast", "cancer"]
    config["word_cutting"] = {"keep_inside": "-"}
    (model / "config.json").write_text(json.dumps(config))
    tagger = Tagger(model)
    assert tagger.tag_texts([text])[0][0] == [(0, 13), (14, 18)]
    assert [(e["text"], e["label"]) for e in tagger([text])[0]] == [("breast-cancer", "Disease")]
    config["word_cutting"] = {"keep_inside": "ab"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="keep_inside"):
        Tagger(model)
