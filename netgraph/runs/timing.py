"""Where a ``netgraph train`` process's wall time went, every second of it: the parts a run's
result records, summed over its seeds, with the process's start-up before them and its age at
the end as the total. The parts are measured, not derived: ``other`` is what none of them
covers (the run folder, printing, saving models), small when the accounting is whole
(tests/test_startup_cost.py checks that the parts add up to the wall time measured outside).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable

from netgraph.core.clock import process_seconds

# (key, what it covers), in the order they happen
PARTS = (
    ("start_up", "the interpreter, imports, the command line and the recipe, to prepare()"),
    ("prepare", "the data read from disk, the graph built, checked and summarised"),
    ("set_up", "each run's data to the device, the passes, the module"),
    ("engine_set_up", "the loader, the optimizers (torch's first imports torch._dynamo), the averaging"),
    ("compile", "torch.compile's warm-up (train.compile)"),
    ("training_steps", "the optimizer steps"),
    ("epoch_evaluation", "the per-epoch test columns (train.eval_every, train.eval_view)"),
    ("final_evaluation", "the final evaluation, with train.tta's views"),
    ("log_and_checkpoints", "each epoch's log line and checkpoint written"),
)


def time_accounting(start_up: float, prepare: float, runs: Iterable[Dict[str, Any]]) -> Dict[str, float]:
    """{part: seconds} for PARTS, ``other`` (the total less their sum) and ``total`` (the
    process's age now), from the plan's start-up and prepare and the runs' summaries."""
    runs = list(runs)

    def summed(key: str) -> float:
        return sum(r.get(key, 0.0) for r in runs)

    parts = {
        "start_up": start_up,
        "prepare": prepare,
        "set_up": summed("setup_time_s"),
        "engine_set_up": summed("engine_setup_time_s"),
        "compile": summed("compile_time_s"),
        "training_steps": summed("train_time_s") - summed("setup_time_s"),
        "epoch_evaluation": summed("epoch_eval_time_s"),
        "final_evaluation": summed("eval_time_s"),
        "log_and_checkpoints": summed("log_time_s"),
    }
    total = process_seconds()
    return {**parts, "other": total - sum(parts.values()), "total": total}


def time_line(parts: Dict[str, float]) -> str:
    """'wall time 40.12 s: start-up 2.10 s, prepare 0.95 s, ...' (every part, in order)."""
    named = ", ".join(
        f"{key.replace('_', ' ').replace('start up', 'start-up').replace('set up', 'set-up')} "
        f"{parts[key]:.2f} s"
        for key, _ in PARTS
    )
    return f"wall time {parts['total']:.2f} s: {named}, other {parts['other']:.2f} s"
