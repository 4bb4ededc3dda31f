"""The pretraining loop: the learning-rate schedule, LAMB, overfitting a repeated batch, exact
resume (bit-identical fp32 losses), atomic checkpoints, and refused settings.

The batches come from a small deterministic source here (batch i depends only on i), so that these
tests pin the loop itself; the prepared-shard reader is tested in tests/test_pretraining_data.py.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import sklearn.metrics
import torch

from domainbert.errors import ConfigError
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertForPreTraining
from domainbert.train.optim import Lamb, get_lr, param_groups
from domainbert.train.pretrain import (
    RECIPE_EXTRA,
    PretrainArgs,
    TrainingError,
    checkpoint_dirs,
    evaluate,
    fit,
    load_checkpoint,
)

T = 16


class IndexedSource:
    """Sample i is a fixed function of i: [CLS] A [SEP] B [SEP] with ~15% labelled positions."""

    def __init__(self, vocab_size: int = 99, repeat: int | None = None) -> None:
        self.vocab_size, self.repeat = vocab_size, repeat
        self.served: list[int] = []

    def sample(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i if self.repeat is None else i % self.repeat)
        ids = torch.randint(5, self.vocab_size, (T,), generator=g)
        ids[0], ids[7], ids[-1] = 2, 3, 3
        labels = torch.full((T,), -100)
        pos = torch.tensor([2, 5, 9, 12])
        labels[pos] = ids[pos]
        masked = ids.clone()
        masked[pos] = 4
        types = torch.zeros(T, dtype=torch.long)
        types[8:] = 1
        return {"input_ids": masked, "token_type_ids": types, "attention_mask": torch.ones(T, dtype=torch.long),
                "labels": labels, "next_sentence_label": torch.tensor(int(torch.rand(1, generator=g) < 0.5))}

    def micro_batches(self, global_batch_size, micro_batch_size, start_sample, rank, world_size):
        per_rank = global_batch_size // world_size
        step_start = start_sample
        while True:
            first = step_start + rank * per_rank
            for i in range(first, first + per_rank, micro_batch_size):
                self.served += list(range(i, i + micro_batch_size))
                rows = [self.sample(j) for j in range(i, i + micro_batch_size)]
                yield {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
            step_start += global_batch_size


def tiny_model(seed: int = 0) -> BertForPreTraining:
    torch.manual_seed(seed)
    return BertForPreTraining(BertConfig.preset("tiny"))


def args(**kw) -> PretrainArgs:
    base = dict(max_steps=20, global_batch_size=8, micro_batch_size=4, learning_rate=1e-3, warmup=0.1,
                precision="fp32", save_every=5, keep_last=2, log_every=5)
    return PretrainArgs(**{**base, **kw})


def test_lr_schedule_warms_up_linearly_then_decays_to_zero():
    lrs = [get_lr(s, 100, 1e-3, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))
    assert get_lr(100, 100, 1e-3, 0.1) == 0.0
    assert get_lr(4, 100, 1e-3, 5) == pytest.approx(1e-3)  # warmup given in steps


def test_warmup_stable_decay_holds_the_peak_then_decays_over_the_last_share():
    lrs = [get_lr(s, 100, 1e-3, 0.1, decay=0.25) for s in range(101)]
    assert lrs[9] == pytest.approx(1e-3)
    assert all(x == pytest.approx(1e-3) for x in lrs[9:76])  # held at the peak until the last 25 steps
    assert all(a > b for a, b in zip(lrs[75:], lrs[76:]))
    assert lrs[88] == pytest.approx(1e-3 * 12 / 25) and lrs[100] == 0.0
    assert [get_lr(s, 100, 1e-3, 0.1, decay=1.0) for s in range(100)] == [get_lr(s, 100, 1e-3, 0.1) for s in range(100)]
    with pytest.raises(ConfigError, match="decay"):
        args(decay=0.0)


def test_dropout_while_pretraining_leaves_the_config_and_export_at_berts(tmp_path):
    model = tiny_model()
    assert model.config.hidden_dropout_prob == 0.1
    fit(model, IndexedSource(), args(max_steps=2, dropout=0.0), tmp_path, progress=False)
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.0}
    assert {m.dropout_p for m in model.modules() if hasattr(m, "dropout_p")} == {0.0}
    model.train()
    batch = next(IndexedSource().micro_batches(4, 4, 0, 0, 1))
    with torch.no_grad():  # no dropout: two training-mode passes agree exactly
        assert torch.equal(model(**batch).prediction_logits, model(**batch).prediction_logits)
    assert model.config.hidden_dropout_prob == 0.1 and model.config.attention_probs_dropout_prob == 0.1
    assert load_checkpoint(checkpoint_dirs(tmp_path)[-1])["config"]["hidden_dropout_prob"] == 0.1
    with pytest.raises(ConfigError, match="dropout"):
        args(dropout=1.5)
    with pytest.raises(ConfigError, match=r"dropout must be a number or null \(the model config's\)"):
        args(dropout="0.1")  # a recipe's quoted value is refused by its type, before any range check


def test_weight_decay_spares_layernorm_and_biases():
    model = tiny_model()
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("LayerNorm" not in names[id(p)] and not names[id(p)].endswith("bias") for p in decay["params"])
    assert all("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias") for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01


def test_lamb_update_is_adam_scaled_by_the_trust_ratio_where_weights_decay():
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))
    w0, b0 = w.detach().clone(), b.detach().clone()
    w.grad, b.grad = torch.randn(5, 3) * 0.1, torch.randn(3) * 0.1  # global norm below 1: not pre-normalised
    Lamb([{"params": [w], "weight_decay": 0.01}, {"params": [b], "weight_decay": 0.0}], lr=0.1, eps=1e-6).step()
    adam_w = w.grad / (w.grad.abs() + 1e-6) + 0.01 * w0  # first step: m_hat = g, v_hat = g^2
    torch.testing.assert_close(w.detach(), w0 - 0.1 * (w0.norm() / adam_w.norm()) * adam_w)
    torch.testing.assert_close(b.detach(), b0 - 0.1 * b.grad / (b.grad.abs() + 1e-6))  # no trust ratio


def _timm_lamb():
    """timm's Lamb, loaded from its file: importing the timm package needs torchvision, which this
    torch build has none of (.ci/setup installs timm without dependencies for this test)."""
    import importlib
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("timm")
    assert spec is not None and spec.origin, "timm is missing: pip install --no-deps timm==1.0.31 (see .ci/setup)"
    package = types.ModuleType("_timm_optim")
    package.__path__ = [str(Path(spec.origin).parent / "optim")]
    sys.modules.setdefault("_timm_optim", package)
    return importlib.import_module("_timm_optim.lamb").Lamb


def test_lamb_matches_timm_step_for_step():
    """NVIDIA's LAMB as timm restates it (apex FusedLAMB): global gradient pre-normalisation, the trust
    ratio only where weights decay (LayerNorm and biases excluded), bias-corrected moments."""
    reference = tiny_model()
    ours = tiny_model()
    ours.load_state_dict(reference.state_dict())
    timm_opt = _timm_lamb()(param_groups(reference, 0.01), lr=2e-2, betas=(0.9, 0.999), eps=1e-6, max_grad_norm=1.0)
    our_opt = Lamb(param_groups(ours, 0.01), lr=2e-2, betas=(0.9, 0.999), eps=1e-6, max_grad_norm=1.0)
    source = IndexedSource()
    for step, batch in zip(range(6), source.micro_batches(8, 8, 0, 0, 1)):
        for model, opt in ((reference, timm_opt), (ours, our_opt)):
            torch.manual_seed(step)  # the same dropout masks for both
            opt.zero_grad()
            loss = model(**batch).loss * (30.0 if step % 2 else 1.0)  # every other step far above norm 1
            loss.backward()
            opt.step()
        for (name, p), q in zip(reference.named_parameters(), ours.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=f"step {step}: {name}")


def test_overfits_a_repeated_small_batch(tmp_path):
    model = tiny_model()
    history = fit(model, IndexedSource(repeat=8), args(max_steps=60, learning_rate=3e-3, warmup=5, save_every=100),
                  tmp_path, progress=False)
    first, last = history[0].loss, sum(m.loss for m in history[-5:]) / 5
    assert last < first / 2, (first, last)
    assert history[-1].mlm_accuracy > 0.1  # chance is 1/99


def test_resume_is_bit_identical_and_never_replays_data(tmp_path):
    straight = fit(tiny_model(), IndexedSource(), args(), tmp_path / "a", progress=False)
    source = IndexedSource()
    first = fit(tiny_model(), source, args(), tmp_path / "b", stop_after=10, progress=False)
    assert [c.name for c in checkpoint_dirs(tmp_path / "b")] == ["step-00000005", "step-00000010"]
    served_before = list(source.served)
    resumed_source = IndexedSource()
    second = fit(tiny_model(seed=123), resumed_source, args(), tmp_path / "b", progress=False)
    assert [m.loss for m in first + second] == [m.loss for m in straight]  # bit-identical
    assert min(resumed_source.served) == 10 * 8 and not set(resumed_source.served) & set(served_before)
    assert load_checkpoint(checkpoint_dirs(tmp_path / "b")[-1])["consumed_samples"] == 20 * 8
    assert len(checkpoint_dirs(tmp_path / "b")) == 2  # keep_last


def test_a_half_written_checkpoint_is_ignored_on_resume(tmp_path):
    fit(tiny_model(), IndexedSource(), args(), tmp_path, stop_after=5, progress=False)
    crashed = tmp_path / "checkpoints" / ".tmp-step-00000010-999"
    crashed.mkdir()
    (crashed / "training_state.pt").write_bytes(b"partial")
    assert [c.name for c in checkpoint_dirs(tmp_path)] == ["step-00000005"]
    rest = fit(tiny_model(), IndexedSource(), args(), tmp_path, progress=False)
    assert rest[0].step == 6


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path):
    model = tiny_model()
    fit(model, IndexedSource(), args(), tmp_path, stop_after=5, progress=False)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.fill_(float("nan"))
    broken = tmp_path / "checkpoints" / "step-00000005"
    state = load_checkpoint(broken)
    state["model"] = model.state_dict()
    torch.save(state, broken / "training_state.pt")
    with pytest.raises(TrainingError, match="loss became nan at step 6; the last good checkpoint"):
        fit(tiny_model(), IndexedSource(), args(), tmp_path, progress=False)


def test_indivisible_batch_and_bad_settings_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="global_batch_size 10 is not divisible by micro_batch_size 4 x world size 1"):
        args(global_batch_size=10)
    with pytest.raises(ConfigError, match="use a global batch of 16 or 24"):
        PretrainArgs(global_batch_size=20, micro_batch_size=4, world_size=2)
    with pytest.raises(ConfigError, match="optimizer 'sgd'"):
        args(optimizer="sgd")
    with pytest.raises(ConfigError, match="warmup 30"):
        args(warmup=30)
    # 1.0 could mean one step or all of them: refused, and so is any float of 1 or more.
    with pytest.raises(ConfigError, match="warmup 1.0 is ambiguous: write 1 for 1 step"):
        args(warmup=1.0)
    with pytest.raises(ConfigError, match="warmup 2.5 is neither"):
        args(warmup=2.5)
    assert args(warmup=1).warmup == 1 and get_lr(0, 20, 1e-3, 1) == pytest.approx(1e-3)  # an integer: steps


@pytest.mark.slow
def test_compiled_encoder_trains_like_the_eager_one(tmp_path, capsys):
    def no_dropout() -> BertForPreTraining:  # compiled dropout draws its masks differently
        torch.manual_seed(0)
        return BertForPreTraining(BertConfig.preset("tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))

    eager = fit(no_dropout(), IndexedSource(), args(max_steps=3), tmp_path / "eager", progress=False)
    compiled = fit(no_dropout(), IndexedSource(), args(max_steps=3, compile=True), tmp_path / "compiled",
                   progress=False)
    torch.testing.assert_close(torch.tensor([m.loss for m in compiled]), torch.tensor([m.loss for m in eager]),
                               rtol=1e-4, atol=1e-4)
    said = capsys.readouterr().out
    assert said.count("torch.compile: the first") == 1 and "graph break(s) in the encoder" in said
    assert "bert.encoder.layer.0.attention.self.query.weight" in load_checkpoint(
        checkpoint_dirs(tmp_path / "compiled")[-1])["model"]  # names unchanged by compiling


def test_resume_refuses_changed_training_arguments_by_name(tmp_path):
    """A resumed run must keep its schedule and its step-to-sample mapping: another learning rate,
    batch or length is refused with the field names; logging and checkpoint cadence may change."""
    fit(tiny_model(), IndexedSource(), args(), tmp_path, stop_after=5, progress=False)
    with pytest.raises(TrainingError, match=r"global_batch_size: 8 -> 16; learning_rate: 0\.001 -> 0\.002"):
        fit(tiny_model(), IndexedSource(), args(learning_rate=2e-3, global_batch_size=16), tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"max_steps: 20 -> 30; warmup: 0\.1 -> 0\.2"):
        fit(tiny_model(), IndexedSource(), args(max_steps=30, warmup=0.2), tmp_path, progress=False)
    assert [c.name for c in checkpoint_dirs(tmp_path)] == ["step-00000005"]  # refused: nothing written
    rest = fit(tiny_model(), IndexedSource(), args(log_every=2, save_every=7, micro_batch_size=2), tmp_path,
               progress=False)
    assert rest[0].step == 6 and rest[-1].step == 20


def _budget_rank(rank: int, port: int, run_dir: str, queue) -> None:  # runs in a spawned process
    import datetime
    import os
    import time

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=20))
    if rank == 0:  # this rank's clock runs 1000x fast: it alone is past the budget after its first step
        real = time.perf_counter
        start = real()
        time.perf_counter = lambda: start + (real() - start) * 1000
    try:
        hist = fit(tiny_model(), IndexedSource(), args(max_steps=40, world_size=2, save_every=100), Path(run_dir),
                   rank=rank, time_budget_s=5.0, progress=False)
        queue.put((rank, [m.step for m in hist]))
    except Exception as exc:  # a mismatched collective: gloo times out or fails
        queue.put((rank, repr(exc)[:200]))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.distributed
def test_time_budget_stops_every_rank_after_the_same_step(tmp_path):
    """One rank past --max-minutes must not enter the checkpoint's collectives while another runs a
    DDP step: the stop is one decision for all ranks."""
    import multiprocessing
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")  # a forked child of a process that ran OpenMP can hang
    queue = ctx.Queue()
    procs = [ctx.Process(target=_budget_rank, args=(r, port, str(tmp_path), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert isinstance(results[0], list) and results[0] == results[1], results
    assert results[0][-1] < 40  # stopped by the budget, not by max_steps
    assert [c.name for c in checkpoint_dirs(tmp_path)] == [f"step-{results[0][-1]:08d}"]


class UnevenSource(IndexedSource):
    """Micro-batches with 1 and with 8 masked positions per sequence, alternately."""

    def micro_batches(self, global_batch_size, micro_batch_size, start_sample, rank, world_size):
        k = 0
        for batch in super().micro_batches(global_batch_size, micro_batch_size, start_sample, rank, world_size):
            labels = torch.full_like(batch["input_ids"], -100)
            positions = [2] if k % 2 == 0 else [1, 2, 3, 4, 5, 9, 10, 11]
            labels[:, positions] = torch.randint(5, self.vocab_size, (labels.shape[0], len(positions)),
                                                 generator=torch.Generator().manual_seed(k))
            k += 1
            yield {**batch, "labels": labels}


def test_held_out_mlm_loss_and_perplexity_weigh_every_masked_token_alike():
    """And the accuracies are scikit-learn's over every masked token and every sequence."""
    model = tiny_model()
    model.eval()
    source = UnevenSource()
    total, count = 0.0, 0
    mlm_gold, mlm_pred, nsp_gold, nsp_pred = [], [], [], []
    with torch.no_grad():
        for _, batch in zip(range(4), source.micro_batches(4, 4, 0, 0, 1)):
            out = model(**batch)
            selected = batch["labels"] != -100
            total += torch.nn.functional.cross_entropy(out.prediction_logits.float(), batch["labels"][selected],
                                                       reduction="sum").item()
            count += int(selected.sum())
            mlm_gold += batch["labels"][selected].tolist()
            mlm_pred += out.prediction_logits.argmax(-1).tolist()
            nsp_gold += batch["next_sentence_label"].tolist()
            nsp_pred += out.seq_relationship_logits.argmax(-1).tolist()
    scores = evaluate(model, UnevenSource(), 4, 4, "fp32", torch.device("cpu"))
    assert scores["eval_mlm_loss"] == pytest.approx(total / count, rel=1e-6)
    assert scores["eval_perplexity"] == pytest.approx(math.exp(total / count), rel=1e-6)
    assert scores["eval_mlm_accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(mlm_gold, mlm_pred))
    assert scores["eval_nsp_accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(nsp_gold, nsp_pred))


def test_metrics_keep_one_row_per_step_across_a_resume(tmp_path):
    """Rows a killed run logged past its last checkpoint are dropped when the run resumes and replays
    those steps; rows up to a checkpoint are on disk with it."""
    fit(tiny_model(), IndexedSource(), args(log_every=1), tmp_path, stop_after=7, progress=False)
    shutil.rmtree(checkpoint_dirs(tmp_path)[-1])  # as if killed before step 7's checkpoint was saved
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 8, "loss": 1.')  # and in the middle of a row
    fit(tiny_model(), IndexedSource(), args(log_every=1), tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 21))


def test_sinusoidal_position_init_makes_offsets_rotations_at_berts_scale():
    from domainbert.model.configuration import BertConfig as Config
    from domainbert.train.pretrain import new_model

    config = Config.preset("tiny", hidden_size=34, num_attention_heads=2, max_position_embeddings=50)
    model = new_model(config, args(position_init="sinusoidal"))
    table = model.bert.embeddings.position_embeddings.weight.detach().double()
    # sin(a)sin(b) + cos(a)cos(b) = cos(a - b): the dot product of two rows depends only on their offset
    for k in (1, 3, 7):
        dots = (table[:-k] * table[k:]).sum(-1)
        assert torch.allclose(dots, dots[0].expand_as(dots), atol=1e-6), k
    assert table.pow(2).mean().sqrt().item() == pytest.approx(config.initializer_range, rel=1e-3)
    assert "position_embeddings.weight" in dict(model.bert.embeddings.named_parameters())  # still learned
    plain = new_model(config, args())  # BERT's init, as before
    assert plain.bert.embeddings.position_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.2)
    with pytest.raises(ConfigError, match="position_init"):
        args(position_init="rotary")


