"""The model on its own: config validation, output shapes of every head, padding invariance, the
gathered MLM loss, weight init and tying. Tiny odd-sized configs (vocab 99, hidden 32, inter 37)."""

from __future__ import annotations

import pytest
import torch

from domainbert.errors import ConfigError
from domainbert.model.configuration import PRESETS, BertConfig
from domainbert.model.modeling import (
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

B, T = 13, 7


@pytest.fixture
def config() -> BertConfig:
    return BertConfig.preset("tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 99, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[3, 4:] = 0
    mask[7, 2:] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, 4:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


# ------------------------------------------------------------------------------------- config
def test_config_rejects_heads_not_dividing_hidden_with_both_numbers_and_fix():
    with pytest.raises(ConfigError) as err:
        BertConfig(hidden_size=250, num_attention_heads=4)
    msg = str(err.value)
    assert "250" in msg and "4" in msg and "multiple" in msg


@pytest.mark.parametrize("field,value", [("num_hidden_layers", 0), ("vocab_size", -3),
                                         ("hidden_dropout_prob", 1.5), ("hidden_act", "mish"),
                                         ("pad_token_id", 200), ("problem_type", "ranking")])
def test_config_rejects_impossible_values(field, value):
    with pytest.raises(ConfigError, match=field):
        BertConfig.preset("tiny", **{field: value})


def test_presets_have_the_documented_shapes():
    small = BertConfig.preset("small")
    shape = (small.num_hidden_layers, small.hidden_size, small.num_attention_heads, small.intermediate_size)
    assert shape == (4, 256, 4, 1024)
    base = BertConfig.preset("base")
    shape = (base.num_hidden_layers, base.hidden_size, base.num_attention_heads, base.intermediate_size)
    assert shape == (12, 768, 12, 3072)
    large = BertConfig.preset("large")
    assert (large.num_hidden_layers, large.hidden_size) == (24, 1024)
    mini = BertConfig.preset("mini")
    shape = (mini.num_hidden_layers, mini.hidden_size, mini.num_attention_heads, mini.intermediate_size)
    assert shape == (4, 128, 2, 512)
    assert set(PRESETS) == {"tiny", "mini", "small", "base", "large"}
    with pytest.raises(ConfigError, match="unknown model preset"):
        BertConfig.preset("huge")


def test_config_round_trips_hf_json_keeping_unknown_keys(tmp_path):
    config = BertConfig.preset("tiny").with_labels(["O", "B", "I"])
    config.extra["custom_key"] = [1, 2]
    config.save(tmp_path)
    again = BertConfig.load(tmp_path)
    assert again == config
    data = again.to_dict()
    assert data["model_type"] == "bert" and data["label2id"] == {"O": 0, "B": 1, "I": 2}


def test_base_model_parameter_count_is_bert_base():
    # 109,482,240 parameters: BERT-base (uncased vocab 30,522) as transformers counts it.
    with torch.device("meta"):
        model = BertModel(BertConfig.preset("base"))
    assert model.num_parameters() == 109_482_240


# ------------------------------------------------------------------------------------- shapes
def test_output_shapes_of_every_head(config, batch):
    torch.manual_seed(0)
    out = BertModel(config)(**batch)
    assert out.last_hidden_state.shape == (B, T, 32) and out.pooler_output.shape == (B, 32)
    pre = BertForPreTraining(config)(**batch)
    assert pre.prediction_logits.shape == (B, T, 99) and pre.seq_relationship_logits.shape == (B, 2)
    assert pre.loss is None
    assert BertForMaskedLM(config)(**batch).logits.shape == (B, T, 99)
    tok_cfg = config.with_labels(["O", "B-X", "I-X", "B-Y", "I-Y"])
    assert BertForTokenClassification(tok_cfg)(**batch).logits.shape == (B, T, 5)
    seq_cfg = config.with_labels(["a", "b", "c"])
    assert BertForSequenceClassification(seq_cfg)(**batch).logits.shape == (B, 3)


def test_pretraining_loss_is_mlm_plus_nsp(config, batch):
    torch.manual_seed(0)
    model = BertForPreTraining(config)
    labels = torch.full((B, T), -100)
    labels[:, 2] = batch["input_ids"][:, 2]
    nsp = torch.randint(0, 2, (B,))
    out = model(**batch, labels=labels, next_sentence_label=nsp)
    assert torch.allclose(out.loss, out.mlm_loss + out.nsp_loss)
    assert out.prediction_logits.shape == (B, 99)  # one labelled position per row, gathered


def test_gathered_mlm_loss_equals_all_positions_loss(config, batch):
    torch.manual_seed(0)
    model = BertForPreTraining(config)
    g = torch.Generator().manual_seed(1)
    labels = torch.where(torch.rand(B, T, generator=g) < 0.3, batch["input_ids"], torch.full((B, T), -100))
    gathered = model(**batch, labels=labels)
    full = model(**batch, labels=labels, mlm_all_positions=True)
    assert gathered.prediction_logits.shape == (int((labels != -100).sum()), 99)
    assert full.prediction_logits.shape == (B, T, 99)
    torch.testing.assert_close(gathered.mlm_loss, full.mlm_loss, rtol=1e-6, atol=1e-6)
    # and the gradients agree too
    gathered.mlm_loss.backward()
    grad_gathered = model.bert.embeddings.word_embeddings.weight.grad.clone()
    model.zero_grad()
    full.mlm_loss.backward()
    torch.testing.assert_close(grad_gathered, model.bert.embeddings.word_embeddings.weight.grad, rtol=1e-5, atol=1e-7)


def test_mlm_without_labelled_positions_gives_zero_loss_not_nan(config, batch):
    model = BertForMaskedLM(config)
    out = model(**batch, labels=torch.full((B, T), -100))
    assert out.loss.item() == 0.0


def test_padding_does_not_change_outputs_at_real_tokens(config):
    torch.manual_seed(0)
    model = BertModel(config).eval()
    ids = torch.randint(5, 99, (2, 5))
    alone = model(ids).last_hidden_state
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(2, 5), torch.zeros(2, 4)], dim=1).long()
    out = model(padded, attention_mask=mask)
    torch.testing.assert_close(out.last_hidden_state[:, :5], alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.pooler_output, model(ids).pooler_output, rtol=0, atol=1e-6)


