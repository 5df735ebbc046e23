"""Progress a user can see wherever the output goes.

On a terminal, a tqdm bar; when stderr is a file or a pipe (a log, a batch
job), one line per ~10% of the run with the elapsed time and an ETA, so that
a log shows how far a run got and how long it has left. `note` prints one-off
status lines ("resuming DIR from step N").
"""

from __future__ import annotations

import sys
import time
from typing import Any


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def note(message: str) -> None:
  """A status line on stderr."""
  print(message, file=sys.stderr, flush=True)


class Progress:
  """Counts steps toward `total`; the interface is tqdm's `update` / `set_postfix` / `close`.

  Args:
    total: steps of the whole run.
    initial: steps already done (a resumed run).
    description: the label, e.g. "train".
    enabled: False shows nothing.
    unit: what is counted, for the log lines.
    stream: where to write (default stderr); a terminal gets a bar.
    every: the fraction of the run between log lines.
  """

  def __init__(
    self,
    total: int,
    *,
    initial: int = 0,
    description: str = "",
    enabled: bool = True,
    unit: str = "steps",
    stream=None,
    every: float = 0.1,
  ):
    self.total, self.done, self.description, self.unit = total, initial, description, unit
    self.stream = stream if stream is not None else sys.stderr
    self.enabled = enabled and total > 0
    self._start_done, self._start = initial, time.perf_counter()
    self._postfix: dict[str, Any] = {}
    self._step = max(1, int(round(total * every)))
    self._next = (initial // self._step + 1) * self._step
    self._bar = None
    if self.enabled and getattr(self.stream, "isatty", lambda: False)():
      from tqdm.auto import tqdm

      self._bar = tqdm(
        total=total,
        initial=initial,
        desc=description,
        file=self.stream,
        dynamic_ncols=True,
        leave=False,
      )

  def update(self, n: int = 1) -> None:
    self.done += n
    if self._bar is not None:
      self._bar.update(n)
    elif self.enabled and (self.done >= self._next or self.done == self.total):
      while self._next <= self.done:
        self._next += self._step
      self._line()

  def set_postfix(self, values: dict[str, Any], refresh: bool = False) -> None:
    self._postfix = dict(values)
    if self._bar is not None:
      self._bar.set_postfix(values, refresh=refresh)

  def _line(self) -> None:
    elapsed = time.perf_counter() - self._start
    rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
    left = (self.total - self.done) / rate if rate > 0 else float("nan")
    eta = _clock(left) if left == left else "?"
    extra = " ".join(f"{k}={v}" for k, v in self._postfix.items())
    label = f"{self.description}: " if self.description else ""
    print(
      f"{label}{100 * self.done / self.total:3.0f}% ({self.done}/{self.total} {self.unit}), "
      f"{_clock(elapsed)} elapsed, ETA {eta}" + (f"  {extra}" if extra else ""),
      file=self.stream,
      flush=True,
    )

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
