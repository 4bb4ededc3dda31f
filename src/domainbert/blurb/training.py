"""One fine-tuning run: a setting and a seed, trained epoch by epoch, scored on dev each epoch it may keep.

:func:`train_run` builds the model for the task, trains with AdamW (the setting's weight decay, never
on biases and LayerNorm) at a linearly warmed-up then decayed rate, clips gradients at 1.0, batches
by length (or at random), keeps the best dev epoch's weights (or the last, or the best from
``min_epoch`` on, as the setting says; final-epoch selection scores dev after the last epoch only),
then predicts test with them. Each epoch is logged as it ends (:class:`EpochLog`). A long run saves its
state at an epoch's end (``runs/<run id>/resume.pt``, every ``checkpoint_minutes``), and a run killed after
it continues from there: the weights, optimizer, scaler and random states put back, it goes on as the
uninterrupted run would have (bit for bit on the CPU; on a GPU up to its nondeterministic kernels, as two
uninterrupted runs there differ) (:class:`ResumeState`). On a GPU a step
is built not to wait for it: the batch and its Packing are made on the host and copied through
pinned memory, and the loss is read back every :data:`LOG_EVERY` steps
(``benchmarks/gpu_check.py``'s no-sync-finetune checks it).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainbert.atomic import atomic_write
from domainbert.blurb.arguments import FinetuneArgs
from domainbert.blurb.budgets import Setting
from domainbert.blurb.featurize import IGNORE, Feature, collate, length_grouped_batches
from domainbert.blurb.metrics import constant_prediction, score
from domainbert.blurb.predict import gold, predict
from domainbert.blurb.task import Task, build_model
from domainbert.progress import tqdm
from domainbert.train.distributed import compiling
from domainbert.train.optim import get_lr, param_groups
from domainbert.train.precision import autocast, grad_scaler


@dataclass
class RunResult:
    """What one (setting, seed) run produced; stored as ``runs/<id>/result.json``."""

    run_id: str
    setting: dict[str, Any]
    seed: int
    best_epoch: int
    dev: float
    test: float
    dev_history: list[float | None]
    """Each epoch's dev score; None where it was not scored (final-epoch selection scores the last only)."""
    steps: int
    train_seconds: float
    fingerprint: dict[str, Any]
    constant: str | None = None
    """When every test prediction is the same: what it is (:func:`domainbert.blurb.metrics.constant_prediction`)."""


LOG_EVERY = 20
"""Steps between the reads of the training loss (for the progress bar), a run's one wait for the GPU
between its dev evaluations."""


NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)
"""A scaler that does nothing (its step is the optimizer's): what every precision but fp16 trains with."""


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Sequence[dict[str, Any]], lr: float,
               precision: str, device: torch.device, shares: Sequence[float] = (1.0,),
               scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """One optimizer step at rate ``lr`` on a batch given as :func:`collate` micro-batches, whose losses
    (means over their own labelled elements) are weighted by ``shares``, each micro-batch's part of the
    batch's labelled elements: the gradient is the whole batch's. Returns the batch's loss (detached, on the
    model's device). With fp16, ``scaler`` (:func:`~domainbert.train.precision.grad_scaler`) scales the
    loss up for the backward pass and the gradients down before clipping, and skips a step whose
    gradients overflowed. It does not read anything back from a GPU: the batches and their Packings were
    made on the host (the scaler's check for overflow is its one wait, in fp16 only)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    scaler = scaler or NO_SCALING
    total = torch.zeros((), device=device)
    for batch, share in zip(batches, shares, strict=True):
        with autocast(precision, device):
            out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                        labels=batch["labels"], packing=batch["packing"])
        loss = out.loss if share == 1.0 else out.loss * share
        scaler.scale(loss).backward()
        total += loss.detach()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total


def loss_elements(features: Sequence[Feature]) -> int:
    """How many values a batch's loss averages: labelled tokens (token tasks), else examples (a multi-label
    example's labels all count, so its share is the same)."""
    first = features[0].labels
    if isinstance(first, list) and first and isinstance(first[0], int):
        return sum(1 for f in features for label in f.labels if label != IGNORE)
    return len(features)


def micro_batches(features: Sequence[Feature], size: int | None) -> tuple[list[list[Feature]], list[float]]:
    """A batch cut into micro-batches of at most ``size`` examples (None: whole), with their shares of the
    batch's loss; micro-batches with nothing to score are dropped (their loss would be a mean of nothing)."""
    if size is None or size >= len(features):
        return [list(features)], [1.0]
    parts = [list(features[i:i + size]) for i in range(0, len(features), size)]
    counts = [loss_elements(p) for p in parts]
    whole = sum(counts)
    if whole == 0:  # nothing to score in the whole batch: as without micro-batches
        return [list(features)], [1.0]
    kept = [(p, c / whole) for p, c in zip(parts, counts) if c]
    return [p for p, _ in kept], [share for _, share in kept]


