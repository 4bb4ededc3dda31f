"""Tests of domainbert.serve.inference: fill-mask, NER, classification and embeddings, API and CLI.

References nobody here wrote: transformers' ``fill-mask`` pipeline and its Auto models (same
checkpoint directories), and transformers' MiniLM outputs mean-pooled by hand for embeddings. The
NER model of :mod:`inference_models` has a known output by construction, so decoding and windowing
are checked against entities found by a regex, also on a text many windows long.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch

from domainbert.cli import main
from domainbert.errors import CheckpointError
from domainbert.serve.commands import read_inputs
from domainbert.serve.inference import Classifier, Embedder, FillMask, InputError, Tagger, decode_bio
from inference_models import minilm_dir, rule_entities, save_rule_ner, save_tiny_classifier, save_tiny_mlm

TEXTS = ["Aspirin reduces the risk of [MASK] infarction.",
         "The [MASK] gene is mutated in many [MASK] cancers.",
         "[MASK]"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inference-models")
    return {"mlm": save_tiny_mlm(root / "mlm"), "ner": save_rule_ner(root / "ner", max_positions=128)}


# ==================================================================================== fill-mask
def test_fill_mask_matches_transformers_pipeline(models: dict[str, Path]) -> None:
    from transformers import pipeline

    reference = pipeline("fill-mask", model=str(models["mlm"]), top_k=5, device="cpu")
    ours = FillMask(models["mlm"], precision="fp32", batch_size=2)(TEXTS, top_k=5)
    for text, result in zip(TEXTS, ours):
        expected = reference(text)
        if text.count("[MASK]") == 1:
            expected = [expected]
        assert len(result["masks"]) == len(expected) == text.count("[MASK]")
        for mask, ref in zip(result["masks"], expected):
            assert text[mask["start"]:mask["end"]] == "[MASK]"
            assert [p["token_id"] for p in mask["predictions"]] == [r["token"] for r in ref]
            torch.testing.assert_close(torch.tensor([p["score"] for p in mask["predictions"]]),
                                       torch.tensor([r["score"] for r in ref]), rtol=1e-4, atol=1e-6)
            assert [p["token"] for p in mask["predictions"]] == [
                reference.tokenizer.convert_ids_to_tokens(r["token"]) for r in ref]


def test_fill_mask_batch_and_order_do_not_change_results(models: dict[str, Path]) -> None:
    predictor = FillMask(models["mlm"], precision="fp32")
    together = predictor(TEXTS, top_k=3)
    alone = [predictor([t], top_k=3)[0] for t in TEXTS]
    for a, b in zip(together, alone):
        assert [[p["token_id"] for p in m["predictions"]] for m in a["masks"]] == \
               [[p["token_id"] for p in m["predictions"]] for m in b["masks"]]


def test_fill_mask_refuses_a_model_without_mlm_head() -> None:
    with pytest.raises(CheckpointError, match="no masked-LM head weights.*cls.predictions"):
        FillMask(minilm_dir())


def test_fill_mask_input_errors(models: dict[str, Path]) -> None:
    predictor = FillMask(models["mlm"])
    with pytest.raises(InputError, match=r"text 1 has no \[MASK\]"):
        predictor(["a [MASK] b", "no mask here"])
    with pytest.raises(InputError, match="reads at most 128"):
        predictor(["word " * 200 + "[MASK]"])
    with pytest.raises(InputError, match="not one string"):
        predictor("a [MASK]")  # type: ignore[arg-type]


# ==================================================================================== NER
@pytest.mark.parametrize("tags, spans", [
    (["O", "B-D", "I-D", "O"], [(1, 3, "D")]),
    (["B-D", "B-D", "I-D"], [(0, 1, "D"), (1, 3, "D")]),
    (["I-D", "I-D", "O", "I-C"], [(0, 2, "D"), (3, 4, "C")]),  # I after O starts an entity
    (["B-D", "I-C", "I-C"], [(0, 1, "D"), (1, 3, "C")]),  # a type change starts an entity
    (["B", "I", "O", "B"], [(0, 2, "ENTITY"), (3, 4, "ENTITY")]),  # JNLPBA's untyped tags
    (["O", "I-PAR", "I-PAR", "I-INT"], [(1, 3, "PAR"), (3, 4, "INT")]),  # EBM-PICO's IO tags
    (["S-D", "B-D", "E-D", "I-D"], [(0, 1, "D"), (1, 3, "D"), (3, 4, "D")]),  # IOBES
    (["O", "O"], []),
    ([], []),
])
def test_decode_bio(tags: list[str], spans: list[tuple[int, int, str]]) -> None:
    assert [s[:3] for s in decode_bio(tags)] == spans


def test_decode_bio_scores_are_word_means() -> None:
    assert decode_bio(["B-D", "I-D", "O"], [0.9, 0.5, 0.1]) == [(0, 2, "D", pytest.approx(0.7))]


def test_ner_entities_offsets_and_scores(models: dict[str, Path]) -> None:
    texts = ["Patients with breast cancer and diabetes mellitus were treated.",
             "No disease-free survival; renal failure (RF) and Heart  disease\tseen.",
             "Ünïcode 😀 café: lung cancer",
             "nothing here",
             ""]
    results = Tagger(models["ner"], batch_size=2)(texts)
    for text, entities in zip(texts, results):
        assert [(e["start"], e["end"], e["text"]) for e in entities] == rule_entities(text)
        for e in entities:
            assert e["text"] == text[e["start"]:e["end"]]
            assert e["label"] == "Disease"
            assert 0.9 < e["score"] <= 1.0
    assert results[2][0]["text"] == "lung cancer"
    assert results[3] == results[4] == []


def test_ner_long_text_is_windowed_not_truncated(models: dict[str, Path]) -> None:
    sentence = ("In this cohort, {} was seen in patients whose breast cancer had spread, and "
                "asthma or diabetes mellitus came later. ")
    text = "".join(sentence.format(w) for w in ["heart failure", "renal disease", "lung cancer"] * 12)
    tagger = Tagger(models["ner"], max_length=16)
    n_tokens = len(tagger.tokenizer.encode(text, add_special_tokens=False).input_ids)
    assert n_tokens > 20 * 14  # many windows of 14 sub-tokens
    entities = tagger([text])[0]
    expected = rule_entities(text)
    assert len(expected) == 36 * 4
    assert [(e["start"], e["end"], e["text"]) for e in entities] == expected
    # The same text with the model's full 128 positions gives the same entities.
    assert Tagger(models["ner"])([text])[0] == entities


def test_ner_matches_transformers_on_a_random_model(tmp_path: Path) -> None:
    """A random (context-dependent) model: our word tags = argmax of transformers' logits at first sub-tokens."""
    from transformers import AutoModelForTokenClassification

    from domainbert.data.tokenization import BertTokenizer
    from domainbert.model.modeling import BertForTokenClassification
    from inference_models import NER_LABELS, tiny_config

    torch.manual_seed(3)
    model = BertForTokenClassification(tiny_config(initializer_range=0.5).with_labels(NER_LABELS))
    model.save_pretrained(tmp_path, tokenizer=BertTokenizer.from_pretrained(minilm_dir()))
    text = "The patient, a 54-year-old man with chronic kidney disease, developed hypertension."
    tagger = Tagger(tmp_path, precision="fp32")
    enc = tagger.tokenizer.encode(text)
    reference = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        probs = reference(torch.tensor([enc.input_ids])).logits[0].softmax(-1)  # (T, L)
    first = {}
    for pos, word in enumerate(enc.word_ids):
        if word is not None and word not in first:
            first[word] = pos
    tags = [NER_LABELS[int(probs[first[w]].argmax())] for w in sorted(first)]
    scores = [float(probs[first[w]].max()) for w in sorted(first)]
    expected = []
    for start, end, label, score in decode_bio(tags, scores):
        s, e = enc.offsets[first[start]][0], enc.offsets[[p for p, w in enumerate(enc.word_ids) if w == end - 1][-1]][1]
        expected.append({"start": s, "end": e, "label": label, "text": text[s:e],
                         "score": pytest.approx(score, abs=1e-5)})
    assert expected, "the random model tags something"
    assert tagger([text])[0] == expected


