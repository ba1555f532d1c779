"""tools/fuzz.py: its cases run forked under time and memory bounds, and it tells an expected
outcome (success, one RecipeError naming the recipe) from every other."""

import sys
import time

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import fuzz  # noqa: E402


def test_outcomes_are_classified(monkeypatch):
    assert fuzz.run_case(fuzz.NET, [])["kind"] == "ok"
    assert fuzz.run_case(fuzz.NET.replace("out: 8", "out: eight"), [])["kind"] == "recipe_error"
    assert fuzz.run_case(fuzz.NET, ["train.label_smoothing=2"])["kind"] == "recipe_error"

    def crash(text, sets, classes=None):
        raise ValueError("a bug")

    monkeypatch.setattr(fuzz, "pipeline", crash)
    outcome = fuzz.run_case(fuzz.NET, [])
    assert (outcome["kind"], outcome["error"]) == ("unexpected", "ValueError: a bug")


def test_a_case_over_its_time_is_stopped(monkeypatch):
    monkeypatch.setattr(fuzz, "SECONDS", 1)
    monkeypatch.setattr(fuzz, "pipeline", lambda text, sets, classes=None: time.sleep(30))
    start = time.monotonic()
    outcome = fuzz.run_case(fuzz.NET, [])
    assert outcome == {"kind": "unexpected", "error": "over 1 s", "seconds": outcome["seconds"]}
    assert time.monotonic() - start < 5


def test_a_case_over_its_memory_is_stopped(monkeypatch):
    monkeypatch.setattr(fuzz, "pipeline", lambda text, sets, classes=None: bytearray(3 * 2**30))
    outcome = fuzz.run_case(fuzz.NET, [])
    assert outcome["kind"] == "unexpected" and outcome["error"].startswith("over 1 GiB: MemoryError")


def test_a_short_run_has_no_unexpected_outcome():
    assert fuzz.main(["--cases", "30", "--seed", "1"]) == 0
