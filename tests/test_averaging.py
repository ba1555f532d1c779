"""Averaging kinds against hand computations: lookahead's ramped decay written back into
the weights, and the moving average's evaluated copy."""

import pytest
import torch
from torch import nn

from netgraph.train.averaging import AVERAGING, Lookahead


def test_lookahead_arithmetic_over_several_steps():
    """Every 2 steps of 7: d = 0.9^2 (k / 7)^3, avg += (1 - d)(w - avg), w <- avg; after step 7
    w <- avg. The weights move by a fixed amount each step in between (an optimizer stand-in)."""
    model = nn.BatchNorm1d(3)  # a weight, a bias and running statistics: all averaged
    look = Lookahead(model, every=2, decay=0.9, power=3)
    state = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    average = {k: v.clone() for k, v in state.items()}
    for k in range(1, 8):
        with torch.no_grad():
            for v in model.state_dict().values():
                if v.is_floating_point():
                    v.add_(0.5 * k)
        for key in state:
            state[key] = state[key] + 0.5 * k
        look.after_step(k, 7)
        if k % 2 == 0:
            d = 0.9**2 * (k / 7) ** 3
            for key in state:
                average[key] = average[key] + (1 - d) * (state[key] - average[key])
                state[key] = average[key].clone()
        if k == 7:
            state = {key: average[key].clone() for key in state}
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                torch.testing.assert_close(value, state[key], msg=f"step {k}, {key}")
    assert look.evaluated is model  # the weights are evaluated: they are the average at the end


def test_lookahead_state_round_trips():
    model = nn.Linear(2, 2)
    look = Lookahead(model, every=1, decay=0.5, power=1)
    with torch.no_grad():
        model.weight.add_(1)
    look.after_step(1, 4)
    other = Lookahead(nn.Linear(2, 2), every=1, decay=0.5, power=1)
    other.load_state_dict(look.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.average, look.average))
    with pytest.raises(ValueError, match="a lookahead state of 1 tensors"):
        other.load_state_dict({"0": torch.zeros(2, 2)})


def test_ema_is_registered_with_its_defaults():
    model = nn.Linear(2, 2)
    ema = AVERAGING["ema"].function(model)
    assert (ema.rho, ema.every) == (0.99**5, 5) and ema.evaluated is not model
    with torch.no_grad():
        model.weight.fill_(1.0)
    for k in range(1, 5):
        ema.after_step(k, 100)  # steps 1-4: no update before the 5th
    assert not torch.equal(ema.model.weight, model.weight)
    before = ema.model.weight.clone()
    ema.after_step(5, 100)
    torch.testing.assert_close(ema.model.weight, 0.99**5 * before + (1 - 0.99**5) * 1.0)


def test_an_ema_counted_per_epoch_needs_the_epoch_length():
    with pytest.raises(ValueError, match="needs steps_per_epoch"):
        AVERAGING["ema"].function(nn.Linear(2, 2), counter="epoch")