def test_ner_refuses_a_model_without_classifier() -> None:
    with pytest.raises(CheckpointError, match="no token-classification head.*finetune"):
        Tagger(minilm_dir())


# ==================================================================================== classification
@pytest.mark.parametrize("labels, problem_type", [
    (["negative", "positive", "neutral"], "single_label_classification"),
    (["a", "b", "c", "d"], "multi_label_classification"),
    (["similarity"], "regression"),
])
def test_classify_matches_transformers(tmp_path: Path, labels: list[str], problem_type: str) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    save_tiny_classifier(tmp_path, labels, problem_type)
    texts = ["Aspirin inhibits COX-1.", "A much longer sentence about the treatment of chronic disease."]
    pairs = ["It blocks platelets.", None]
    results = Classifier(tmp_path, precision="fp32")(texts, pairs)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    ref = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    for text, pair, result in zip(texts, pairs, results):
        with torch.no_grad():
            logits = ref(**tok(text, pair, return_tensors="pt")).logits[0]
        if problem_type == "regression":
            assert result == {"value": pytest.approx(float(logits[0]), abs=1e-5)}
        elif problem_type == "multi_label_classification":
            probs = logits.sigmoid().tolist()
            assert result["scores"] == {k: pytest.approx(p, abs=1e-5) for k, p in zip(labels, probs)}
            assert result["labels"] == [k for k, p in zip(labels, probs) if p > 0.5]
        else:
            probs = logits.softmax(-1).tolist()
            assert result["scores"] == {k: pytest.approx(p, abs=1e-5) for k, p in zip(labels, probs)}
            assert result["label"] == labels[max(range(len(probs)), key=probs.__getitem__)]


