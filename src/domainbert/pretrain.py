"""Joint MLM + NSP pretraining: the loop, read top to bottom, and its exactly-resumable checkpoints.

The order of one optimizer step (nanoGPT's and litgpt's loop, BERT's objective):

1. the learning rate comes from the pure function ``optim.get_lr(step)``;
2. ``accumulation`` micro-batches run forward under the chosen precision and backward, each loss
   divided by ``accumulation`` (under DDP, gradients are synchronised on the last one only);
3. gradients are clipped to norm 1.0, the optimizer steps, gradients are cleared;
4. metrics are logged (JSON lines + progress bar); every ``save_every`` steps and at the end a
   checkpoint is written.

A checkpoint (``checkpoints/step-NNNNNNNN/``) holds the model, the optimizer state, the step, the
number of samples consumed (the data position), every RNG state (python, numpy, torch) and the
resolved arguments; it is written into a temporary directory, fsynced and renamed, so a ``kill -9``
at any moment leaves the previous checkpoint intact. Resuming restores all of it and asks the data
source to start at the consumed-sample offset (it never replays batches), so on the CPU in fp32 the
losses after a resume are bit-identical to an uninterrupted run's (tests/test_pretrain.py).

The data comes from a ``BatchSource``: anything that yields micro-batches (dicts with
``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels``, ``next_sentence_label``) for a
rank, starting at a global sample offset.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch

from domainbert.configuration import BertConfig
from domainbert.errors import ConfigError, DomainBertError
from domainbert.modeling import BertForPreTraining
from domainbert.optim import Lamb, get_lr, param_groups, warmup_steps
from domainbert.precision import PRECISIONS, autocast, resolve_precision

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "training_state.pt"


class TrainingError(DomainBertError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not fit the run)."""


