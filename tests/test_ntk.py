"""gfsgd.ntk: both empirical-NTK methods against per-example autograd gradients, against each other on the
paper's network, the analytic ReLU NTK against wide networks, and problem_from_network (with the deprecated
Problem.from_network / Problem.from_operator aliases)."""
import math

import pytest
import torch
from torch import nn

from gfsgd import Problem, problem_from_network
from gfsgd.models import MLP, paper_network
from gfsgd.ntk import empirical_ntk, network_output, relu_ntk, structured_support


def per_example_ntk(model, x1, x2=None):
    """Independent reference: torch.autograd.grad per example, stacked into J [n, P]; K = J1 J2^T."""
    def jac(x):
        rows = []
        for i in range(x.shape[0]):
            out = model(x[i:i + 1]).sum()
            g = torch.autograd.grad(out, [p for p in model.parameters() if p.requires_grad])
            rows.append(torch.cat([t.reshape(-1) for t in g]))
        return torch.stack(rows)
    J1 = jac(x1)
    J2 = J1 if x2 is None else jac(x2)
    return J1 @ J2.T


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


class Plain(nn.Module):
    """Standard-parameterised torch.nn.Linear layers (the structured path handles them too)."""
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 1))

    def forward(self, x):
        return self.body(x)  # [n, 1]


class Scaled(nn.Module):
    """A parameter outside any Linear layer: only the Jacobian method applies."""
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.out = nn.Linear(6, 1)
        self.gain = nn.Parameter(torch.tensor(1.3))

    def forward(self, x):
        return self.out(torch.tanh(self.gain * self.lin(x))).squeeze(-1)


SMALL = [
    lambda: MLP(5, width=7, depth=3, activation="tanh", sigma_b=0.3, seed=1, dtype=torch.float64),
    lambda: MLP(5, width=9, depth=2, activation="relu", seed=2, dtype=torch.float64),
    lambda: Plain().double(),
]


@pytest.mark.parametrize("make", SMALL, ids=["mlp-tanh-depth3", "mlp-relu", "torch-linear"])
@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_methods_equal_per_example_gradients(make, method):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(13, 5 if isinstance(model, MLP) else 4, dtype=torch.float64)
    ref = per_example_ntk(model, x)
    K = empirical_ntk(model, x, method=method, device="cpu")
    assert K.dtype == torch.float64 and K.shape == (13, 13)
    assert rel(K, ref) < 1e-10
    assert torch.equal(K, K.T)  # symmetric bit for bit: diagonal blocks symmetrised, the rest mirrored
    # cross-kernel and a tiny memory budget (many row blocks) give the same numbers
    K12 = empirical_ntk(model, x[:5], x[3:], method=method, device="cpu", memory_budget=4096)
    assert rel(K12, ref[:5, 3:]) < 1e-10
    Kb = empirical_ntk(model, x, method=method, device="cpu", memory_budget=4096)
    assert rel(Kb, ref) < 1e-10
    K3 = empirical_ntk(model, x, method=method, device="cpu", block_size=3)
    assert rel(K3, ref) < 1e-10 and torch.equal(K3, K3.T)


def test_auto_falls_back_to_jacobian():
    torch.manual_seed(0)
    model = Scaled().double()
    assert structured_support(model)[0] is False
    x = torch.randn(9, 4, dtype=torch.float64)
    ref = per_example_ntk(model, x)
    assert rel(empirical_ntk(model, x, device="cpu"), ref) < 1e-10
    with pytest.raises(ValueError, match="structured"):
        empirical_ntk(model, x, method="structured", device="cpu")
    assert structured_support(MLP(3, 4))[0] is True


def test_methods_agree_on_the_paper_network():
    model = paper_network(seed=0)  # 784 -> 1000 -> 1, ReLU, float32 parameters, kernel in float64
    x = torch.randn(24, 784, generator=torch.Generator().manual_seed(1))
    Ks = empirical_ntk(model, x, method="structured", device="cpu")
    Kj = empirical_ntk(model, x, method="jacobian", device="cpu")
    assert rel(Ks, Kj) < 1e-12
    K32 = empirical_ntk(model, x, method="structured", device="cpu", dtype="float32")
    assert K32.dtype == torch.float32 and rel(K32.double(), Ks) < 1e-5