# ==================================================================================== embeddings
def test_embeddings_equal_mean_pooled_transformers_minilm() -> None:
    from transformers import AutoModel, AutoTokenizer

    texts = ["Aspirin reduces the risk of myocardial infarction.", "BRCA1", "short",
             "Metformin is the first-line drug for type 2 diabetes mellitus in adults."]
    embedder = Embedder(minilm_dir(), precision="fp32", batch_size=3)
    ours = embedder(texts)
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    ref = AutoModel.from_pretrained(minilm_dir()).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = ref(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(embedder(texts, pooling="cls"), hidden[:, 0], atol=1e-5, rtol=1e-4)
    normed = embedder(texts, normalize=True)
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(len(texts)))
    # Semantics, not just numbers: the two medical sentences are closer to each other than to "short".
    sims = normed @ normed.T
    assert sims[0, 3] > sims[0, 2]


# ==================================================================================== CLI
def _run_cli(argv: list[str], stdin: bytes, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict], str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_cli_ner_from_stdin_plain_and_jsonl(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    stdin = ("breast cancer in women\n\n"
             + json.dumps({"id": "doc-7", "text": "Heart failure and asthma."}) + "\n").encode()
    code, rows, err = _run_cli(["ner", "--model", str(models["ner"])], stdin, monkeypatch, capsys)
    assert code == 0, err
    assert [r["line"] for r in rows] == [1, 3]
    assert rows[1]["id"] == "doc-7"
    assert [e["text"] for e in rows[0]["entities"]] == ["breast cancer"]
    assert [e["text"] for e in rows[1]["entities"]] == ["Heart failure", "asthma"]


def test_cli_fill_mask_and_embed_from_files(models: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, _, err = _run_cli(["fill-mask", "--model", str(models["mlm"]), "--top-k", "2", str(src),
                             "--output", str(out)], b"", monkeypatch, capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = FillMask(models["mlm"])(TEXTS, top_k=2)
    assert [[[p["token"] for p in m["predictions"]] for m in r["masks"]] for r in rows] == \
           [[[p["token"] for p in m["predictions"]] for m in r["masks"]] for r in expected]
    code, rows, err = _run_cli(["embed", "--model", str(models["mlm"]), "--pooling", "cls", str(src)],
                               b"", monkeypatch, capsys)
    assert code == 0, err
    assert len(rows) == 3 and len(rows[0]["embedding"]) == 32


@pytest.mark.parametrize("argv, stdin, message", [
    (["fill-mask", "--model", "/nonexistent/model"], b"a [MASK]\n", "does not exist"),
    (["fill-mask", "--model", "{minilm}"], b"a [MASK]\n", "no masked-LM head weights"),
    (["fill-mask", "--model", "{mlm}"], b"first [MASK]\nno mask\n", "input line 2 has no [MASK]"),
    (["ner", "--model", "{ner}"], b"ok text\n\xff\xfe broken\n", "<stdin> line 2 is not UTF-8"),
    (["ner", "--model", "{ner}"], b'{"txt": "x"}\n', 'needs a string field "text"'),
    (["classify", "--model", "{ner}"], b"x\n", "no sequence-classification head"),
])
def test_cli_errors_are_one_line(argv: list[str], stdin: bytes, message: str, models: dict[str, Path],
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.format(minilm=minilm_dir(), **models) for a in argv]
    code, _, err = _run_cli(argv, stdin, monkeypatch, capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err


def test_read_inputs_skips_blank_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'one\r\n\n  \n{"text": "two", "text_pair": "p"}\n')
    rows = list(read_inputs([str(path)]))
    assert [(r.line, r.text, r.text_pair) for r in rows] == [(1, "one", None), (4, "two", "p")]
