"""The run's schedule on its own (what ``fit`` asks it): the rate at a step, the time budget, refitting
to the time left, and what a checkpoint keeps of it.

The rates are checked against the closed form of BERT's schedule (linear warmup, then linear decay to
0) and of warmup-stable-decay; the clock is replaced, so nothing here waits.
"""

from __future__ import annotations

import pytest
import torch

import domainbert.train.schedule as schedule_module
from domainbert.train.args import PretrainArgs
from domainbert.train.schedule import REFITTED, Schedule

CPU = torch.device("cpu")


def args(**kw) -> PretrainArgs:
    return PretrainArgs(**{"max_steps": 100, "global_batch_size": 4, "micro_batch_size": 4, "learning_rate": 1e-3,
                           "warmup": 0.1, **kw})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(schedule_module, "clock", fake)
    return fake


def test_rates_follow_warmup_then_linear_decay_or_a_held_peak():
    bert, _ = Schedule.for_run(args())
    assert [bert.lr(s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])  # (s + 1) / 10 of the peak
    assert bert.lr(10) == pytest.approx(1e-3) and bert.lr(55) == pytest.approx(1e-3 * 45 / 90)
    assert bert.lr(99) == pytest.approx(1e-3 / 90) and bert.lr(100) == 0.0
    wsd, _ = Schedule.for_run(args(decay=0.25))
    assert all(wsd.lr(s) == pytest.approx(1e-3) for s in range(10, 75))  # the peak is held
    assert wsd.lr(87) == pytest.approx(1e-3 * 13 / 25) and wsd.lr(99) == pytest.approx(1e-3 / 25)


def test_the_budget_counts_from_the_start_of_the_loop(clock):
    timed, _ = Schedule.for_run(args(), budget_s=60.0)
    untimed, _ = Schedule.for_run(args())
    clock.now = 0.0
    timed.start(0)
    untimed.start(0)
    clock.now = 59.9
    assert not timed.over_budget()
    clock.now = 60.1
    assert timed.over_budget() and not untimed.over_budget()


def test_refit_lengthens_the_peak_to_the_time_left_and_never_past_most_steps(clock):
    left = {"s": 100.0}
    run, _ = Schedule.for_run(args(decay=0.25), time_left=lambda: left["s"], most_steps=150)
    clock.now = 0.0
    run.start(0)
    clock.now = 2.0
    assert run.refit(20, CPU)  # 0.1 s a step and 100 s left: 1,000 more steps, but the warmup keeps its end
    assert run.max_steps == 145 and run.lr(20) == pytest.approx(1e-3)  # 10% of 145 steps end before step 20
    clock.now = 3.0
    assert run.refit(30, CPU)  # more steps now fit the warmup: up to most_steps
    assert run.max_steps == 150 and run.refitted and run.first_count == 100
    assert run.stored() == {"max_steps": 150, REFITTED: 100}
    left["s"] = 1.0
    clock.now = 4.0
    assert run.refit(40, CPU) and run.max_steps == 50  # less time: the decay comes sooner
    never, _ = Schedule.for_run(args(decay=0.25))
    assert not never.refit(30, CPU) and never.stored() == {"max_steps": 100}  # no time_left: never refitted


def test_a_resume_continues_a_refitted_schedule_and_keeps_other_counts(clock):
    stored = {**args(decay=0.25).to_dict(), "max_steps": 150, REFITTED: 100}
    run, resumed = Schedule.for_run(args(decay=0.25), stored)
    assert run.max_steps == resumed.max_steps == 150 and run.refitted
    assert run.stored() == {"max_steps": 150, REFITTED: 100} and not resumed.resume_changes(stored)
    other, kept = Schedule.for_run(args(max_steps=120, decay=0.25), stored)  # another count: fit refuses it
    assert kept.max_steps == 120 and kept.resume_changes(stored) == ["max_steps: 150 -> 120"]
    plain, same = Schedule.for_run(args(), args().to_dict())
    assert same.max_steps == 100 and not plain.refitted and plain.stored() == {"max_steps": 100}