def test_sequence_classification_problem_types(config, batch):
    torch.manual_seed(0)
    single = BertForSequenceClassification(config.with_labels(["no", "yes", "maybe"]))
    classes = torch.randint(0, 3, (B,))
    out = single(**batch, labels=classes)
    assert single.problem_type_for(classes) == "single_label_classification"
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, classes))
    multi = BertForSequenceClassification(config.with_labels([f"h{i}" for i in range(10)]))
    target = torch.randint(0, 2, (B, 10)).float()
    out = multi(**batch, labels=target)
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, target))
    reg = BertForSequenceClassification(config.with_labels(["score"]))
    scores = torch.rand(B) * 4
    out = reg(**batch, labels=scores)
    assert reg.problem_type_for(scores) == "regression"
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), scores))


def test_regression_scores_stay_fp32_under_bf16_autocast(config, batch):
    """A score is not rounded to bf16's 8 significant bits (BIOSSES' scores of a barely trained model
    would fall on a few values): under autocast the head runs in fp32 over the pooled vector; class
    logits still come from the autocast head."""
    torch.manual_seed(0)
    reg = BertForSequenceClassification(config.with_labels(["score"])).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = reg.bert(**batch).pooler_output
        scores = reg(**batch).logits
    assert pooled.dtype == torch.bfloat16 and scores.dtype == torch.float32
    expected = torch.nn.functional.linear(pooled.float(), reg.classifier.weight, reg.classifier.bias)
    torch.testing.assert_close(scores, expected, rtol=0, atol=0)
    assert not torch.equal(scores, scores.bfloat16().float())
    single = BertForSequenceClassification(config.with_labels(["no", "yes", "maybe"])).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert single(**batch).logits.dtype == torch.bfloat16


def test_weight_init_follows_bert(config):
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.preset("tiny", vocab_size=2000, hidden_size=64, intermediate_size=256))
    w = model.bert.encoder.layer[0].intermediate.dense.weight
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    assert torch.all(model.bert.encoder.layer[0].intermediate.dense.bias == 0)
    norm = model.bert.embeddings.LayerNorm
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert torch.all(model.bert.embeddings.word_embeddings.weight[0] == 0)  # [PAD] row
    assert torch.all(model.cls.predictions.bias == 0)


def test_mlm_decoder_is_tied_to_word_embeddings(config):
    model = BertForPreTraining(config)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    model.resize_token_embeddings(103)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.bias.shape == (103,) and model.config.vocab_size == 103


def test_too_long_input_is_refused_with_the_limit(config):
    model = BertModel(config)
    with pytest.raises(ValueError, match="max_position_embeddings 64"):
        model(torch.ones(1, 65, dtype=torch.long))


# ------------------------------------------------------------------------------- unpadded path
HEADS = {
    "BertModel": lambda c: BertModel(c),
    "BertForPreTraining": lambda c: BertForPreTraining(c),
    "BertForMaskedLM": lambda c: BertForMaskedLM(c),
    "BertForTokenClassification": lambda c: BertForTokenClassification(c.with_labels(["O", "B-X", "I-X"])),
    "BertForSequenceClassification": lambda c: BertForSequenceClassification(c.with_labels(["a", "b", "c"])),
}


