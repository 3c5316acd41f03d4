"""What the benchmarks and the fresh processes they start share: `rectify run`'s driver in one
process, and the peak memory of the process (imported by a child as `replay`, from this folder)."""

from __future__ import annotations

import os
from typing import Any

from engine import Engine
from engine.output import JsonlSink
from engine.run import Outputs, Run


def feed(engine: Engine, source: Any, workers: int = 0) -> Outputs:
    """`rectify run` in-process: the batch path, records as chained JSON lines to /dev/null."""
    with open(os.devnull, "wb") as sink:
        outputs = Outputs(JsonlSink(sink))
        Run(engine, outputs, workers=workers).feed(source).finish()
    return outputs


def peak_rss_kb() -> int:
    """This process's peak resident memory, its own VmHWM (/proc/self/status), in KiB: not
    `getrusage`'s ru_maxrss, which a child on Linux keeps from the process it was forked from."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