def test_compile_auto_is_off_on_the_cpu_and_the_flags_and_old_values_map(tmp_path, capsys):
    import argparse

    from domainbert.train.pretrain import configure_pretrain

    assert args().compile == "auto" and args(compile=True).compile == "on" and args(compile=False).compile == "off"
    with pytest.raises(ConfigError, match="compile 'maybe' is not one of auto, on, off"):
        args(compile="maybe")
    parser = argparse.ArgumentParser()
    configure_pretrain(parser)
    base = ["--data", "d", "--out", "o"]
    assert parser.parse_args(base).compile is None  # the recipe's, else auto
    assert parser.parse_args([*base, "--compile"]).compile == "on"
    assert parser.parse_args([*base, "--compile", "auto"]).compile == "auto"
    assert parser.parse_args([*base, "--no-compile"]).compile == "off"
    fit(tiny_model(), IndexedSource(), args(max_steps=2), tmp_path, progress=False)  # auto on the CPU: eager
    assert "torch.compile" not in capsys.readouterr().out


def test_local_attention_init_starts_each_head_on_its_neighbour():
    import math

    from domainbert.model.configuration import BertConfig as Config
    from domainbert.train.pretrain import new_model

    config = Config.preset("tiny", hidden_size=38, num_attention_heads=2, num_hidden_layers=3,
                           max_position_embeddings=61)
    model = new_model(config, args(position_init="sinusoidal", attention_init="local"))
    ids = torch.randint(5, config.vocab_size, (3, 61), generator=torch.Generator().manual_seed(1))
    x = model.bert.embeddings(ids)  # (B, T, H)
    offsets = [-1, 1, -2, 2, -1, 1]  # head after head, layer after layer
    for layer in range(3):
        attention = model.bert.encoder.layer[layer].attention.self
        q = attention.query(x).view(3, 61, 2, 19).transpose(1, 2)  # (B, N, T, D)
        k = attention.key(x).view(3, 61, 2, 19).transpose(1, 2)
        probs = (q @ k.transpose(-1, -2) / math.sqrt(19)).softmax(-1)  # (B, N, T, T)
        for head in range(2):
            delta = offsets[2 * layer + head]
            rows = torch.arange(2, 59)
            on_target = probs[:, head, rows, rows + delta].mean().item()
            assert on_target > 0.5, (layer, head, on_target)  # uniform would be 1/61
            assert probs[:, head, rows].argmax(-1).eq(rows + delta).float().mean() > 0.75
    embeddings = model.bert.embeddings
    assert embeddings.word_embeddings.weight[:, :16].abs().max() == 0  # 8 pairs: dims 0..15 are positions'
    assert embeddings.word_embeddings.weight[:, 16:].std().item() == pytest.approx(0.02, rel=0.2)
    plain = new_model(config, args(position_init="sinusoidal"))  # the same names, shapes, other weights
    assert {n: p.shape for n, p in plain.named_parameters()} == {n: p.shape for n, p in model.named_parameters()}
    assert torch.equal(plain.bert.encoder.layer[0].intermediate.dense.weight,
                       model.bert.encoder.layer[0].intermediate.dense.weight)
    with pytest.raises(ConfigError, match="attention_init"):
        args(attention_init="alibi")


