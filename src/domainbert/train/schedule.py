"""A pretraining run's schedule: the rate at each step, the time budget, and refitting to the time left.

:class:`Schedule` is what the loop (:func:`domainbert.train.pretrain.fit`) asks, and all it asks:

- :meth:`Schedule.lr`: the learning rate of a step (``optim.get_lr`` over the current step count);
- :meth:`Schedule.over_budget`: whether this process is past the time budget (the loop carries the
  answer in its sync all-reduce, so that every rank stops after the same step);
- :meth:`Schedule.refit`: at a sync step, the step count refitted to the time left (a
  warmup-stable-decay schedule, while its rate is at the peak: :func:`refit_steps`);
- :meth:`Schedule.stored` and :meth:`Schedule.for_run`: what a checkpoint keeps of it, and a run
  continued from that.

A machine that slows down after the schedule was fitted otherwise ends the run before its decay (over
a 60-minute run here the steps took 25-28% longer than the probe had timed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from domainbert.train import distributed
from domainbert.train.args import PretrainArgs
from domainbert.train.optim import get_lr, warmup_steps

REFITTED = "refitted_from_steps"
"""In a checkpoint's stored arguments when the schedule was refitted: the step count it was first
fitted to. A resume that passes that count (or the refitted one) continues the refitted schedule;
any other count is refused like any changed argument."""
REFIT_RESERVE = 0.02
"""The share of a time budget a refitted schedule leaves for the last evaluation and checkpoint."""
PACE_WINDOW = 200
"""Steps over which :func:`refit_steps` measures the pace (or all since the start, when fewer)."""


def clock() -> float:
    """The clock the budget and the pace are read from: ``time.perf_counter``, looked up at each call."""
    return time.perf_counter()



class Shape(Protocol):
    """What the refit functions read of a schedule (a :class:`Schedule` or :class:`PretrainArgs`)."""

    max_steps: int
    warmup: float | int
    decay: float


def refit_open(step: int, shape: Shape) -> bool:
    """Whether :func:`refit_steps` may change the step count after ``step``: a warmup-stable-decay
    schedule past its warmup whose decay has not begun."""
    if shape.decay >= 1.0 or step < warmup_steps(shape.warmup, shape.max_steps):
        return False
    return step < shape.max_steps - max(1, int(round(shape.decay * shape.max_steps)))  # before the decay


def refit_steps(step: int, shape: Shape, paces: list[tuple[int, float]], seconds_left: float) -> int:
    """The schedule's step count refitted to ``seconds_left``, after ``step`` (``shape.max_steps``
    when it may not change).

    Only a warmup-stable-decay schedule (``decay`` < 1) is refitted, and only while its rate is at
    the peak: there the rate does not depend on the step count, so a new count changes nothing
    already done, and the decay still gets its whole share of the (new) steps. The warmup keeps its
    end, and once the decay has begun its length is kept. The pace is the wall time per step over
    the last ``PACE_WINDOW`` steps of ``paces`` ((step, ``clock()``) at sync steps), so
    evaluations and checkpoints count as the time they take.
    """
    if not refit_open(step, shape):
        return shape.max_steps
    now_step, now = paces[-1]
    first_step, first = next((s, t) for s, t in paces if s >= now_step - PACE_WINDOW)
    if now_step - first_step < min(PACE_WINDOW, 20) or now <= first:  # too few steps timed yet
        return shape.max_steps
    fitted = step + max(1, int(seconds_left * (now_step - first_step) / (now - first)))
    # the warmup keeps its end: a share of more steps would put the run back into it
    while fitted > shape.max_steps and warmup_steps(shape.warmup, fitted) > step:
        fitted = step + (fitted - step) // 2
    return max(fitted, step + 1)


@dataclass
class Schedule:
    """The learning-rate schedule of a run over ``max_steps``, its time budget and its refitting."""

    max_steps: int
    learning_rate: float
    warmup: float | int
    decay: float
    first_count: int
    """The step count first fitted (``max_steps`` differs from it once the schedule is refitted)."""
    budget_s: float | None = None
    """Seconds this call may run (``pretrain --max-minutes``); None: no limit."""
    time_left: Callable[[], float] | None = None
    """Seconds the schedule has left, asked at sync steps; None: never refitted."""
    most_steps: int | None = None
    """The longest a refit may make the schedule (the recipe's steps)."""
    started: float = field(default_factory=lambda: clock())
    paces: list[tuple[int, float]] = field(default_factory=list)
    """(step, clock) at sync steps, for :func:`refit_steps`."""
    refitted: bool = False
    """The count was refitted (in this call or before the checkpoint it continues)."""

    @classmethod
    def for_run(cls, args: PretrainArgs, stored: dict[str, Any] | None = None, *, budget_s: float | None = None,
                time_left: Callable[[], float] | None = None,
                most_steps: int | None = None) -> tuple[Schedule, PretrainArgs]:
        """The schedule of ``args``, continued from a checkpoint's ``stored`` arguments: a schedule
        refitted there keeps its count when ``args`` asks for the first one. Returns the arguments
        the run continues with (their ``max_steps`` the schedule's)."""
        first = args.max_steps
        if stored and stored.get(REFITTED) is not None:
            first = int(stored[REFITTED])
            if args.max_steps == first:
                args = replace(args, max_steps=int(stored["max_steps"]))
        return cls(args.max_steps, args.learning_rate, args.warmup, args.decay, first, budget_s, time_left,
                   most_steps, refitted=first != args.max_steps), args

    def start(self, step: int) -> None:
        """The loop begins (or resumes) at ``step``: the time budget and the pace count from now."""
        self.started = clock()
        self.paces = [(step, self.started)]

    def lr(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based)."""
        return get_lr(step, self.max_steps, self.learning_rate, self.warmup, self.decay)

    def over_budget(self) -> bool:
        """Whether this process has run past the time budget."""
        return self.budget_s is not None and clock() - self.started > self.budget_s

    def refit(self, step: int, device: torch.device, world_size: int = 1) -> bool:
        """After sync step ``step``: refit the step count to the time left (never past ``most_steps``,
        the same count on every rank); True when it changed."""
        if self.time_left is None:
            return False
        self.paces.append((step, clock()))
        while len(self.paces) > 2 and self.paces[1][0] <= step - PACE_WINDOW:
            self.paces.pop(0)
        fitted = refit_steps(step, self, self.paces, self.time_left())
        fitted = fitted if self.most_steps is None else max(step + 1, min(fitted, self.most_steps))
        # one schedule for every rank: the mean of their answers, asked only while a refit may change it
        # (refit_open reads only the step and the schedule: the same answer, so the same collectives)
        if world_size > 1 and refit_open(step, self):
            fitted = round(distributed.all_reduce_mean(
                torch.tensor([float(fitted)], dtype=torch.float64, device=device)).item())
        changed = fitted != self.max_steps
        self.max_steps = fitted
        self.refitted = self.refitted or changed
        return changed

    def stored(self) -> dict[str, Any]:
        """What a checkpoint's arguments keep of the schedule (read back by :meth:`for_run`)."""
        return {"max_steps": self.max_steps, **({REFITTED: self.first_count} if self.refitted else {})}
