import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Dict, Optional, Sequence

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
# the pixel-exact CIFAR-10 sample the repository carries (2,000 + 500 images, samples/cifar10/README.md):
# the tests on real images read it, so a bare clone runs them
SAMPLE = ROOT / "samples" / "cifar10"
sys.path.insert(0, str(ROOT / "tools"))  # reference_resnet9, bench


def small_network(classes: int) -> str:
    """The one-conv network the data tests train, as a recipe's network: section."""
    return textwrap.dedent(f"""\
        network:
          conv: {{op: conv2d, out: 8, bias: false}}
          bn: {{op: batch_norm}}
          act: {{op: relu}}
          pool: {{op: global_avg_pool}}
          flat: {{op: flatten}}
          fc: {{op: linear, out: {classes}}}
        """)


# the small recipe the training and CLI tests run: 512 synthetic images of 4 classes, 3 epochs
# of batch 64 (8 steps an epoch), the one-conv network; small_recipe() varies it
SMALL = textwrap.dedent("""\
        data:
          dataset: synthetic
          synthetic: {train: 512, test: 256, classes: 4}
          augment: [crop, flip, {cutout: 4}]
        train:
          epochs: 3
          batch_size: 64
          lr: {knots: [0, 1, epochs], values: [0, 0.4, 0]}
          label_smoothing: 0.2
          ema: {momentum: 0.9, every: 2}
          tta: [flip]
        """) + small_network(4)


def small_recipe(drop: Sequence[str] = (), data: Optional[Dict] = None, **train) -> str:
    """SMALL without the keys ``drop`` ("data.augment", "train.ema", ...), with ``data``'s keys
    and the train: keys ``train`` set, as recipe text."""
    recipe = yaml.safe_load(SMALL)
    for key in drop:
        section, name = key.split(".")
        del recipe[section][name]
    recipe["data"].update(data or {})
    recipe["train"].update(train)
    return yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None)


@pytest.fixture
def write(tmp_path):
    """write('name.yaml', text) -> path of a recipe file in a temporary folder."""

    def _write(name, text):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return _write


def pytest_addoption(parser):
    parser.addoption(
        "--shuffle",
        type=int,
        metavar="SEED",
        help="run the modules in an order shuffled by SEED, and each module's tests "
        "shuffled too (the suite must pass in any order; tools/shuffled_suite.py)",
    )


def shuffle(items, seed: int):
    """Modules in a seeded random order, each module's tests shuffled within it (as
    pytest-randomly does: module-scoped fixtures are still set up once a module)."""
    import random

    rng = random.Random(seed)
    modules = {}
    for item in items:
        modules.setdefault(item.module.__name__ if item.module else "", []).append(item)
    order = list(modules.values())
    rng.shuffle(order)
    for group in order:
        rng.shuffle(group)
    items[:] = [item for group in order for item in group]


def pytest_collection_modifyitems(config, items):
    if config.getoption("--shuffle") is not None:
        shuffle(items, config.getoption("--shuffle"))
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


_SIGNALS = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]


def _set_by_libraries(key: str) -> bool:
    return key == "PYTEST_CURRENT_TEST" or key.startswith(("TORCHINDUCTOR_", "KMP_"))


def _global_state():
    """What one test could leave behind for the next: torch's thread count, signal handlers, the
    working folder and the environment. (Warning filters are not here: pytest's warnings plugin
    restores them around every test.) Not compared: pytest's own PYTEST_CURRENT_TEST, and the
    variables libraries set once when first imported: TORCHINDUCTOR_CACHE_DIR (torch's
    inductor) and KMP_DUPLICATE_LIB_OK / KMP_INIT_AT_FORK (scikit-learn's OpenMP set-up)."""
    import torch

    return {
        "torch.get_num_threads()": torch.get_num_threads(),
        "signal handlers": {int(s): signal.getsignal(s) for s in _SIGNALS},
        "os.getcwd()": os.getcwd(),
        "os.environ": {k: v for k, v in os.environ.items() if not _set_by_libraries(k)},
    }


def _restore(state):
    import torch

    torch.set_num_threads(state["torch.get_num_threads()"])
    for number, handler in state["signal handlers"].items():
        signal.signal(number, handler)
    os.chdir(state["os.getcwd()"])
    for key in [k for k in os.environ if k not in state["os.environ"]]:
        if not _set_by_libraries(key):
            del os.environ[key]
    os.environ.update(state["os.environ"])


def _difference(name, before, after) -> str:
    if isinstance(before, dict):
        keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        return f"{name} {keys}"
    return f"{name} {before!r} -> {after!r}"


@pytest.fixture(autouse=True)
def no_leaked_global_state():
    """A test that leaves global state changed fails (and the state is put back), so the suite
    passes in any order: a test left at 1 thread made a later bit-identical resume test compare
    a 1-thread run with a 2-thread one. Autouse, so set up before and torn down after the
    test's own fixtures: what monkeypatch changed is undone before this looks."""
    before = _global_state()
    yield
    after = _global_state()
    leaked = [_difference(name, before[name], after[name]) for name in before if before[name] != after[name]]
    if leaked:
        _restore(before)
        pytest.fail(
            f"the test left global state changed: {', '.join(leaked)} "
            f"(restore it, e.g. with monkeypatch or try/finally)",
            pytrace=False,
        )