def test_the_schedule_probe_sees_past_warm_up_and_a_short_disturbance(monkeypatch):
    """Steps 1-2 pay for warm-up (2 s), steps 3-5 share the CPU with something else (1.5 s), the
    rest take 0.5 s: the probe must find 0.5 s a step. Timing eight steps and taking the median of
    the last six gave 1.0 s (half the schedule), three steps and the faster of the last two 1.5 s."""
    from types import SimpleNamespace

    import domainbert.train.pretrain as pretrain

    calls = []

    def fake_fit(model, source, probe_args, out, stop_after, **kw):
        calls.append(stop_after)
        times = [2.0, 2.0, 1.5, 1.5, 1.5] + [0.5] * 100
        return [SimpleNamespace(step_seconds=t) for t in times[:stop_after]]

    monkeypatch.setattr(pretrain, "fit", fake_fit)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fitted = pretrain.steps_in_minutes(model, None, args(), 1.0, "cpu")
    assert fitted == int(60 * 0.95 / 0.5)
    assert calls == [3, 10]  # a first estimate (1.5 s), then about PROBE_SECONDS (15 s) of steps
    # with `since`, what ran before (here 30 s) comes off the minutes, and `reserve` is what is kept
    import time

    started = time.perf_counter() - 30.0
    assert pretrain.steps_in_minutes(model, None, args(), 1.0, "cpu", reserve=0.1, since=started) in (
        int(29.9 * 0.9 / 0.5), int(30 * 0.9 / 0.5))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_refit_steps_moves_only_the_end_of_the_peak_and_keeps_warmup_and_decay():
    """A warmup-stable-decay schedule is refitted to the time left from the recent pace, while the
    rate is at its peak; the warmup keeps its end, a decay once begun its length, and a schedule that
    decays over all its steps is never refitted (its rate depends on the count at every step)."""
    from domainbert.train.optim import warmup_steps
    from domainbert.train.pretrain import refit_steps

    wsd = args(max_steps=100, warmup=0.1, decay=0.25)
    paces = [(10, 0.0), (20, 1.0), (30, 2.0)]  # 0.1 s a step
    assert refit_steps(30, wsd, paces, 10.0) == 130  # 100 more steps fit in 10 s
    assert refit_steps(30, wsd, paces, 3.0) == 60  # fewer: the decay starts sooner
    assert refit_steps(30, wsd, paces, 0.0) == 31  # none: end at the next step
    assert refit_steps(30, args(max_steps=100, warmup=0.1), paces, 10.0) == 100  # decay over all steps
    assert refit_steps(8, wsd, [(0, 0.0), (8, 0.8)], 10.0) == 100  # still warming up
    assert refit_steps(80, wsd, [(50, 0.0), (80, 3.0)], 10.0) == 100  # the decay has begun (at 75)
    assert refit_steps(30, wsd, [(20, 0.0), (30, 1.0)], 10.0) == 100  # fewer than 20 steps timed
    longest = refit_steps(30, wsd, paces, 1e6)
    assert longest > 100 and warmup_steps(0.1, longest) <= 30  # the warmup ends where it ended
    # the pace is the recent one: the last 200 steps, not the whole run's
    assert refit_steps(500, args(max_steps=1000, warmup=0.1, decay=0.25),
                       [(0, 0.0), (300, 30.0), (500, 130.0)], 50.0) == 600


