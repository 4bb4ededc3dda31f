"""BERT pretraining (MLM + NSP, or MLM alone): the loop, read top to bottom, and the ``pretrain`` command.

The order of one optimizer step (nanoGPT's and litgpt's loop, BERT's objective):

1. the learning rate comes from the pure function ``optim.get_lr(step)``;
2. ``accumulation`` micro-batches run forward under the chosen precision and backward, each loss
   divided by ``accumulation`` (under DDP, gradients are synchronised on the last one only);
3. gradients are clipped to norm 1.0, the optimizer steps, gradients are cleared;
4. metrics (averaged over all ranks) go to ``metrics.jsonl``, TensorBoard and the progress bar;
   every ``eval_every`` steps the held-out data is scored; every ``save_every`` steps and at the end
   a checkpoint is written.

A checkpoint (:mod:`domainbert.train.state`) holds the model, the optimizer state, the step, the
number of samples consumed (the data position) and every RNG state of every rank. Resuming
restores all of it and starts the data at the consumed-sample offset (it never replays batches): on
the CPU in fp32 with one process, the losses after a resume are bit-identical to an uninterrupted
run's (tests/test_pretrain.py).

Data: a ``BatchSource`` yields micro-batches; :class:`domainbert.data.loader.PretrainingDataset` is
the one that reads what ``domainbert data prepare`` wrote (``open_data``), in the order its class
docstring states: step s consumes samples [s*G, (s+1)*G) of the shuffled sample sequence (G = global
batch); rank r takes the r-th of ``world_size`` equal slices, so N processes see exactly the
batches of one process with N times the accumulation.

The run's arguments and the recipes that set them (YAML, found by name: ``--recipe small-cpu``) are
:mod:`domainbert.train.args`.

Run directory::

    run_config.json       the resolved recipe, model config and data manifest checksum
    tokenizer/            the vocabulary the data was prepared with (for export)
    metrics.jsonl         one JSON object per step (and per evaluation, with "eval": true)
    tensorboard/          the same as TensorBoard events (when tensorboard is installed)
    checkpoints/step-*/   the last ``keep_last`` checkpoints
    export/               the final model as a Hugging Face directory (:mod:`domainbert.train.export`)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch

from domainbert.atomic import atomic_write_json, atomic_write_text, one_writer
from domainbert.data.loader import PretrainingDataset
from domainbert.data.shards import check_manifest, load_manifest
from domainbert.data.tokenization import BertTokenizer
from domainbert.data.vocab import VOCAB_STATS
from domainbert.errors import ConfigError, DataError, TrainingError
from domainbert.model.configuration import PRESETS, BertConfig, parse_overrides
from domainbert.model.hub import add_revision_argument, resolve_model
from domainbert.model.modeling import BertForPreTraining, Packing, local_attention, sinusoidal_positions, to_device
from domainbert.progress import tqdm
from domainbert.train import distributed
from domainbert.train.args import (
    COMPILE_MODES,
    OPTIONAL,
    RECIPE_EXTRA,
    RECIPES,
    PretrainArgs,
    load_recipe,
    recipe_path,
)
from domainbert.train.export import export
from domainbert.train.optim import Lamb, param_groups
from domainbert.train.precision import autocast, resolve_precision
from domainbert.train.schedule import PACE_WINDOW, REFIT_RESERVE, REFITTED, Schedule, refit_open, refit_steps
from domainbert.train.state import (
    checkpoint_dirs,
    gather_rng_states,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)

# PretrainArgs and the recipes live in domainbert.train.args; they are named here too, as the loop's API.
__all__ = ["PretrainArgs", "BatchSource", "fit", "new_model", "steps_in_minutes", "Schedule", "refit_steps",
           "refit_open", "REFITTED", "REFIT_RESERVE", "PACE_WINDOW",
           "evaluate", "verify_settings", "open_data", "load_recipe",
           "recipe_path", "RECIPES", "RECIPE_EXTRA", "TrainingError", "checkpoint_dirs", "load_checkpoint"]

RUN_CONFIG = "run_config.json"


class BatchSource(Protocol):
    """Where micro-batches come from (the prepared shards, or anything else that yields them)."""

    def micro_batches(self, global_batch_size: int, micro_batch_size: int, start_sample: int,
                      rank: int, world_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Micro-batches for ``rank``, beginning after ``start_sample`` samples (all ranks together)."""
        ...


