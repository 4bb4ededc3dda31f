"""Progress in logs: where stderr is not a terminal the bars write whole lines, at most one every
LOG_INTERVAL seconds, instead of every update joined by carriage returns (domainbert.progress)."""

from __future__ import annotations

import io
from pathlib import Path

from tqdm import tqdm as terminal_tqdm

from domainbert import progress
from domainbert.cli import main


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_in_a_log_writes_a_first_and_a_last_line_only_when_quick() -> None:
    log = io.StringIO()
    bar = progress.tqdm(total=1000, desc="pretraining", file=log)
    assert isinstance(bar, progress.LogLines)
    for step in range(1000):
        bar.update(1)
        bar.set_postfix(loss=1.0 / (step + 1))  # refreshes: on a terminal, one redraw each
    bar.close()
    lines = log.getvalue().split("\n")
    assert "\r" not in log.getvalue() and len(lines) == 3 and lines[-1] == ""
    assert lines[0].startswith("pretraining:   0%") and lines[1].startswith("pretraining: 100%")
    assert "1000/1000" in lines[1]


def test_a_bar_in_a_log_writes_a_line_every_interval(monkeypatch) -> None:
    clock = iter(range(0, 10**6, 31))  # every reading of the clock is 31 s after the last
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    log = io.StringIO()
    with progress.tqdm(total=5, desc="data prepare", file=log, mininterval=0) as bar:
        for _ in range(5):
            bar.update(1)
    lines = log.getvalue().strip("\n").split("\n")
    assert [line.split("|")[0].split(":")[1].strip() for line in lines] == ["0%", "20%", "40%", "60%", "80%",
                                                                            "100%", "100%"]


def test_a_terminal_gets_tqdm_and_a_bar_that_does_not_stay_leaves_nothing() -> None:
    assert type(progress.tqdm(total=3, file=Terminal(), disable=True)) is terminal_tqdm
    log = io.StringIO()
    with progress.tqdm(total=3, file=log, leave=False) as bar:
        bar.update(3)
    assert "\r" not in log.getvalue() and log.getvalue().count("\n") == 1  # the first line only


def test_data_prepare_logs_lines_not_carriage_returns(tmp_path: Path, shared_data: Path, capsys) -> None:
    from domainbert.data.vocab import build_vocab

    corpus = shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt"
    build_vocab([corpus], tmp_path / "vocab", 2000, progress=False)
    assert main(["data", "prepare", "--corpus", str(corpus), "--vocab", str(tmp_path / "vocab"), "--out",
                 str(tmp_path / "data"), "--dupe-factor", "1"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "data prepare: 100%" in err
