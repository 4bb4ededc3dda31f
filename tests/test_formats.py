"""CoNLL/BIO and PubTator in and out of ``domainbert ner``, on the corpora's own files.

* every PubTator file in ``../shared/data`` (NCBI-disease, BC5CDR with its relation lines) read and
  written again is unchanged, and its mentions' offsets count the title, a space and the abstract;
* a CoNLL file's sentences written back with a tag column keep every input column;
* ``ner --input-format pubtator --output-format pubtator``: titles and abstracts unchanged, one mention
  line per entity the JSON lines output lists, read back equal, each mention the text at its offsets;
* ``ner --input-format conll``: the words are tagged as given (the tags those of ``Tagger.tag_words``);
  plain text can also be written as CoNLL and PubTator;
* ``classify`` and ``embed`` keep the ids of their JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainbert.cli import main
from domainbert.serve.formats import read_conll, read_pubtator, write_document, write_sentence
from domainbert.serve.inference import Tagger
from inference_models import save_rule_ner, save_tiny_classifier


def numbered(text: str) -> list[tuple[int, str]]:
    return list(enumerate(text.splitlines(), 1))


def pubtator_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "ncbi_disease" / "pubtator").glob("*corpus.txt")) + sorted(
        (shared_data / "bc5cdr_pubtator").glob("*.PubTator.txt"))


def test_pubtator_files_round_trip_unchanged(shared_data):
    files = pubtator_files(shared_data)
    assert len(files) == 6
    for path in files:
        raw = path.read_text(encoding="utf-8")
        docs = list(read_pubtator(numbered(raw), path.name))
        assert "".join(write_document(d) for d in docs).strip("\n") == raw.strip("\n"), path.name
        mentions = [(d, m) for d in docs for m in d.mentions]
        assert len(docs) >= 100 and len(mentions) > 700
        matching = sum(d.text[m.start:m.end] == m.text for d, m in mentions)
        assert matching >= len(mentions) - 1, path.name  # NCBI's train set has one mention with trailing spaces
    cdr = list(read_pubtator(numbered(files[-1].read_text(encoding="utf-8")), files[-1].name))
    assert any(isinstance(a, str) and a.split("\t")[1] == "CID" for d in cdr for a in d.annotations)


def test_conll_sentences_keep_their_columns(shared_data):
    raw = (shared_data / "jnlpba" / "test.tsv").read_text(encoding="utf-8")
    sentences = list(read_conll(numbered(raw), "test.tsv"))
    assert len(sentences) == 3856  # SOURCES.md: JNLPBA's test sentences (its -DOCSTART- lines skipped)
    first = sentences[0]
    written = write_sentence(first, ["X"] * len(first.words)).splitlines()
    assert first.before == [raw.splitlines()[0]] and written[:2] == [first.before[0], ""]  # -DOCSTART- kept
    assert [line.split("\t") for line in written[2:-1]] == [[*cells, "X"] for cells in first.columns]
    assert written[-1] == ""
    rewritten = "".join(write_sentence(s, [c[-1] for c in s.columns]) for s in sentences)
    assert [(s.before, s.columns) for s in read_conll(numbered(rewritten), "again")] == [
        (s.before, [[*c, c[-1]] for c in s.columns]) for s in sentences]


@pytest.fixture(scope="module")
def ner_model(tmp_path_factory) -> Path:
    return save_rule_ner(tmp_path_factory.mktemp("ner") / "model")


def test_pubtator_in_and_out(ner_model, shared_data, tmp_path):
    source = shared_data / "ncbi_disease" / "pubtator" / "NCBItestset_corpus.txt"
    docs = "\n\n".join(source.read_text(encoding="utf-8").strip("\n").split("\n\n")[:6]) + "\n"
    (tmp_path / "docs.txt").write_text(docs, encoding="utf-8")
    base = ["ner", "--model", str(ner_model), "--input-format", "pubtator", str(tmp_path / "docs.txt")]
    assert main([*base, "--output", str(tmp_path / "out.jsonl")]) == 0
    assert main([*base, "--output-format", "pubtator", "--output", str(tmp_path / "out.txt")]) == 0
    given = list(read_pubtator(numbered(docs), "docs.txt"))
    written = list(read_pubtator(numbered((tmp_path / "out.txt").read_text(encoding="utf-8")), "out.txt"))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(d.pmid, d.title, d.abstract) for d in written] == [(d.pmid, d.title, d.abstract) for d in given]
    assert [r["id"] for r in rows] == [d.pmid for d in given]
    found = 0
    for doc, row in zip(written, rows):
        assert [(m.start, m.end, m.text, m.type) for m in doc.mentions] == [
            (e["start"], e["end"], e["text"], e["label"]) for e in row["entities"]]
        assert all(doc.text[m.start:m.end] == m.text for m in doc.mentions)
        assert len(doc.annotations) == len(doc.mentions), "predicted mentions replace the input's annotations"
        found += len(doc.mentions)
    assert found > 0, "the rule model finds the corpus' disease words"
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "".join(write_document(d) for d in written)


def test_conll_in_tags_the_given_words(ner_model, shared_data, tmp_path):
    """JNLPBA's words keep inner hyphens and slashes (`IL-2`), which BERT's cut (this model records no cut of
    its own) would split: given as CoNLL they are tagged as they are, one tag each, -DOCSTART- lines kept."""
    lines = (shared_data / "jnlpba" / "test.tsv").read_text(encoding="utf-8").split("\n\n")[:30]
    (tmp_path / "s.tsv").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    assert main(["ner", "--model", str(ner_model), "--input-format", "conll", "--output-format", "conll",
                 "--output", str(tmp_path / "out.tsv"), str(tmp_path / "s.tsv")]) == 0
    given = list(read_conll(numbered((tmp_path / "s.tsv").read_text()), "s.tsv"))
    written = list(read_conll(numbered((tmp_path / "out.tsv").read_text()), "out.tsv"))
    assert any("-" in w[1:-1] for s in given for w in s.words), "words a re-cut would split"
    assert given[0].before and [s.before for s in written] == [s.before for s in given]  # -DOCSTART- kept
    expected = Tagger(ner_model).tag_words([s.words for s in given])
    assert [[c[:-1] for c in s.columns] for s in written] == [s.columns for s in given]
    assert [[c[-1] for c in s.columns] for s in written] == [[tag for tag, _ in tags] for tags in expected]
    text = "Patients with breast cancer.\n"
    (tmp_path / "rule.tsv").write_text("".join(w + "\n" for w in ("Patients", "with", "breast", "cancer", ".")))
    assert main(["ner", "--model", str(ner_model), "--input-format", "conll", "--output-format", "conll",
                 "--output", str(tmp_path / "rule-out.tsv"), str(tmp_path / "rule.tsv")]) == 0, text
    tags = [line.split("\t")[-1] for line in (tmp_path / "rule-out.tsv").read_text().splitlines() if line]
    assert tags == ["O", "O", "B-Disease", "I-Disease", "O"]


def test_text_to_conll_and_pubtator(ner_model, tmp_path):
    (tmp_path / "t.jsonl").write_text('{"id": "a1", "text": "Patients with breast cancer."}\n'
                                      '{"text": "No finding here."}\n', encoding="utf-8")
    assert main(["ner", "--model", str(ner_model), "--output-format", "conll", "--output", str(tmp_path / "o.tsv"),
                 str(tmp_path / "t.jsonl")]) == 0
    sentences = list(read_conll(numbered((tmp_path / "o.tsv").read_text()), "o.tsv"))
    assert [s.words for s in sentences] == [["Patients", "with", "breast", "cancer", "."],
                                            ["No", "finding", "here", "."]]
    assert main(["ner", "--model", str(ner_model), "--output-format", "pubtator", "--output", str(tmp_path / "o.txt"),
                 str(tmp_path / "t.jsonl")]) == 0
    docs = list(read_pubtator(numbered((tmp_path / "o.txt").read_text()), "o.txt"))
    assert [(d.pmid, d.title, d.abstract) for d in docs] == [("a1", "Patients with breast cancer.", ""),
                                                             ("2", "No finding here.", "")]


def test_classify_and_embed_keep_json_ids(tmp_path, minilm_dir):
    classifier = save_tiny_classifier(tmp_path / "cls", ["no", "yes"], "single_label_classification")
    (tmp_path / "t.jsonl").write_text('{"id": "x-7", "text": "Aspirin helps."}\n{"id": 3, "text": "No."}\n')
    for argv in (["classify", "--model", str(classifier)], ["embed", "--model", str(minilm_dir)]):
        assert main([*argv, "--input-format", "jsonl", "--output", str(tmp_path / "o.jsonl"),
                     str(tmp_path / "t.jsonl")]) == 0
        assert [json.loads(line)["id"] for line in (tmp_path / "o.jsonl").read_text().splitlines()] == ["x-7", 3]