class EpochLog:
    """A run's per-epoch record, ``runs/<run id>/epochs.jsonl``, written as each epoch ends (a long run
    can be followed, and a killed one read, before its ``result.json`` exists); one line on stderr per
    epoch too, unless ``quiet``. The file is started afresh when the run (re)starts, with the ``rows`` of
    the epochs a resumed run does not train again."""

    def __init__(self, path: Path, task: str, run_id: str, quiet: bool, rows: Sequence[dict[str, Any]] = ()) -> None:
        self.path, self.task, self.run_id, self.quiet = path, task, run_id, quiet
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    def write(self, bar: Any, **row: Any) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if not self.quiet:
            bar.write(f"{self.task} {self.run_id} epoch {row['epoch']}: train loss {row['train_loss']:.4f}, "
                      + (f"dev {100 * row['dev']:.2f} (best epoch {row['best_epoch']})" if row["dev"] is not None
                       else "dev not scored (the last epoch is kept)") + f", {row['seconds']:.0f} s",
                      file=sys.stderr)


RESUME_FILE = "resume.pt"
"""A run's saved state, in its ``runs/<run id>/`` folder until its ``result.json`` is written."""


RESUME_VERSION = 2
"""The layout of :class:`ResumeState`; a state of another layout is set aside."""


@dataclass
class ResumeState:
    """Where a run stood at the end of an epoch: what it needs to go on exactly as if it had not stopped
    (weights, optimizer and scaler states, the batch order's and dropout's random states), with what it
    had kept so far (the best epoch's score, weights and dev predictions, the epoch log with each epoch's dev
    score)."""

    run: dict[str, Any]
    """What the run is (:func:`run_identity`): a state is continued only by the same."""
    epoch: int
    step: int
    seconds: float
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    batch_rng: tuple[Any, ...]
    torch_rng: torch.Tensor
    cuda_rng: torch.Tensor | None
    best: tuple[float, int, dict[str, torch.Tensor] | None, dict[str, list[Any]]] | None
    rows: list[dict[str, Any]]
    version: int = RESUME_VERSION

    def save(self, path: Path) -> bool:
        """Write atomically (a kill while writing leaves the previous state as it was); a failed write (a
        full disk) is a warning, not the end of the run. Whether it was written."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}  # not asdict: it deep-copies the tensors
        try:
            atomic_write(path, lambda tmp: torch.save(state, tmp))
        except (OSError, RuntimeError) as exc:
            warnings.warn(f"could not save the run's state to {path} ({type(exc).__name__}: {exc}); the run goes "
                          "on without saving it again (if killed, it starts afresh)", stacklevel=2)
            return False
        return True

    @classmethod
    def load(cls, path: Path, run: dict[str, Any], model: nn.Module) -> ResumeState | None:
        """The state saved at ``path`` when it is this ``run``'s (:func:`run_identity`) and fits ``model``;
        else None, with a warning when a file was there but unusable (the run then starts afresh). Tensors
        are loaded on the CPU (``load_state_dict`` copies them to the model's device)."""
        if not path.is_file():
            return None
        try:
            state = cls(**torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # unreadable or of another layout: retraining costs time, not results
            warnings.warn(f"{path} could not be read ({type(exc).__name__}: {exc}); the run starts afresh",
                          stacklevel=2)
            return None
        mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if (state.version != RESUME_VERSION or state.run != run
                or {k: tuple(v.shape) for k, v in state.model.items()} != mine):
            warnings.warn(f"{path} was saved by another run (another model, data, setting, length, device or "
                          "version); the run starts afresh", stacklevel=2)
            return None
        return state


def run_identity(run_id: str, fingerprint: dict[str, Any], train_examples: int, total_steps: int,
                 args: FinetuneArgs, device: torch.device) -> dict[str, Any]:
    """What a saved state must match to be continued: the run (setting and seed), its inputs and settings
    (``fingerprint``), its training set and length, and the options that change its numbers without being in
    the fingerprint (micro-batches, unpadding, the dev batch, compilation, the kind of device)."""
    return {"run_id": run_id, "fingerprint": fingerprint, "train_examples": train_examples,
            "total_steps": total_steps, "micro_batch_size": args.micro_batch_size, "unpad": args.unpad,
            "eval_batch_size": args.eval_batch_size, "compile": compiling(args.compile, device),
            "device": device.type}


def train_run(task: Task, model_dir: Path, setting: Setting, seed: int, args: FinetuneArgs,
              device: torch.device, fingerprint: dict[str, Any] | None = None,
              ) -> tuple[RunResult, nn.Module, dict[str, list[Any]]]:
    """Fine-tune once; score dev each epoch that may be kept and keep the best one's weights and predictions.
    With the run's ``fingerprint`` (:func:`domainbert.blurb.resume.fingerprint`) its state is saved as
    ``args.checkpoint_minutes`` says, and a state saved by a killed run of the same identity
    (:func:`run_identity`) is continued; without one, the run trains from its start and saves nothing."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_model(task, model_dir).to(device)
    if compiling(args.compile, device):
        model.bert.encoder.compile(dynamic=True)  # the heads stay eager; predictions use the same module
    train = task.features["train"]
    lengths = [len(f) for f in train]
    steps_per_epoch = math.ceil(len(train) / setting.batch_size)
    total = steps_per_epoch * setting.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    optimizer = torch.optim.AdamW(param_groups(model, setting.weight_decay), lr=setting.learning_rate, fused=True)
    scaler = grad_scaler(args.precision, device)  # does nothing unless fp16
    best: tuple[float, int, dict[str, torch.Tensor] | None, dict[str, list[Any]]] | None = None
    step = 0
    rows: list[dict[str, Any]] = []
    first_epoch, elapsed = 0, 0.0
    run_dir = args.out / "runs" / setting.run_id(seed)
    # Saved and continued only with the run's fingerprint (a caller without one trains from the start).
    identity = (run_identity(setting.run_id(seed), fingerprint, len(train), total, args, device)
                if fingerprint is not None else None)
    saving = identity is not None and args.checkpoint_minutes is not None
    for stale in run_dir.glob(f".{RESUME_FILE}.tmp-*"):  # left by a process killed while saving
        stale.unlink(missing_ok=True)
    resume = ResumeState.load(run_dir / RESUME_FILE, identity, model) if identity is not None else None
    if resume is not None:  # a killed run: go on from its last saved epoch
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        scaler.load_state_dict(resume.scaler)
        rng.setstate(resume.batch_rng)
        torch.set_rng_state(resume.torch_rng)
        if resume.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(resume.cuda_rng, device)
        first_epoch, step, elapsed = resume.epoch, resume.step, resume.seconds
        best, rows = resume.best, resume.rows
        del resume  # its weights and optimizer state are in the model and optimizer now
        if args.progress is not False:
            print(f"{task.record.name} {setting.run_id(seed)}: resuming after epoch {first_epoch} (step {step})",
                  file=sys.stderr)
    started = time.perf_counter() - elapsed
    saved = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc=f"{task.record.name} {setting.run_id(seed)}", leave=False,
               disable=(None if args.progress is None else not args.progress))
    log = EpochLog(run_dir / "epochs.jsonl", task.record.name, setting.run_id(seed), quiet=args.progress is False,
                   rows=rows)
    for epoch in range(first_epoch, setting.epochs):
        if step >= total:
            break
        model.train()
        epoch_loss, epoch_steps = torch.zeros((), device=device), 0  # summed on the device: no wait per step
        # pool=1: each batch is a random draw (sorting inside one batch changes nothing).
        pools = {} if args.group_by_length else {"pool": 1}
        for batch_ids in length_grouped_batches(lengths, setting.batch_size, rng, **pools):
            if step >= total:
                break
            parts, shares = micro_batches([train[i] for i in batch_ids], args.micro_batch_size)
            batches = [collate(part, task.tokenizer.pad_token_id, device, args.unpad) for part in parts]
            lr = get_lr(step, total, setting.learning_rate, setting.warmup)
            loss = train_step(model, optimizer, batches, lr, args.precision, device, shares, scaler)
            step += 1
            epoch_loss += loss
            epoch_steps += 1
            bar.update(1)
            if step % LOG_EVERY == 0 or step == total:  # the one wait for the GPU, every LOG_EVERY steps
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        last = step >= total or epoch + 1 == setting.epochs
        dev_score = None
        if setting.select != "final" or last:  # final-epoch selection keeps the last: dev waits for it
            dev_pred = predict(model, task, "dev", device, args.precision, args.eval_batch_size)
            dev_score = score(task.record, gold(task, "dev"), dev_pred)
            # best-epoch: the best dev score from min_epoch on (an earlier one only until then); final: the last
            keep = (best is None or epoch + 1 == setting.min_epoch or setting.select == "final"
                    or (dev_score > best[0] and epoch + 1 >= setting.min_epoch))
            if keep:  # the weights as they are now, unless no later epoch can change them (the last)
                state = None if last else {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = (dev_score, epoch + 1, state, {"dev": dev_pred})
        rows.append({"epoch": epoch + 1, "step": step, "train_loss": float(epoch_loss) / max(1, epoch_steps),
                     "dev": dev_score, "best_epoch": best[1] if best else None,
                     "seconds": round(time.perf_counter() - started, 2)})
        if saving and not last and time.perf_counter() - saved >= 60 * args.checkpoint_minutes:
            saving = ResumeState(identity, epoch + 1, step, time.perf_counter() - started, model.state_dict(),
                                 optimizer.state_dict(), scaler.state_dict(), rng.getstate(), torch.get_rng_state(),
                                 torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                                 best, rows).save(run_dir / RESUME_FILE)
            saved = time.perf_counter()
        log.write(bar, **rows[-1])
    bar.close()
    seconds = time.perf_counter() - started
    assert best is not None
    if best[2] is not None:  # an earlier epoch's weights
        model.load_state_dict(best[2])
    test_pred = predict(model, task, "test", device, args.precision, args.eval_batch_size)
    test_score = score(task.record, gold(task, "test"), test_pred)
    result = RunResult(setting.run_id(seed), asdict(setting), seed, best[1], best[0], test_score,
                       [row["dev"] for row in rows], step, round(seconds, 2), fingerprint or {},
                       constant=constant_prediction(task.record, test_pred))
    return result, model, {"dev": best[3]["dev"], "test": test_pred}
