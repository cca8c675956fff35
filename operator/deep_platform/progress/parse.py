"""Progress from the lines a training prints (the standard-output collector): pure.

Keras prints `Epoch 3/15` before each epoch; Katib's collector reads `name=value` pairs. Both
are read here: `epoch`/`step` among the pairs set the counters, other names are metrics.
"""

from __future__ import annotations

import math
import re

from ..api.trainingjob import DEFAULT_METRIC_PATTERN, MAX_METRICS, METRIC_NAME_PATTERN
from .report import Report

KERAS_EPOCH = re.compile(r"^\s*Epoch\s+(\d+)\s*/\s*(\d+)\s*$")
#: `Step 120/5000` (the same shape, in steps)
KERAS_STEP = re.compile(r"^\s*Step\s+(\d+)\s*/\s*(\d+)\s*$")
METRIC_NAME = re.compile(METRIC_NAME_PATTERN)
#: Keras' batch lines: `469/469 [====...] - 3s 5ms/step - loss: 0.2 - accuracy: 0.94` (Keras 2),
#: `469/469 - 3s - loss: 0.2` (verbose=2, or output that is no terminal), `469/469 ━━━━ 3s
#: 6ms/step - accuracy: 0.94 - loss: 0.2` (Keras 3)
KERAS_BAR = re.compile(r"^\s*(\d+)/(\d+)\s")
KERAS_METRIC = re.compile(
    r"\s-\s(?P<name>[A-Za-z_][\w.]*):\s*(?P<value>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
)


class LineParser:
    """Feed lines; `report()` gives what was read since the last call (None if nothing).

    Keras announces `Epoch 3/15` when epoch 3 starts, so epoch 2 is then done: the counter
    reported is the number of epochs finished. A `epoch=3` pair means epoch 3 is done.
    """

    def __init__(self, pattern: str | None = None) -> None:
        self.pattern = re.compile(pattern or DEFAULT_METRIC_PATTERN)
        self.pending = Report()
        self.started_epoch: int | None = None  # the last `Epoch k/N`

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if "\r" in line:  # a Keras progress bar redraws itself: the last state counts
            line = line.rsplit("\r", 1)[-1]
        for regex, done, total in (
            (KERAS_EPOCH, "epoch", "total_epochs"),
            (KERAS_STEP, "step", "total_steps"),
        ):
            found = regex.match(line)
            if found:
                setattr(self.pending, done, max(int(found.group(1)) - 1, 0))
                setattr(self.pending, total, int(found.group(2)))
                if done == "epoch":
                    self.started_epoch = int(found.group(1))
                return
        bar = KERAS_BAR.match(line)
        if bar:  # metrics of the epoch so far; a full bar ends the epoch
            for found in KERAS_METRIC.finditer(line):
                if found.group("name") != "ETA":  # time left in the epoch, not a metric
                    self._metric(found.group("name"), found.group("value"))
            if bar.group(1) == bar.group(2) and self.started_epoch is not None:
                self.pending.epoch = self.started_epoch
            return
        for found in self.pattern.finditer(line):
            self._metric(found.group("name"), found.group("value"))

    def _metric(self, name: str | None, raw: str | None) -> None:
        try:
            value = float(raw or "")
        except ValueError:
            return
        if not name or not math.isfinite(value):
            return
        if name in ("epoch", "step") and value.is_integer() and value >= 0:
            setattr(self.pending, name, int(value))
        elif METRIC_NAME.match(name) and (
            name in self.pending.metrics or len(self.pending.metrics) < MAX_METRICS
        ):
            self.pending.metrics[name] = value

    def report(self) -> Report | None:
        found, self.pending = self.pending, Report()
        for done, total in (("epoch", "total_epochs"), ("step", "total_steps")):
            if getattr(found, done) is not None and getattr(found, total) is not None:
                setattr(found, done, min(getattr(found, done), getattr(found, total)))
        return None if found.empty else found
