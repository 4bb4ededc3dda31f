"""Progress bars for every long step: tqdm's on a terminal, plain lines in a log.

Where stderr is a file or a pipe (output redirected, a job scheduler's log), a bar that redraws itself
with carriage returns leaves thousands of updates on one line. :func:`tqdm` gives there a
:class:`LogLines` bar instead: one plain line when the work starts, at most one every
:data:`LOG_INTERVAL` seconds while it runs, and the last one when it ends, as training frameworks log.
In a notebook it is tqdm's widget. The metrics files the steps write are not affected.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm as terminal_tqdm
from tqdm.auto import tqdm as notebook_tqdm

LOG_INTERVAL = 30.0
"""Seconds between two lines of a bar written to a log."""


class LogLines(terminal_tqdm):
    """A tqdm bar that writes whole lines, at most one every :data:`LOG_INTERVAL` seconds (and the last)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._closing = False
        self._last_line = -float("inf")
        kwargs.setdefault("ascii", True)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing a bar that does not stay: a log has nothing to clear
            return False
        now = time.monotonic()
        if not self._closing and now - self._last_line < LOG_INTERVAL:
            return True
        self._last_line = now
        text = (self.__str__() if msg is None else msg).strip()
        self.fp.write(text if self._closing else text + "\n")  # tqdm ends the last line itself
        self.fp.flush()
        return True

    def close(self) -> None:
        self._closing = True
        super().close()


def tqdm(*args: Any, **kwargs: Any) -> terminal_tqdm:
    """tqdm's bar on a terminal or in a notebook; :class:`LogLines` where the output is not a terminal."""
    stream = kwargs.get("file") or sys.stderr
    if "ipykernel" in sys.modules:
        return notebook_tqdm(*args, **kwargs)
    isatty = getattr(stream, "isatty", None)
    return (terminal_tqdm if isatty is not None and isatty() else LogLines)(*args, **kwargs)