def test_refit_is_open_only_between_warmup_and_decay():
    """``refit_open`` gates the ranks' all-reduce of the refitted count under torchrun: it must be
    true exactly where ``refit_steps`` can change the count, so no rank skips a collective another
    joins, and none is spent where the answer is fixed (warmup, decay, a schedule decaying throughout)."""
    from domainbert.train.pretrain import refit_open, refit_steps

    wsd = args(max_steps=97, warmup=0.1, decay=0.25)
    for step in range(1, 97):
        paces = [(0, 0.0), (step, step * 0.01)] if step >= 20 else [(0, 0.0), (step, 1.0)]
        moved = refit_steps(step, wsd, paces, 1e3) != wsd.max_steps
        assert refit_open(step, wsd) == (step >= 10 and step < 73), step
        assert not moved or refit_open(step, wsd), step
    assert not any(refit_open(step, args(max_steps=97, warmup=0.1)) for step in range(97))


def test_a_schedule_refitted_to_the_time_still_decays_to_zero_and_resumes_with_its_count(tmp_path):
    """Told it has time for more steps than fitted, fit lengthens the peak (up to most_steps), then
    decays over the new count's last share down to zero; its checkpoint keeps the new count, and a
    resume with the first count continues that schedule instead of refusing it."""
    wsd = args(max_steps=40, warmup=0.1, decay=0.25, log_every=5, save_every=10)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "run_config.json").write_text(json.dumps({"args": wsd.to_dict()}))  # what the card reads
    history = fit(tiny_model(), IndexedSource(), wsd, tmp_path, progress=False,
                  time_left=lambda: 1e6, most_steps=60)
    assert history[-1].step == 60
    assert [round(m.lr / 1e-3, 3) for m in history[-3:]] == [0.2, 0.133, 0.067]  # 3, 2, 1 of 15 decay steps
    assert max(m.lr for m in history) == pytest.approx(1e-3)
    assert load_checkpoint(checkpoint_dirs(tmp_path)[-1])["args"]["max_steps"] == 60
    assert json.loads((tmp_path / "run_config.json").read_text())["args"]["max_steps"] == 60
    resumed = tmp_path / "resumed"
    first = fit(tiny_model(), IndexedSource(), wsd, resumed, progress=False, stop_after=30, time_left=lambda: 1e6,
                most_steps=60)  # refitted at step 20, stopped at 30
    with pytest.raises(TrainingError, match=r"max_steps: 60 -> 50"):  # another count is still refused
        fit(tiny_model(), IndexedSource(), args(max_steps=50, warmup=0.1, decay=0.25, log_every=5, save_every=10),
            resumed, progress=False)
    rest = fit(tiny_model(), IndexedSource(), wsd, resumed, progress=False)  # the first count, no time
    assert rest[0].step == 31 and rest[-1].step == 60
    assert [m.loss for m in first + rest] == [m.loss for m in history]  # the same run, resumed exactly


