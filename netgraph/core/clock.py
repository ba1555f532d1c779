"""The process's age: the clock that 'start-up' in a run's time accounting is read from.

On Linux the kernel records when the process started (``/proc/self/stat``, field 22, in clock
ticks since boot) and how long the machine has been up (``/proc/uptime``, 1/100 s): their
difference is the time since the process was created, interpreter start-up and every import
included. Elsewhere the clock starts when this module is first imported (netgraph's command
line imports it first), which leaves out the interpreter's own start-up.
"""

from __future__ import annotations

import os
import time

_IMPORTED = time.perf_counter()


def _from_proc() -> float:
    with open("/proc/self/stat") as f:
        stat = f.read()
    # the command name (field 2) may hold spaces and parentheses: count fields after its last ')'
    start_ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def process_seconds() -> float:
    """Seconds since this process started (since this module's import where /proc is missing)."""
    try:
        return _from_proc()
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED
