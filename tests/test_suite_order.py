"""conftest's --shuffle: the order tools/shuffled_suite.py runs the suite in."""

from types import SimpleNamespace

from conftest import shuffle


def items():
    return [
        SimpleNamespace(module=SimpleNamespace(__name__=f"tests.test_{m}"), name=f"{m}{i}")
        for m in "abcdef"
        for i in range(5)
    ]


def names(seed):
    order = items()
    shuffle(order, seed)
    return [item.name for item in order]


def test_a_seed_gives_one_order_and_another_seed_another():
    assert names(1) == names(1)
    assert names(1) != names(2)
    assert sorted(names(1)) == sorted(item.name for item in items())  # nothing lost or doubled


def test_modules_move_and_each_module_stays_together():
    order = names(3)
    modules = [n[0] for n in order]
    runs = [m for k, m in enumerate(modules) if k == 0 or modules[k - 1] != m]
    assert sorted(runs) == list("abcdef")  # each module's tests contiguous
    assert runs != list("abcdef")  # the modules moved
    assert any(
        order[5 * k : 5 * k + 5] != sorted(order[5 * k : 5 * k + 5]) for k in range(6)
    )  # and their tests


def test_the_suite_tool_keeps_a_failure_s_report(tmp_path):
    """tools/shuffled_suite.py's record carries each failure's own words: the run's temporary
    folder, where pytest's report was, is gone when the record is read."""
    from shuffled_suite import run_suite

    (tmp_path / "test_two.py").write_text(
        "def test_good():\n    pass\n\ndef test_bad():\n    assert 1 + 1 == 3\n"
    )
    run = run_suite(None, [], tmp_path)
    assert (run["passed"], run["failed"]) == (1, 1) and run["exit_code"] == 1
    ((failure,),) = [run["failures"]]
    assert failure["test"] == "test_two::test_bad" and "assert (1 + 1) == 3" in failure["report"]