def test_relu_ntk_matches_wide_networks():
    """Empirical NTK of width-n networks -> relu_ntk with error ~ C / sqrt(n).

    Measured (N = 16 points in D = 10, depth 2, sigma_b = 0.5, mean relative Frobenius error over 3 seeds):
    n = 256: 0.056, n = 4096: 0.016, n = 16384: 0.0065, i.e. err * sqrt(n) ~ 0.8-1.0.
    Asserted: err <= 3 / sqrt(n) for every width, and the error at 16384 is < 1/2 of the error at 256.
    """
    x = torch.randn(16, 10, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    theta = relu_ntk(x, depth=2, sigma_b=0.5)
    errs = {}
    for width in (256, 4096, 16384):
        e = [rel(empirical_ntk(MLP(10, width, 2, sigma_b=0.5, seed=s), x, device="cpu"), theta) for s in range(3)]
        errs[width] = sum(e) / len(e)
        assert errs[width] <= 3 / math.sqrt(width), (width, errs[width])
    assert errs[16384] < 0.5 * errs[256]
    # deeper: depth 3 at width 2048
    theta3 = relu_ntk(x, depth=3, sigma_w=1.2, sigma_b=0.2)
    e3 = rel(empirical_ntk(MLP(10, 2048, 3, sigma_w=1.2, sigma_b=0.2, seed=0), x, device="cpu"), theta3)
    assert e3 <= 3 / math.sqrt(2048)


def test_relu_ntk_closed_form_one_hidden_layer():
    """Depth 2, no bias: Theta = (x.x'/D) (pi - t)/(2 pi) + |x||x'|/D (sin t + (pi - t) cos t)/(2 pi)."""
    x = torch.randn(7, 3, dtype=torch.float64)
    D = 3
    nx = x.norm(dim=1)
    cos = (x @ x.T / (nx[:, None] * nx[None, :])).clamp(-1, 1)
    cos.diagonal().fill_(1.0)
    t = torch.arccos(cos)
    expect = (x @ x.T / D) * (math.pi - t) / (2 * math.pi) \
        + (nx[:, None] * nx[None, :] / D) * (torch.sin(t) + (math.pi - t) * cos) / (2 * math.pi)
    torch.testing.assert_close(relu_ntk(x, depth=2, bias=False), expect, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="depth"):
        relu_ntk(x, depth=0)


def test_an_output_that_does_not_fit_is_an_error():
    """C outputs per example are a kernel [NC, NC] now (tests/test_outputs.py); an output of another shape, or
    targets that do not match the outputs, are still clear errors."""
    model = nn.Sequential(nn.Linear(4, 6), nn.Unflatten(1, (3, 2)))  # [n, 3, 2]: not [n] or [n, C]
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"must be \[n\] or \[n, C\]"):
        empirical_ntk(model, x, device="cpu")
    with pytest.raises(ValueError, match=r"give y \[N, C\] for a model with C outputs"):
        problem_from_network(nn.Sequential(nn.Linear(4, 3)), x, torch.zeros(5), device="cpu")


def test_problem_from_network():
    torch.manual_seed(0)
    model = MLP(6, width=50, depth=2, seed=0)
    X = torch.randn(30, 6, dtype=torch.float64)
    y = torch.randn(30, dtype=torch.float64)
    p = problem_from_network(model, X, y, device="cpu")
    K_emp = per_example_ntk(model.double(), X)
    lmax = torch.linalg.eigvalsh(K_emp)[-1].item()
    assert abs(p.lambda_max_raw - lmax) < 1e-10 * lmax
    assert abs(p.eigvals[0].item() - 1.0) < 1e-12
    assert rel(p.K, K_emp / lmax) < 1e-10
    torch.testing.assert_close(p.d0, network_output(model, X, device="cpu") - y, rtol=1e-10, atol=1e-10)
    assert p.network.N == 30 and p.network.lambda_max_raw == p.lambda_max_raw
    assert abs(p.meta["lr_nn_per_alpha"] - 30 / lmax) < 1e-9 * 30 / lmax
    with pytest.raises(ValueError, match="same N"):
        problem_from_network(model, X, y[:10], device="cpu")


def test_the_deprecated_problem_constructors_warn_and_delegate():
    """Problem.from_network and Problem.from_operator still work, with the same arguments and results as
    gfsgd.problem_from_network and gfsgd.problem_from_operator, and warn that those replace them."""
    import gfsgd
    assert gfsgd.problem_from_network is problem_from_network
    g = torch.Generator().manual_seed(0)
    model = MLP(6, width=20, depth=2, seed=0)
    X = torch.randn(12, 6, dtype=torch.float64, generator=g)
    y = torch.randn(12, dtype=torch.float64, generator=g)
    with pytest.warns(DeprecationWarning, match="use gfsgd.problem_from_network"):
        p = Problem.from_network(model, X, y, device="cpu")
    ref = problem_from_network(model, X, y, device="cpu")
    torch.testing.assert_close(p.K, ref.K, rtol=1e-12, atol=0)
    torch.testing.assert_close(p.d0, ref.d0, rtol=0, atol=0)
    assert p.network is not None and p.lambda_max_raw == pytest.approx(ref.lambda_max_raw, rel=1e-12)
    s = Problem.synthetic(64, 1.5, 1.0, seed=0)
    with pytest.warns(DeprecationWarning, match="use gfsgd.problem_from_operator"):
        q = Problem.from_operator(s.K, s.d0, rank=16)
    ref = gfsgd.problem_from_operator(s.K, s.d0, rank=16)
    assert q.N == ref.N == 64 and q.meta["spectrum"]["rank"] == 16
    torch.testing.assert_close(q.eigvals, ref.eigvals, rtol=1e-12, atol=0)
