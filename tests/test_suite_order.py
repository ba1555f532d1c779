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
