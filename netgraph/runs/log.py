"""The JSON-lines logs: one reader for every log netgraph writes (an ablation's runs.jsonl,
train's epoch log), and how a log names its data set."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence

from netgraph.core.errors import RecipeError

# Every line of a log is a record of one recipe and seed
RECORD_KEYS = ("recipe", "seed")


def _is_record(record: Any, keys: Sequence[str]) -> bool:
    return (
        isinstance(record, dict)
        and all(k in record for k in keys)
        and isinstance(record.get("recipe"), str)
        and isinstance(record.get("seed"), int)
        and not isinstance(record["seed"], bool)
    )


def read_records(path, keys: Sequence[str] = RECORD_KEYS, strict: bool = False) -> List[Dict[str, Any]]:
    """The records of a JSON-lines log, each with a "recipe" text, an integer "seed" and
    ``keys``. A line that is not one (cut short by a crash, written by hand) is skipped with a
    warning, or with ``strict`` refused in one line naming the file and line; a missing file
    has no records (or, strict, is refused)."""
    path = Path(path)
    if not path.exists():
        if strict:
            raise RecipeError(
                "log file not found", file=str(path), hint="write one with netgraph train --log FILE"
            )
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:  # JSONDecodeError, or an integer of 5,000 digits
            why = f"not a JSON line ({getattr(e, 'msg', e)})"
        else:
            if _is_record(record, keys):
                records.append(record)
                continue
            missing = [k for k in keys if not isinstance(record, dict) or k not in record]
            why = (
                f"the line has no {', '.join(missing)}"
                if missing
                else 'it needs a text "recipe" and an integer "seed"'
            )
        if strict:
            raise RecipeError(
                why, file=str(path), line=number, hint="give a log written by netgraph train --log"
            )
        warnings.warn(f"{path}:{number}: skipping a line that is not a run's record: {why}", stacklevel=2)
    return records


def data_name(name: str, train_images: int) -> str:
    """'CIFAR-10 subset': a CIFAR set with fewer than its 50,000 training images is called a
    subset, so no picture passes a subset off as the whole set."""
    full = {"cifar10": ("CIFAR-10", 50000), "cifar100": ("CIFAR-100", 50000)}
    if name in full:
        pretty, size = full[name]
        return pretty + (" subset" if train_images < size else "")
    return {"synthetic": "synthetic data"}.get(name, name)


def data_label(name: str, train_images: int) -> str:
    """'CIFAR-10 subset, 4,068 training images'."""
    return f"{data_name(name, train_images)}, {train_images:,} training images"