def test_small_cpu_is_mini_cpu_with_an_hours_steps():
    """small-cpu starts from mini-cpu (the hour measured both shapes, and mini won) and sets only its
    schedule and cadence; a training setting added to small-cpu alone fails here."""
    from domainbert.train.args import load_recipe

    mini, hour = load_recipe("mini-cpu"), load_recipe("small-cpu")
    cadence = {"max_steps", "save_every", "eval_every"}
    assert set(mini) == set(hour)
    assert {k: v for k, v in mini.items() if k not in cadence} == {k: v for k, v in hour.items() if k not in cadence}
    assert hour["max_steps"] > mini["max_steps"]


def test_a_recipe_starts_from_its_base_and_overrides_what_it_sets(tmp_path):
    """``base:`` resolves a shipped name or a file beside the recipe, through a chain; the recipe's own
    options win, model_overrides merge key by key, and no ``base`` key reaches PretrainArgs."""
    from domainbert.train.args import load_recipe

    (tmp_path / "one.yaml").write_text("base: tiny\nlearning_rate: 0.003\nmodel_overrides: {hidden_size: 24, "
                                       "num_attention_heads: 3}\n")
    (tmp_path / "two.yaml").write_text("base: one.yaml\nmax_steps: 7\nmodel_overrides: {hidden_size: 30}\n")
    tiny = load_recipe("tiny")
    two = load_recipe(tmp_path / "two.yaml")
    assert "base" not in two
    assert two["max_steps"] == 7 and two["learning_rate"] == 0.003
    assert two["model_overrides"] == {**(tiny.get("model_overrides") or {}), "hidden_size": 30,
                                      "num_attention_heads": 3}
    own = ("max_steps", "learning_rate", "model_overrides")
    assert {k: v for k, v in two.items() if k not in own} == {k: v for k, v in tiny.items() if k not in own}
    PretrainArgs(**{k: v for k, v in two.items() if k not in RECIPE_EXTRA})  # validates as a run's arguments


def test_pubmedbert_phase2_keeps_phase1s_optimizer_settings():
    from domainbert.train.args import load_recipe

    one, two = load_recipe("pubmedbert-base"), load_recipe("pubmedbert-base-phase2")
    same = ("model", "global_batch_size", "optimizer", "learning_rate", "warmup", "weight_decay", "max_grad_norm")
    assert {k: two[k] for k in same} == {k: one[k] for k in same}
    assert (two["max_steps"], two["micro_batch_size"]) == (6250, 16)