# ==================================================================================== data
def open_data(data_dir: str | Path, seed: int, config: BertConfig, masked_lm_prob: float | None = None,
              objective: str = "mlm+nsp") -> BatchSource:
    """The reader over ``domainbert data prepare``'s output, checked against the model first
    (``masked_lm_prob``: the run's masking rate, when it sets one; ``objective``: the run's, which
    decides whether batches carry next-sentence labels)."""
    dataset = PretrainingDataset(data_dir, seed=seed, masked_lm_prob=masked_lm_prob, objective=objective)
    check_manifest(dataset.manifest, vocab_size=config.vocab_size,
                   max_position_embeddings=config.max_position_embeddings,
                   type_vocab_size=config.type_vocab_size)
    if dataset.num_samples == 0:
        raise DataError(f"{data_dir} holds no samples: prepare it from a larger corpus")
    return dataset


# ==================================================================================== the loop
@dataclass
class StepMetrics:
    step: int
    loss: float
    mlm_loss: float
    nsp_loss: float | None
    """None under ``--objective mlm`` (no NSP loss)."""
    mlm_accuracy: float | None
    """Over the step's global batch; measured on logging steps only (an argmax over the vocabulary
    at every masked position costs ~4% of a small model's step), None on the others."""
    nsp_accuracy: float | None
    lr: float
    tokens_per_s: float
    consumed_samples: int
    step_seconds: float


def new_model(config: BertConfig, args: PretrainArgs) -> BertForPreTraining:
    """A model to pretrain from scratch: BERT's init from ``args.seed``, the position table as
    ``args.position_init`` and ``args.attention_init`` say."""
    torch.manual_seed(args.seed)
    model = BertForPreTraining(config)
    if args.position_init == "sinusoidal":
        sinusoidal_positions(model, config.initializer_range)
    if args.attention_init == "local":
        local_attention(model, seed=args.seed)
    return model


def build_optimizer(model: torch.nn.Module, args: PretrainArgs) -> torch.optim.Optimizer:
    groups = param_groups(model, args.weight_decay)
    if args.optimizer == "lamb":
        # fit() clips the global gradient norm at max_grad_norm before every step, which is LAMB's
        # pre-normalisation: the optimizer need not compute the norm a second time.
        return Lamb(groups, lr=args.learning_rate, betas=args.betas, eps=args.eps, max_grad_norm=None)
    # The fused kernel updates all tensors in one pass: on 2 CPU cores 4-5x faster than the foreach
    # one for the small model (measured: 10 vs 45 ms a step), ~5% of a whole training step.
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=args.betas, eps=args.eps, fused=True)


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Use dropout ``p`` in every dropout layer and attention of ``model`` (its config is unchanged)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        if hasattr(module, "dropout_p"):
            module.dropout_p = p


def _trim_padding(batch: dict[str, torch.Tensor], device: torch.device, unpad: bool = False) -> dict[str, Any]:
    """Drop the columns that are padding in every row (dynamic padding), then move to ``device``;
    with ``unpad``, a batch that still has padding gets its :class:`Packing`; the labelled positions
    come as ``mlm_positions``: both found on the host, so that the step does not wait for the GPU."""
    n = int(batch["attention_mask"].sum(1).max())
    trimmed = {k: (v[:, :n] if v.dim() == 2 else v) for k, v in batch.items()}
    moved: dict[str, Any] = {k: to_device(v, device) for k, v in trimmed.items()}
    packing = Packing.for_batch(trimmed["attention_mask"], device) if unpad else None
    if packing is not None:
        moved["packing"] = packing
    if "labels" in trimmed:  # the MLM positions, found here rather than by the model on the device
        moved["mlm_positions"] = to_device((trimmed["labels"].reshape(-1) != -100).nonzero().squeeze(1), device)
    return moved


def _batch_sums(out: Any, batch: dict[str, torch.Tensor], accuracy: bool = True) -> torch.Tensor:
    """(loss, mlm loss, nsp loss, mlm hits, mlm count, nsp hits, nsp count) of one micro-batch.

    Without ``accuracy`` the four counts are 0 (the argmaxes are skipped). The sums stay on the
    model's device (float64), so that a GPU step is not stopped once per micro-batch to copy them.
    """
    nsp_loss = out.nsp_loss.detach() if out.nsp_loss is not None else torch.zeros_like(out.mlm_loss.detach())
    losses = torch.stack([out.loss.detach(), out.mlm_loss.detach(), nsp_loss]).double()
    if not accuracy:
        return torch.cat([losses, losses.new_zeros(4)])
    selected = batch["labels"] != -100
    labels = batch["labels"][selected]
    logits = out.prediction_logits if out.prediction_logits.dim() == 2 else out.prediction_logits[selected]
    nsp = batch.get("next_sentence_label")  # none under --objective mlm: no NSP counts
    nsp_hits = (out.seq_relationship_logits.argmax(-1) == nsp).sum() if nsp is not None else selected.new_zeros(())
    counts = torch.stack([(logits.argmax(-1) == labels).sum(), selected.sum(), nsp_hits,
                          torch.tensor(nsp.numel() if nsp is not None else 0, device=selected.device)])
    return torch.cat([losses, counts.double()])


