"""gfsgd.models: the NTK parameterisation, initialisation statistics, options and errors."""
import math

import pytest
import torch

from gfsgd.models import MLP, NTKLinear, paper_network


def test_forward_is_the_ntk_parameterisation():
    m = MLP(5, width=7, depth=3, activation="tanh", sigma_w=1.3, sigma_b=0.4, seed=0, dtype=torch.float64)
    x = torch.randn(11, 5, dtype=torch.float64)
    (W1, b1), (W2, b2), (W3, b3) = [(l.weight, l.bias) for l in m.net if isinstance(l, NTKLinear)]
    h = torch.tanh(x @ W1.T / math.sqrt(5) + b1)
    h = torch.tanh(h @ W2.T / math.sqrt(7) + b2)
    f = (h @ W3.T / math.sqrt(7) + b3).squeeze(-1)
    out = m(x)
    assert out.shape == (11,)
    torch.testing.assert_close(out, f, rtol=1e-13, atol=1e-13)


def test_initialisation_statistics_and_seed():
    m = MLP(400, width=2000, depth=2, sigma_w=1.7, sigma_b=0.3, seed=1, dtype=torch.float64)
    W1, b1 = m.net[0].weight, m.net[0].bias
    assert abs(W1.std().item() - 1.7) < 0.01  # 800k samples: std error ~ 1.7 / sqrt(1.6e6)
    assert abs(W1.mean().item()) < 0.01
    assert abs(b1.std().item() - 0.3) < 0.03
    m2 = MLP(400, width=2000, depth=2, sigma_w=1.7, sigma_b=0.3, seed=1, dtype=torch.float64)
    assert torch.equal(m2.net[0].weight, W1)
    m3 = MLP(400, width=2000, depth=2, sigma_w=1.7, sigma_b=0.3, seed=2, dtype=torch.float64)
    assert not torch.equal(m3.net[0].weight, W1)


def test_paper_network_shape_and_options():
    m = paper_network()
    assert m.n_params == 784 * 1000 + 1000 + 1000 + 1
    assert m(torch.randn(3, 784)).shape == (3,)
    assert m.describe()["width"] == 1000 and m.describe()["activation"] == "relu"
    m = MLP(4, width=6, depth=1, bias=False)  # a linear model: one layer, no hidden units
    assert m.n_params == 4 and m(torch.randn(2, 4)).shape == (2,)
    for act in ("relu", "tanh", "gelu", "softplus", "sigmoid", "identity"):
        assert torch.isfinite(MLP(3, 5, 3, act, seed=0)(torch.randn(4, 3))).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_features=0), "in_features"),
    (dict(in_features=3, width=0), "width"),
    (dict(in_features=3, depth=1.5), "depth"),
    (dict(in_features=3, activation="swish"), "activation"),
    (dict(in_features=3, sigma_w=-1.0), "sigma_w"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)
