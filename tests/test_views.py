"""Test-time views: the weighted form of train.tta, views with parameters and compositions,
each against logits computed here by hand; the seed's list form unchanged bit for bit."""

import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netgraph import RecipeError, load_recipe
from netgraph.train.config import train_config
from netgraph.train.engine import TrainConfig, evaluate
from netgraph.train.views import TTA_VIEWS, describe_tta, parse_tta, predict

NETWORK = "network:\n  fc: {op: flatten}\n"


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def shifted(x, dy, dx):
    """Output pixel (i, j) = input pixel (i + dy, j + dx), reflected: padded by 2, sliced."""
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    return padded[:, :, 2 + dy : 2 + dy + x.shape[2], 2 + dx : 2 + dx + x.shape[3]]


def tta_of(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text) + NETWORK)
    return train_config(load_recipe(path)).tta


AIRBENCH_YAML = """
    train:
      tta:
        views:
          - {view: identity, weight: 2}
          - {view: flip, weight: 2}
          - {view: {translate: {dy: -1, dx: -1}}, weight: 1}
          - {view: [{translate: {dy: -1, dx: -1}}, flip], weight: 1}
          - {view: {translate: {dy: 1, dx: 1}}, weight: 1}
          - {view: [{translate: {dy: 1, dx: 1}}, flip], weight: 1}
"""


def test_weighted_views_against_the_logits_computed_here(tmp_path):
    """airbench94's six views, weights 2, 2, 1, 1, 1, 1 normalised to 1/4, 1/4, 1/8 x 4."""
    model, x = small_model(), torch.randn(6, 3, 8, 8)
    tta = tta_of(tmp_path, AIRBENCH_YAML)
    assert [w for _, _, w in parse_tta(tta)] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    up, down = shifted(x, -1, -1), shifted(x, 1, 1)
    # airbench94's own slicing, with reflect pad 1: padded[0:8, 0:8] and padded[2:10, 2:10]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    assert torch.equal(up, padded[:, :, 0:8, 0:8]) and torch.equal(down, padded[:, :, 2:10, 2:10])
    expected = (
        0.25 * model(x)
        + 0.25 * model(x.flip(3))
        + 0.125 * model(up)
        + 0.125 * model(up.flip(3))
        + 0.125 * model(down)
        + 0.125 * model(down.flip(3))
    )
    with torch.no_grad():
        torch.testing.assert_close(predict(model, x, tta), expected)
        torch.testing.assert_close(predict(model, x, "airbench"), expected)
        mirror = lambda v: (model(v) + model(v.flip(3))) / 2  # noqa: E731 (airbench's form)
        torch.testing.assert_close(
            predict(model, x, "airbench"), 0.5 * mirror(x) + 0.5 * (mirror(up) + mirror(down)) / 2
        )
    assert describe_tta(tta).startswith(
        "identity x 0.25, flip x 0.25, translate(dy=-1, dx=-1) x 0.125, "
        "translate(dy=-1, dx=-1) then flip x 0.125"
    )


def test_translate_view_and_composition_order():
    x = torch.randn(2, 3, 8, 8)
    ((_, view, _),) = parse_tta({"views": [{"view": {"translate": {"dy": 2, "dx": -1}}, "weight": 1}]})
    assert torch.equal(view(x), shifted(x, 2, -1))
    assert torch.equal(view(x)[:, :, :6, 1:], x[:, :, 2:, :7])  # the part inside the image: moved
    ((_, both, _),) = parse_tta(
        {"views": [{"view": [{"translate": {"dy": 1, "dx": 0}}, "flip"], "weight": 1}]}
    )
    assert torch.equal(both(x), shifted(x, 1, 0).flip(3))  # in order: shifted, then mirrored
    assert torch.equal(TTA_VIEWS["translate"].function(x, dy=0, dx=0), x)


def test_the_list_form_is_unchanged_bit_for_bit(tmp_path):
    """[flip] and longer lists: the seed's sum of logits divided by 1 + len(tta), exactly."""
    model, x = small_model(), torch.randn(7, 3, 8, 8)
    assert tta_of(tmp_path, "train: {tta: [flip]}\n") == ["flip"]
    with torch.no_grad():
        old = (model(x).float() + model(x.flip(3)).float()) / (1 + 1)
        assert torch.equal(predict(model, x, ["flip"]), old)
        assert torch.equal(predict(model, x, ("flip",)), old)
        up = {"translate": {"dy": -1, "dx": 0}}
        three = (model(x).float() + model(x.flip(3)).float() + model(shifted(x, -1, 0)).float()) / 3
        assert torch.equal(predict(model, x, ["flip", up]), three)
        assert torch.equal(predict(model, x, []), model(x).float())
        config = TrainConfig(tta=["flip"], eval_batch_size=4)
        labels = torch.arange(7) % 5
        accuracy, loss = evaluate(model, x, labels, config)
        logits = torch.cat([predict(model, x[:4], ["flip"]), predict(model, x[4:], ["flip"])])
        assert accuracy == (logits.argmax(1) == labels).sum().item() / 7
        assert loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_evaluate_uses_the_weighted_views():
    model, x, labels = small_model(), torch.randn(9, 3, 8, 8), torch.arange(9) % 5
    _, loss = evaluate(model, x, labels, TrainConfig(tta="airbench"))
    with torch.no_grad():
        mirror = lambda v: (model(v) + model(v.flip(3))) / 2  # noqa: E731
        logits = 0.5 * mirror(x) + 0.25 * mirror(shifted(x, -1, -1)) + 0.25 * mirror(shifted(x, 1, 1))
    assert loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)


@pytest.mark.parametrize(
    "tta, message, hint",
    [
        (
            "{views: [{view: flop, weight: 1}]}",
            r"r.yaml:2: unknown test-time view 'flop' in train.tta \(did you mean 'flip'\?\)",
            None,
        ),
        (
            "{views: [{view: [{translat: {dy: 1}}, flip], weight: 1}]}",
            r"r.yaml:2: unknown test-time view 'translat' in train.tta \(did you mean 'translate'\?\)",
            None,
        ),
        (
            "[identty]",
            r"r.yaml:2: unknown test-time view 'identty' in train.tta \(did you mean 'identity'\?\)",
            None,
        ),
        (
            "{views: [{view: flip, weight: 0}]}",
            r"r.yaml:2: a test-time view's weight must be a positive number, got 0",
            "normalised to sum 1",
        ),
        ("{views: [{view: flip, weight: -0.5}]}", r"weight must be a positive number, got -0.5", None),
        ("{views: [{view: flip, weight: heavy}]}", r"weight must be a positive number, got 'heavy'", None),
        ("{views: [{view: flip}]}", r"r.yaml:2: each train.tta.views item is \{view: V, weight: W\}", None),
        (
            "{views: [{view: {translate: {dz: 1}}, weight: 1}]}",
            r"r.yaml:2: unknown parameter 'dz' for test-time view 'translate'",
            None,
        ),
        ("{views: [{view: {translate: {dy: 0.5}}, weight: 1}]}", r"test-time view 'translate'.*'dy'", None),
        (
            "{view: flip}",
            r"r.yaml:2: train.tta must be a list of views, a mapping \{views: \[...\]\} or a preset",
            "[flip]",
        ),
        ("airbenhc", r"train.tta must be a list of views", None),
    ],
)
def test_mistakes_are_named_on_the_recipe_line(tmp_path, tta, message, hint):
    with pytest.raises(RecipeError, match=message) as err:
        tta_of(tmp_path, f"train:\n  tta: {tta}\n")
    if hint:
        assert hint in err.value.hint