def _outputs(model, batch, **extra) -> list[torch.Tensor]:
    out = model(**batch, **extra)
    if isinstance(model, BertModel):
        return [out.last_hidden_state, out.pooler_output]
    if isinstance(model, BertForPreTraining):
        return [out.prediction_logits, out.seq_relationship_logits, out.loss]
    return [out.logits] + ([out.loss] if out.loss is not None else [])


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("padded", [True, False])
def test_unpadded_path_equals_the_padded_one_at_every_real_position(config, head, padded):
    from domainbert.model.modeling import Packing

    g = torch.Generator().manual_seed(1)
    B_, T_ = 5, 11  # odd sizes; ragged lengths including one full row and one of length 1
    ids = torch.randint(5, 99, (B_, T_), generator=g)
    mask = torch.ones(B_, T_, dtype=torch.long)
    if padded:
        for row, n in enumerate([11, 1, 6, 9, 3]):
            mask[row, n:] = 0
    types = (torch.arange(T_) >= 4).long().expand(B_, -1)
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    mlm = torch.where(torch.rand(B_, T_, generator=g) < 0.3, ids, -100).masked_fill(mask == 0, -100)
    labels = {"BertForPreTraining": {"labels": mlm, "next_sentence_label": torch.tensor([0, 1, 0, 1, 1])},
              "BertForMaskedLM": {"labels": mlm},
              "BertForTokenClassification": {"labels": torch.randint(0, 3, (B_, T_), generator=g)
                                             .masked_fill(mask == 0, -100)},
              "BertForSequenceClassification": {"labels": torch.tensor([0, 2, 1, 1, 0])}}.get(head, {})
    batch.update(labels)
    torch.manual_seed(0)
    model = HEADS[head](config).eval()
    reference = _outputs(model, batch)
    base = model if isinstance(model, BertModel) else model.bert
    base.unpad = True
    by_flag = _outputs(model, batch)
    by_packing = _outputs(model, batch, packing=Packing.from_mask(mask)) if padded else by_flag
    real = mask.bool()
    for ours, packing_out, theirs in zip(by_flag, by_packing, reference):
        if ours.dim() == 3 and ours.shape[:2] == (B_, T_):  # per-token outputs: compare real positions
            ours, packing_out, theirs = ours[real], packing_out[real], theirs[real]
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
        torch.testing.assert_close(packing_out, theirs, rtol=0, atol=1e-5)
    # and the gradients of a training step (dropout off): the same update either way
    if any(t.requires_grad and t.dim() == 0 for t in reference):
        grads = []
        for unpad in (False, True):
            base.unpad = unpad
            model.zero_grad()
            _outputs(model, batch)[-1].backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], rtol=0, atol=1e-5, msg=name)


def test_packing_of_a_mask():
    from domainbert.model.modeling import Packing

    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    p = Packing.from_mask(mask)
    assert p.indices.tolist() == [0, 1, 2, 4, 8, 9, 10, 11]
    assert p.cu_seqlens.tolist() == [0, 3, 4, 8] and p.cu_seqlens.dtype == torch.int32
    assert (p.max_seqlen, p.batch, p.length) == (4, 3, 4)
    packed = torch.arange(8.0).unsqueeze(1)  # (R, 1)
    assert p.pad(packed).squeeze(-1).tolist() == [[0, 1, 2, 0], [3, 0, 0, 0], [4, 5, 6, 7]]


def test_mlm_positions_found_beforehand_give_the_same_logits_and_loss(config, batch):
    torch.manual_seed(0)
    model = BertForPreTraining(config).eval()
    g = torch.Generator().manual_seed(3)
    labels = torch.where(torch.rand(B, T, generator=g) < 0.3, batch["input_ids"], -100)
    labels = labels.masked_fill(batch["attention_mask"] == 0, -100)
    positions = (labels.reshape(-1) != -100).nonzero().squeeze(1)
    a = model(**batch, labels=labels)
    b = model(**batch, labels=labels, mlm_positions=positions)
    torch.testing.assert_close(b.prediction_logits, a.prediction_logits, rtol=0, atol=0)
    torch.testing.assert_close(b.mlm_loss, a.mlm_loss, rtol=0, atol=0)
    none = model(**batch, labels=torch.full((B, T), -100), mlm_positions=positions[:0])
    assert none.mlm_loss.item() == 0.0 and none.prediction_logits.shape == (0, config.vocab_size)