@torch.no_grad()
def evaluate(model: BertForPreTraining, source: BatchSource, batches: int, micro_batch_size: int,
             precision: str, device: torch.device, rank: int = 0, world_size: int = 1) -> dict[str, float]:
    """MLM loss, accuracy and perplexity, and NSP accuracy, on the first ``batches`` micro-batches.

    The MLM loss (and so the perplexity) is the mean over every masked token of all the batches and
    ranks, not a mean of batch means: batches with more masked tokens weigh more. NSP is a mean over
    sequences (every micro-batch holds as many).
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(8, dtype=torch.float64, device=device)  # _batch_sums, then [7]: token-summed MLM loss
    it = source.micro_batches(micro_batch_size * world_size, micro_batch_size, 0, rank, world_size)
    for _ in range(batches):
        batch = _trim_padding(next(it), device)
        with autocast(precision, device):
            out = model(**batch)
        sums = _batch_sums(out, batch)
        totals[:7] += sums
        totals[7] += out.mlm_loss.detach().double() * sums[4]  # the batch's mean x its masked tokens
    totals = distributed.all_reduce_mean(totals).cpu()
    model.train(was_training)
    mlm_loss = totals[7].item() / max(1.0, totals[4].item())
    nsp_loss = totals[2].item() / batches
    return {"eval_loss": mlm_loss + nsp_loss, "eval_mlm_loss": mlm_loss,
            "eval_mlm_accuracy": totals[3].item() / max(1.0, totals[4].item()),
            "eval_perplexity": math.exp(min(mlm_loss, 50.0)),
            "eval_nsp_accuracy": totals[5].item() / totals[6].item() if totals[6] > 0 else None}


class _Logger:
    """metrics.jsonl always; TensorBoard events when the package is installed (rank 0 only).

    A run resumed from the checkpoint of step ``resume_step`` first drops the rows (and TensorBoard
    events) of later steps, which a killed run logged but will now replay: the file holds one row
    per step (and per evaluation), whatever was interrupted.
    """

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int = 0) -> None:
        path = run_dir / "metrics.jsonl"
        if enabled and path.is_file():
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the last line of a run killed while writing it
                    continue
                if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= resume_step:
                    kept.append(line + "\n")
            atomic_write_text(path, "".join(kept))
        self.file = path.open("a", encoding="utf-8") if enabled else None
        self.tb = None
        if enabled:
            try:  # an optional extra: logs only when it is installed
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)
            except ImportError:
                print("note: `pip install tensorboard` for TensorBoard logs; metrics.jsonl is written")

    def log(self, step: int, values: dict[str, Any], flush: bool) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k.replace("eval_", "eval/") if k.startswith("eval_") else f"train/{k}", v, step)
        if flush:
            self.file.flush()
            if self.tb is not None:
                self.tb.flush()

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
            if self.tb is not None:
                self.tb.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def fit(model: BertForPreTraining, source: BatchSource, args: PretrainArgs, run_dir: Path, *,
        eval_source: BatchSource | None = None, resume: bool = True, rank: int = 0,
        device: torch.device | str = "cpu", stop_after: int | None = None, time_budget_s: float | None = None,
        progress: bool = True, on_step: Callable[[StepMetrics], bool | None] | None = None,
        time_left: Callable[[], float] | None = None, most_steps: int | None = None) -> list[StepMetrics]:
    """Pretrain ``model`` on ``source`` until ``args.max_steps``; returns this call's step metrics.

    With ``resume`` and a checkpoint in ``run_dir``, continues from the newest one exactly.
    ``stop_after`` (steps) and ``time_budget_s`` (seconds) end this call early with a checkpoint;
    the learning-rate schedule still spans ``max_steps``, and a later call resumes; under several
    processes the time budget ends every rank after the same step (the first rank past it decides).
    ``on_step`` is called with each step's metrics (the global batch's, the same on every rank) and
    ends the run (with a checkpoint) when it returns True; benchmarks use it to evaluate over
    wall-clock time. Under several processes it must decide from those metrics alone.

    ``time_left`` (seconds the schedule has left, asked at sync steps) refits a warmup-stable-decay
    schedule to the time while the rate is at its peak (never past ``most_steps``): the run's
    :class:`~domainbert.train.schedule.Schedule`. The refitted step count is kept in the checkpoints,
    and a resume continues with it.
    """
    device = torch.device(device)
    opened = getattr(source, "objective", args.objective)  # what its batches carry (next-sentence labels or not)
    if opened != args.objective:
        raise ConfigError(f"the data was opened for the {opened} objective and the run is {args.objective}: "
                          f"open it with open_data(..., objective={args.objective!r})")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed + rank)
    random.seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    model.to(device)
    if args.objective == "mlm":  # no loss reaches the NSP head and the pooler under it: frozen, never stepped
        for p in (*model.bert.pooler.parameters(), *model.cls.seq_relationship.parameters()):
            p.requires_grad_(False)
    optimizer = build_optimizer(model, args)
    args, schedule, step, consumed = _start(model, optimizer, args, run_dir if resume else None, rank,
                                            budget_s=time_budget_s, time_left=time_left, most_steps=most_steps)
    precision = resolve_precision(args.precision, device)
    ddp_model, compiled = _training_model(model, args, device)
    batches = source.micro_batches(args.global_batch_size, args.micro_batch_size, consumed, rank, args.world_size)
    stop_at = None if stop_after is None else step + stop_after
    end = args.max_steps if stop_at is None else min(args.max_steps, stop_at)
    report = _Report(run_dir, rank == 0, step, args.max_steps, progress, on_step, compiled)
    model.train()
    schedule.start(step)
    try:
        while step < end:
            lr = schedule.lr(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            measure = (step + 1) % args.log_every == 0 or step + 1 == end
            totals, tokens = _accumulate(ddp_model, batches, args, precision, device, measure)
            if schedule.over_budget():  # travels in the sync all-reduce: every rank stops after the same step
                totals[7] = 1.0
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            consumed += args.global_batch_size
            report.pending.append((step, lr, tokens, time.perf_counter() - t0, totals))
            evaluating = eval_source is not None and args.eval_every and (step % args.eval_every == 0 or step == end)
            saving = step % args.save_every == 0 or step == end
            if not (measure or evaluating or saving or step == end or on_step is not None):
                continue  # the step's figures stay on the device until the next sync step
            over_time = report.sync(step, consumed, args, device, measure)
            if not over_time and step < end and schedule.refit(step, device, args.world_size):
                args = replace(args, max_steps=schedule.max_steps)
                end = args.max_steps if stop_at is None else min(args.max_steps, stop_at)
                report.bar.total = args.max_steps
            if over_time:
                end = step
                evaluating, saving = eval_source is not None and bool(args.eval_every), True
            if evaluating:
                scores = evaluate(model, eval_source, args.eval_batches, args.micro_batch_size, precision, device,
                                  rank, args.world_size)
                report.logger.log(step, {"eval": True, **scores}, flush=True)
            if saving:
                _save(run_dir, step, model, optimizer, consumed, args, schedule, report.logger, rank == 0)
    finally:
        report.close()
    return report.history


def _start(model: BertForPreTraining, optimizer: torch.optim.Optimizer, args: PretrainArgs, run_dir: Path | None,
           rank: int, **schedule: Any) -> tuple[PretrainArgs, Schedule, int, int]:
    """The run's arguments, schedule, step and consumed samples: from the newest checkpoint in
    ``run_dir`` when it has one (model, optimizer and this rank's RNG states restored; changed
    arguments refused), else from the start."""
    existing = checkpoint_dirs(run_dir) if run_dir is not None else []
    if not existing:
        fitted, args = Schedule.for_run(args, **schedule)
        return args, fitted, 0, 0
    state = load_checkpoint(existing[-1])
    if state["config"] != model.config.to_dict():
        raise TrainingError(f"{existing[-1]} was written for another model config: use a new run "
                            "directory or the same model settings")
    stored = state.get("args", {})
    fitted, args = Schedule.for_run(args, stored, **schedule)
    changed = args.resume_changes(stored)
    if changed:
        raise TrainingError(f"{existing[-1]} was written with other training arguments ({'; '.join(changed)}): "
                            "resume with the run's own settings (its run_config.json), or pass a new --out")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_states(state["rng"][rank % len(state["rng"])])
    return args, fitted, state["step"], state["consumed_samples"]


def _training_model(model: BertForPreTraining, args: PretrainArgs, device: torch.device) -> tuple[Any, bool]:
    """Pretraining dropout, a compiled encoder and DDP, as ``args`` say: the module a step calls, and
    whether the encoder is compiled."""
    if args.dropout is not None:
        set_dropout(model, args.dropout)
    compiled = distributed.compiling(args.compile, device)
    if compiled:
        model.bert.encoder.compile(dynamic=True)  # the MLM gather stays eager: its shape is data-dependent
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if args.world_size > 1 else model
    return wrapped, compiled


def _accumulate(ddp_model: Any, batches: Iterator[dict[str, torch.Tensor]], args: PretrainArgs, precision: str,
                device: torch.device, measure: bool) -> tuple[torch.Tensor, int]:
    """Forward and backward over one step's micro-batches (under DDP, gradients are synchronised on the
    last): their summed figures (:func:`_batch_sums`, slot 7 free for the time-budget flag) and tokens."""
    totals = torch.zeros(8, dtype=torch.float64, device=device)
    tokens = 0
    for micro in range(args.accumulation):
        host_batch = next(batches)
        tokens += int(host_batch["attention_mask"].sum())
        batch = _trim_padding(host_batch, device, args.unpad)
        last = micro == args.accumulation - 1
        with (ddp_model.no_sync() if args.world_size > 1 and not last else contextlib.nullcontext()):
            with autocast(precision, device):
                out = ddp_model(**batch)
            (out.loss / args.accumulation).backward()
        totals[:7] += _batch_sums(out, batch, accuracy=measure)
    return totals, tokens


class _Report:
    """The steps since the last sync step, and where their figures go at a sync step: one all-reduce
    and one copy for all of them, then ``metrics.jsonl`` and TensorBoard (:class:`_Logger`), the
    progress bar, the history ``fit`` returns, and ``on_step``."""

    def __init__(self, run_dir: Path, main_process: bool, step: int, max_steps: int, progress: bool,
                 on_step: Callable[[StepMetrics], bool | None] | None, compiled: bool) -> None:
        self.run_dir, self.on_step, self.compiled = run_dir, on_step, compiled
        self.logger = _Logger(run_dir, main_process, resume_step=step)
        self.bar = tqdm(total=max_steps, initial=step, desc="pretraining", disable=not (progress and main_process))
        self.history: list[StepMetrics] = []
        self.pending: list[tuple[int, float, int, float, torch.Tensor]] = []  # (step, lr, tokens, host s, sums)
        self.shown: dict[str, str] = {}  # the last measured accuracies, for the progress bar
        self.report_compile = compiled and main_process
        self.interval_start = time.perf_counter()

    def sync(self, step: int, consumed: int, args: PretrainArgs, device: torch.device, measure: bool) -> bool:
        """Report the pending steps (``measure``: the last one measured accuracies); True when a rank is
        past the time budget or ``on_step`` asks to stop."""
        sums = distributed.all_reduce_mean(torch.stack([p[-1] for p in self.pending])).cpu()  # the one sync
        interval = time.perf_counter() - self.interval_start
        if self.report_compile:
            self.report_compile = False
            breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
            print(f"torch.compile: the first {len(self.pending)} step(s) took {interval:.1f} s with compiling; "
                  f"{breaks} graph break(s) in the encoder", flush=True)
        self.interval_start = time.perf_counter()
        stop = False
        for (at, at_lr, at_tokens, host_s, _), row in zip(self.pending, sums):
            loss = row[0].item() / args.accumulation
            if not math.isfinite(loss):
                good = checkpoint_dirs(self.run_dir)
                where = f"the last good checkpoint is {good[-1]}" if good else "no checkpoint was written yet"
                raise TrainingError(f"the loss became {loss} at step {at}; {where}. Lower the learning "
                                    "rate, raise warmup, or use --precision fp32, then resume")
            # On the CPU a step's host time is its time; a GPU's queued steps share the interval's.
            seconds = host_s if device.type == "cpu" else interval / len(self.pending)
            measured = at == step and measure
            mlm_acc = row[3].item() / row[4].item() if measured and row[4] > 0 else None
            nsp_acc = row[5].item() / row[6].item() if measured and row[6] > 0 else None
            nsp_loss = row[2].item() / args.accumulation if args.objective == "mlm+nsp" else None
            m = StepMetrics(at, loss, row[1].item() / args.accumulation, nsp_loss, mlm_acc, nsp_acc, at_lr,
                            at_tokens * args.world_size / seconds, consumed - (step - at) * args.global_batch_size,
                            seconds)
            self.history.append(m)
            stop = stop or bool(row[7] > 0)  # some rank is past the budget
            if self.on_step is not None and self.on_step(m):
                stop = True
            self.logger.log(at, {k: v for k, v in asdict(m).items() if k != "step"}, flush=at % args.log_every == 0)
            self.bar.update(1)
            if measured:
                self.shown = {"mlm_acc": f"{m.mlm_accuracy:.3f}",
                              **({"nsp_acc": f"{m.nsp_accuracy:.3f}"} if m.nsp_accuracy is not None else {})}
            self.bar.set_postfix(loss=f"{m.loss:.3f}", **self.shown, lr=f"{at_lr:.2e}",
                                 tok_s=f"{m.tokens_per_s:,.0f}")
        self.pending = []
        return stop

    def close(self) -> None:
        self.bar.close()
        self.logger.close()


def _save(run_dir: Path, step: int, model: BertForPreTraining, optimizer: torch.optim.Optimizer, consumed: int,
          args: PretrainArgs, schedule: Schedule, logger: _Logger, main_process: bool) -> None:
    """A checkpoint of ``step`` (every rank gives its RNG states; rank 0 writes), and a refitted step count
    in ``run_config.json``, which the card and a resume read the schedule from."""
    rng = gather_rng_states()
    if main_process:
        logger.flush()  # every row up to the checkpoint is on disk with it (a kill loses none)
        save_checkpoint(run_dir, step, model, optimizer, consumed, {**args.to_dict(), **schedule.stored()}, rng,
                        args.keep_last)
        described = run_dir / RUN_CONFIG
        if schedule.refitted and described.is_file():
            run_config = json.loads(described.read_text(encoding="utf-8"))
            if run_config.get("args", {}).get("max_steps") != schedule.max_steps:
                run_config.setdefault("args", {})["max_steps"] = schedule.max_steps
                atomic_write_json(described, run_config)
    distributed.barrier()


def verify_settings(model: BertForPreTraining, source: BatchSource, args: PretrainArgs, device: torch.device,
                    rank: int) -> float:
    """litgpt's "verifying settings" pass: two micro-batches forward, before any compute is spent.

    Catches shape, vocabulary and memory problems in seconds. It runs in eval mode without
    gradients and reads batches from the start of the data with a separate iterator, so it touches
    no RNG and no training state (a resumed run stays bit-exact).
    """
    model.to(device)
    model.eval()
    losses = []
    it = source.micro_batches(args.global_batch_size, args.micro_batch_size, 0, rank, args.world_size)
    with torch.no_grad():
        for _ in range(2):
            batch = {k: v.to(device) for k, v in next(it).items()}
            top = int(batch["input_ids"].max())
            if top >= model.config.vocab_size:
                raise ConfigError(f"the data holds token id {top} but the model has vocab_size "
                                  f"{model.config.vocab_size}: use the vocabulary the data was prepared with")
            with autocast(args.precision, device):
                losses.append(model(**batch).loss.item())
    model.train()
    if not all(math.isfinite(x) for x in losses):
        raise TrainingError(f"the first batches give a non-finite loss {losses}: check the data and the model")
    return sum(losses) / len(losses)


PROBE_SECONDS = 15.0
"""About how long ``steps_in_minutes`` times steps for."""


def steps_in_minutes(model: BertForPreTraining, source: BatchSource, args: PretrainArgs, minutes: float,
                     device: torch.device | str, rank: int = 0, reserve: float = 0.05,
                     since: float | None = None) -> int:
    """How many optimizer steps of ``args`` fit in ``minutes``, timed on throw-away copies of
    ``model`` (its weights, the optimizer and every RNG are left as they were): three steps give a
    first estimate, then enough steps for about ``PROBE_SECONDS`` (8 to 40) are timed and the median
    of all but the first two taken (they pay for warm-up). ``reserve`` (5%) of the time is kept for
    evaluations and checkpoints. With ``since`` (a ``time.perf_counter()`` reading), the minutes
    count from then: what ran before, the probe included, comes off them. Three steps alone (the
    faster of the last two) over-estimated a 4 x 128 model's step by 22% on an idle machine, and a
    few seconds of other work on the CPU during an 8-step probe cut a 10-minute schedule to 4
    minutes. Under several processes every rank gets the same answer (the step time is all-reduced)."""
    probe = replace(args, max_steps=100, save_every=1000, eval_every=0)
    rng = rng_states()

    def timed(steps: int) -> list[float]:
        with tempfile.TemporaryDirectory() as tmp:
            hist = fit(copy.deepcopy(model), source, probe, Path(tmp), rank=rank, device=device, stop_after=steps,
                       progress=False)
        set_rng_states(rng)
        return [m.step_seconds for m in hist]

    def mean_over_ranks(value: float) -> float:
        return float(distributed.all_reduce_mean(torch.tensor([value], dtype=torch.float64, device=device)).item())

    first = mean_over_ranks(min(timed(3)))  # every rank then times the same number of steps
    steps = min(40, max(8, math.ceil(PROBE_SECONDS / max(first, 1e-6))))
    per_step = mean_over_ranks(statistics.median(timed(steps)[2:]))
    seconds = minutes * 60 - (time.perf_counter() - since if since is not None else 0.0)
    return max(4, int(seconds * (1 - reserve) / per_step))


# ==================================================================================== commands
def _int_or_float(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def configure_pretrain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="directory written by `domainbert data prepare`")
    parser.add_argument("--out", type=Path, required=True, help="run directory (resumed when it has checkpoints)")
    parser.add_argument("--recipe", help=f"a shipped recipe ({', '.join(RECIPES)}) or a YAML file; flags "
                        "override it")
    parser.add_argument("--model", help="preset (tiny, small, base, large), or a model directory or Hugging Face "
                        "Hub repo id to continue from (default: the recipe's, else small)")
    add_revision_argument(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a model config field, e.g. --set hidden_dropout_prob=0 (repeatable)")
    parser.add_argument("--eval-data", type=Path, help="held-out prepared data for periodic evaluation")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run directory")
    parser.add_argument("--max-minutes", type=float,
                        help="stop (with a checkpoint) after this much time; unless --max-steps is given, the "
                        "learning-rate schedule is fitted to it (never longer than the recipe's)")
    parser.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_argument_group("training options (override the recipe)")
    for f in fields(PretrainArgs):
        if f.name in ("world_size", "betas"):
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if f.name == "compile":  # --compile alone means on
            group.add_argument(flag, nargs="?", const="on", choices=COMPILE_MODES, default=None,
                               help="torch.compile the encoder: auto (on for CUDA, off on the CPU), on, off")
            group.add_argument("--no-compile", dest="compile", action="store_const", const="off")
        elif isinstance(f.default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "warmup":  # "500" is steps, "0.1" a share: keep the literal's type
            group.add_argument(flag, type=_int_or_float, default=None, metavar="SHARE_OR_STEPS")
        elif f.default is None:  # an optional number: None keeps what args.OPTIONAL says
            group.add_argument(flag, type=float, default=None, metavar="P", help=f"default: {OPTIONAL[f.name]}")
        else:
            group.add_argument(flag, type=type(f.default), default=None, metavar=f.name.upper())


def resolve_args(ns: argparse.Namespace, world_size: int) -> tuple[PretrainArgs, str, dict[str, Any]]:
    """Recipe, then flags: the run's PretrainArgs, model (preset or directory) and config overrides."""
    recipe = load_recipe(ns.recipe) if ns.recipe else {}
    values = {k: v for k, v in recipe.items() if k not in RECIPE_EXTRA}
    for f in fields(PretrainArgs):
        flag = getattr(ns, f.name, None)
        if flag is not None and f.name != "world_size":
            values[f.name] = flag
    args = PretrainArgs(**values, world_size=world_size)
    model = ns.model or recipe.get("model") or "small"
    overrides = {**(recipe.get("model_overrides") or {}), **parse_overrides(getattr(ns, "overrides", []))}
    return args, model, overrides