class BatchSource(Protocol):
    """Where micro-batches come from (the prepared shards, or anything else that yields them)."""

    def micro_batches(self, micro_batch_size: int, start_sample: int, rank: int,
                      world_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Micro-batches for ``rank``, beginning after ``start_sample`` samples (all ranks together)."""
        ...


@dataclass
class PretrainArgs:
    """Everything that decides a pretraining run (saved in every checkpoint)."""

    max_steps: int = 1000
    """Optimizer steps in the run (the learning-rate schedule decays to 0 at the last one)."""
    global_batch_size: int = 256
    """Sequences per optimizer step, all ranks together: micro x accumulation x world size."""
    micro_batch_size: int = 32
    """Sequences per forward pass on one device."""
    optimizer: str = "adamw"
    """``adamw`` (BERT) or ``lamb`` (NVIDIA's large-batch BERT recipe)."""
    learning_rate: float = 1e-3
    """Peak learning rate."""
    warmup: float = 0.1
    """Warmup: a share of max_steps when below 1, a number of steps otherwise."""
    weight_decay: float = 0.01
    """Decoupled weight decay, not applied to LayerNorm weights and biases."""
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    """Adam epsilon (BERT used 1e-6)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    precision: str = "auto"
    """``auto`` (bf16 autocast where native), ``bf16`` or ``fp32``."""
    seed: int = 0
    save_every: int = 500
    """Write a checkpoint every this many steps (and at the end)."""
    keep_last: int = 3
    """How many checkpoints to keep."""
    log_every: int = 10
    world_size: int = field(default=1, repr=False)
    """Set from the torchrun environment, not by hand."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("max_steps", "global_batch_size", "micro_batch_size", "save_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.optimizer not in ("adamw", "lamb"):
            problems.append(f"optimizer {self.optimizer!r} is not adamw or lamb")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup < 0 or warmup_steps(self.warmup, self.max_steps) > self.max_steps:
            problems.append(f"warmup {self.warmup} is longer than the run ({self.max_steps} steps)")
        per_step = self.micro_batch_size * self.world_size
        if not problems and self.global_batch_size % per_step:
            lower = max(per_step, self.global_batch_size - self.global_batch_size % per_step)
            problems.append(
                f"global_batch_size {self.global_batch_size} is not divisible by micro_batch_size "
                f"{self.micro_batch_size} x world size {self.world_size} = {per_step}: use a global batch of "
                f"{lower} or {lower + per_step}, or another micro batch size")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step on each rank."""
        return self.global_batch_size // (self.micro_batch_size * self.world_size)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ==================================================================================== RNG states
def rng_states() -> dict[str, Any]:
    """Every random state the run touches, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict[str, Any]) -> None:
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ==================================================================================== checkpoints
def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary directories are not complete)."""
    root = run_dir / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE_FILE).is_file())


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    consumed_samples: int, args: PretrainArgs, keep_last: int) -> Path:
    """Write ``checkpoints/step-NNNNNNNN`` atomically (temporary dir, fsync, rename); keep the last K."""
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    state = {"step": step, "consumed_samples": consumed_samples, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "rng": rng_states(), "args": args.to_dict(),
             "config": model.config.to_dict()}
    torch.save(state, tmp / STATE_FILE)
    with open(tmp / STATE_FILE, "rb") as fh:
        os.fsync(fh.fileno())
    if final.exists():  # a checkpoint of the same step from an earlier attempt: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    dir_fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself reaches the disk
    finally:
        os.close(dir_fd)
    for old in checkpoint_dirs(run_dir)[:-keep_last]:
        shutil.rmtree(old)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: name it and the way out
        raise TrainingError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); delete it to "
                            "resume from the one before") from None


# ==================================================================================== the loop
@dataclass
class StepMetrics:
    step: int
    loss: float
    mlm_loss: float
    nsp_loss: float
    mlm_accuracy: float
    nsp_accuracy: float
    lr: float
    tokens_per_s: float
    consumed_samples: int


def build_optimizer(model: torch.nn.Module, args: PretrainArgs) -> torch.optim.Optimizer:
    groups = param_groups(model, args.weight_decay)
    if args.optimizer == "lamb":
        return Lamb(groups, lr=args.learning_rate, betas=args.betas, eps=args.eps)
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=args.betas, eps=args.eps)


def fit(model: BertForPreTraining, source: BatchSource, args: PretrainArgs, run_dir: Path, *,
        resume: bool = True, rank: int = 0, device: torch.device | str = "cpu",
        stop_after: int | None = None, progress: bool = True) -> list[StepMetrics]:
    """Pretrain ``model`` on ``source`` until ``args.max_steps``; returns this call's step metrics.

    With ``resume`` and a checkpoint in ``run_dir``, continues from the newest one exactly.
    ``stop_after`` ends this call after that many steps (the schedule still spans max_steps): a
    deliberate interruption, for tests and time-boxed sessions.
    """
    from tqdm import tqdm

    device = torch.device(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    main_process = rank == 0
    torch.manual_seed(args.seed + rank)
    random.seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    model.to(device)
    optimizer = build_optimizer(model, args)
    step, consumed = 0, 0
    existing = checkpoint_dirs(run_dir) if resume else []
    if existing:
        state = load_checkpoint(existing[-1])
        if state["config"] != model.config.to_dict():
            raise TrainingError(f"{existing[-1]} was written for another model config: use a new run "
                                "directory or the same model settings")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_states(state["rng"])
        step, consumed = state["step"], state["consumed_samples"]
    precision = resolve_precision(args.precision, device)
    ddp_model = model
    if args.world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model)
    batches = source.micro_batches(args.micro_batch_size, consumed, rank, args.world_size)
    metrics_file = (run_dir / "metrics.jsonl").open("a", encoding="utf-8") if main_process else None
    history: list[StepMetrics] = []
    end = args.max_steps if stop_after is None else min(args.max_steps, step + stop_after)
    bar = tqdm(total=args.max_steps, initial=step, desc="pretraining", disable=not (progress and main_process))
    model.train()
    try:
        while step < end:
            lr = get_lr(step, args.max_steps, args.learning_rate, args.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            totals = torch.zeros(7, dtype=torch.float64)  # loss, mlm, nsp, mlm hits, mlm n, nsp hits, nsp n
            tokens = 0
            for micro in range(args.accumulation):
                batch = {k: v.to(device) for k, v in next(batches).items()}
                sync = micro == args.accumulation - 1 or args.world_size == 1
                ctx = ddp_model.no_sync() if not sync else contextlib.nullcontext()
                with ctx:
                    with autocast(precision, device):
                        out = ddp_model(**batch)
                    (out.loss / args.accumulation).backward()
                labels = batch["labels"][batch["labels"] != -100]
                with torch.no_grad():
                    totals += torch.tensor([
                        out.loss.item(), out.mlm_loss.item(), out.nsp_loss.item(),
                        (out.prediction_logits.argmax(-1) == labels).sum().item(), labels.numel(),
                        (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum().item(),
                        batch["next_sentence_label"].numel()], dtype=torch.float64)
                tokens += int(batch["attention_mask"].sum())
            loss = totals[0].item() / args.accumulation
            if not np.isfinite(loss):
                last = checkpoint_dirs(run_dir)
                where = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written yet"
                raise TrainingError(f"the loss became {loss} at step {step + 1}; {where}. Lower the learning "
                                    "rate, raise warmup, or use --precision fp32, then resume")
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            consumed += args.global_batch_size
            elapsed = time.perf_counter() - t0
            m = StepMetrics(step, loss, totals[1].item() / args.accumulation, totals[2].item() / args.accumulation,
                            totals[3].item() / max(1.0, totals[4].item()), totals[5].item() / max(1.0, totals[6].item()),
                            lr, tokens * args.world_size / elapsed, consumed)
            history.append(m)
            if main_process:
                metrics_file.write(json.dumps(asdict(m)) + "\n")
                if step % args.log_every == 0 or step == end:
                    metrics_file.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{m.loss:.3f}", mlm_acc=f"{m.mlm_accuracy:.3f}", nsp_acc=f"{m.nsp_accuracy:.3f}",
                                lr=f"{lr:.2e}", tok_s=f"{m.tokens_per_s:,.0f}")
                if step % args.save_every == 0 or step == args.max_steps or step == end:
                    save_checkpoint(run_dir, step, model, optimizer, consumed, args, args.keep_last)
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
    return history


def new_model(preset_or_dir: str, vocab_size: int, seed: int, **overrides: Any) -> BertForPreTraining:
    """A fresh ``BertForPreTraining`` of a preset size, or one loaded from a model directory."""
    if Path(preset_or_dir).is_dir():
        return BertForPreTraining.from_pretrained(preset_or_dir)
    torch.manual_seed(seed)
    return BertForPreTraining(BertConfig.preset(preset_or_dir, vocab_size=vocab_size, **overrides))