#: The prepared data manifest's parts a run keeps in ``run_config.json`` for its model card.
CARD_MANIFEST_KEYS = ("params", "corpus_filter", "decontamination", "inputs", "counts", "corpus_counts")


def describe_run(args: PretrainArgs, model_spec: str, model: BertForPreTraining, data: Path,
                 eval_data: Path | None, precision: str, model_source: Any = None,
                 manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """``run_config.json``: the resolved settings, the model and where it started, and the data (its
    checksum, and what the model card says about the corpus, kept with the run: the data may move).
    ``manifest``: the data's, when the caller has read it already."""
    manifest = manifest if manifest is not None else load_manifest(data)
    return {"args": args.to_dict(), "model": model_spec, "model_config": model.config.to_dict(),
            "model_source": model_source.record() if model_source else {"preset": model_spec},
            "data": str(data), "data_config_checksum": manifest.get("config_checksum"),
            "data_manifest": {k: manifest.get(k) for k in CARD_MANIFEST_KEYS},
            "eval_data": str(eval_data) if eval_data else None, "precision": precision}


def copy_tokenizer(data_dir: Path, run_dir: Path) -> Path:
    """Keep the data's vocabulary in the run, so that export never depends on the data directory."""
    target = run_dir / "tokenizer"
    if not (target / "vocab.txt").is_file():
        vocab_dir = Path(load_manifest(data_dir)["vocab"]["dir"])
        BertTokenizer.from_pretrained(vocab_dir).save_pretrained(target)
        if (vocab_dir / VOCAB_STATS).is_file():  # what `vocab build` measured, for the model card
            shutil.copyfile(vocab_dir / VOCAB_STATS, target / VOCAB_STATS)
    return target


def run_pretrain(ns: argparse.Namespace) -> int:
    dist_info = distributed.setup(ns.device)
    # Rank 0 holds the run directory: a second `pretrain` into the same --out is refused, not interleaved.
    held = one_writer(ns.out, "pretrain", TrainingError) if dist_info.is_main else contextlib.nullcontext()
    try:
        with held:
            return _pretrain(ns, dist_info)
    finally:
        distributed.teardown()


def _pretrain(ns: argparse.Namespace, dist_info: distributed.DistInfo) -> int:
    args, model_spec, overrides = resolve_args(ns, dist_info.world_size)
    manifest = load_manifest(ns.data)
    resuming = bool(checkpoint_dirs(ns.out))
    if ns.no_resume and resuming:
        raise TrainingError(f"{ns.out} already has checkpoints and --no-resume was given: choose a new --out")
    if ns.stop_after is not None and ns.stop_after < 1:
        raise ConfigError(f"--stop-after {ns.stop_after} must be at least 1 step")
    if ns.max_minutes is not None and not ns.max_minutes > 0:
        raise ConfigError(f"--max-minutes {ns.max_minutes} must be positive")
    # fit() refuses changed training arguments or model config against the checkpoint itself (before
    # it writes anything; a resumed run does not rewrite run_config.json); only the command knows the data.
    started_with = json.loads((ns.out / RUN_CONFIG).read_text(encoding="utf-8")) if resuming and (
        ns.out / RUN_CONFIG).is_file() else None
    if started_with is not None and started_with.get("data_config_checksum") != manifest.get("config_checksum"):
        raise TrainingError(f"{ns.out} was started on other prepared data ({started_with.get('data')}, config "
                            f"{str(started_with.get('data_config_checksum'))[:12]}): resume with that --data, or "
                            "pass a new --out")
    model_source = None
    if Path(model_spec).is_dir() or model_spec not in PRESETS:  # a directory, else a Hub repo id
        model_source = resolve_model(model_spec, ns.revision)
        model = BertForPreTraining.from_pretrained(model_source.path, **overrides)
    else:
        sized = {"vocab_size": int(manifest["vocab"]["size"]), **overrides}
        model = new_model(BertConfig.preset(model_spec, **sized), args)
    source = open_data(ns.data, args.seed, model.config, args.masked_lm_prob, args.objective)
    eval_source = open_data(ns.eval_data, args.seed, model.config, objective=args.objective) if ns.eval_data else None
    run_config = describe_run(args, model_spec, model, ns.data, ns.eval_data,
                              resolve_precision(args.precision, dist_info.device), model_source, manifest)
    if dist_info.is_main:
        print(f"pretraining {model.num_parameters():,}-parameter BERT ({model_spec}) for {args.max_steps} steps, "
              f"global batch {args.global_batch_size} = {args.micro_batch_size} x {args.accumulation} x "
              f"{args.world_size} process(es), {run_config['precision']} on {dist_info.device}")
    loss = verify_settings(model, source, args, dist_info.device, dist_info.rank)  # before anything is written
    refit: dict[str, Any] = {}
    if ns.max_minutes and ns.max_steps is None:  # the schedule fits the time (never longer than the recipe's)
        if started_with is not None:  # a resumed run keeps the schedule it was fitted to
            args = replace(args, max_steps=int(started_with["args"]["max_steps"]))
        else:
            fitted = steps_in_minutes(model, source, args, ns.max_minutes, dist_info.device, dist_info.rank)
            if fitted < args.max_steps:
                # refitted to the minutes left while the rate is at its peak (fit(time_left=)), up to the recipe's
                deadline = time.perf_counter() + ns.max_minutes * 60 * (1 - REFIT_RESERVE)
                refit = {"time_left": lambda: deadline - time.perf_counter(), "most_steps": args.max_steps}
                args = replace(args, max_steps=fitted)
                if dist_info.is_main:
                    print(f"the learning-rate schedule fits --max-minutes {ns.max_minutes:g}: {fitted} steps "
                          f"(from about {PROBE_SECONDS:g} s of timed steps); pass --max-steps to keep the "
                          "recipe's and only stop at the time")
        run_config["args"] = args.to_dict()
    if dist_info.is_main:
        print(f"verifying settings: 2 batches ran, loss {loss:.3f}")
        ns.out.mkdir(parents=True, exist_ok=True)
        copy_tokenizer(ns.data, ns.out)
        if not resuming:  # a resumed run keeps the settings it was started with
            atomic_write_json(ns.out / RUN_CONFIG, run_config)
    history = fit(model, source, args, ns.out, eval_source=eval_source, resume=True, rank=dist_info.rank,
                  device=dist_info.device, stop_after=ns.stop_after,
                  time_budget_s=ns.max_minutes * 60 if ns.max_minutes else None, progress=not ns.no_progress,
                  **refit)
    if dist_info.is_main:
        done = checkpoint_dirs(ns.out)[-1]  # fit always ends with a checkpoint (stop_after >= 1)
        export(ns.out, ns.out / "export")
        last = history[-1] if history else None
        print(f"checkpoint {done}; exported to {ns.out / 'export'}"
              + (f"; last loss {last.loss:.3f} (MLM {last.mlm_loss:.3f}"
                 + (f", NSP {last.nsp_loss:.3f})" if last.nsp_loss is not None else ")") if last else ""))
    return 0
