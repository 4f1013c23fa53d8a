"""The networks gfsgd ships: NTK-parameterised multilayer perceptrons, and a small standard CNN (`CNN`).

A layer of width n_out with fan-in n_in computes

    h = W a / sqrt(n_in) + b,      W_ij ~ N(0, sigma_w^2),   b_i ~ N(0, sigma_b^2)        # h: [n, n_out]

(the "NTK parameterisation": the 1/sqrt(fan_in) factor sits in the forward pass, not in the initialisation,
so every entry of W moves by O(1) under a learning rate of O(1) and the network linearises as the width
grows). An MLP of `depth` such layers (depth - 1 hidden layers of `width` units, an activation after every
hidden layer, none after the last) maps x [n, in_features] to a scalar per example, f [n].

The paper's network (Velikanov, Kuznedelev, Yarotsky, ICLR 2023) is MLP(784, width=1000, depth=2,
activation="relu"): one hidden layer of 1000 ReLU units and a scalar output.

The infinite-width NTK of this parameterisation is `gfsgd.ntk.relu_ntk` (same sigma_w, sigma_b, depth).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from .errors import InputError

__all__ = ["NTKLinear", "MLP", "CNN", "ACTIVATIONS", "paper_network"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


class NTKLinear(nn.Module):
    """h = weight_scale * a W^T + b with weight_scale = 1 / sqrt(in_features).

    weight [out_features, in_features] ~ N(0, sigma_w^2); bias [out_features] ~ N(0, sigma_b^2) (or None).
    The per-example gradient is dh/dW = weight_scale * delta a^T, dh/db = delta: the structured NTK path of
    gfsgd.ntk uses `weight_scale` to weight this layer's contribution (a a^T) o (delta delta^T).
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, sigma_w: float = 1.0,
                 sigma_b: float = 0.0, generator: torch.Generator | None = None, dtype=None, device=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight_scale = 1.0 / math.sqrt(self.in_features)
        w = torch.randn(self.out_features, self.in_features, generator=generator, dtype=dtype) * sigma_w
        self.weight = nn.Parameter(w.to(device))
        if bias:
            b = torch.randn(self.out_features, generator=generator, dtype=dtype) * sigma_b
            self.bias = nn.Parameter(b.to(device))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return nn.functional.linear(x * self.weight_scale, self.weight, self.bias)  # = s x W^T + b

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _check_int(value, name, low):
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < low:
        raise InputError(f"{name} must be an integer >= {low}, got {name}={value!r}")
    return int(value)


class MLP(nn.Module):
    """NTK-parameterised MLP: f(x) [n] for x [n, in_features] (or [n, C] with outputs=C > 1).

    Args:
        in_features: input dimension D.
        width: units per hidden layer (default 1000, the paper's).
        depth: number of NTKLinear layers, so depth - 1 hidden layers (default 2: one hidden layer).
        activation: one of ACTIVATIONS ("relu", "tanh", "gelu", "softplus", "sigmoid", "identity").
        sigma_w, sigma_b: init standard deviations of weights and biases (default 1 and 0).
        bias: whether layers have biases (default True; biases are trained even when sigma_b = 0).
        seed: seeds the initialisation (None: torch's global generator).
        outputs: C, the outputs per example (default 1: a scalar output; docs/theory.md#outputs).
        dtype, device: of the parameters (default torch's default dtype, CPU).
    """

    def __init__(self, in_features: int, width: int = 1000, depth: int = 2, activation: str = "relu", *,
                 sigma_w: float = 1.0, sigma_b: float = 0.0, bias: bool = True, seed: int | None = None,
                 dtype=None, device=None, outputs: int = 1):
        super().__init__()
        in_features = _check_int(in_features, "in_features", 1)
        width = _check_int(width, "width", 1)
        depth = _check_int(depth, "depth", 1)
        outputs = _check_int(outputs, "outputs", 1)
        if activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {sorted(ACTIVATIONS)}, got activation={activation!r}")
        for name, val in (("sigma_w", sigma_w), ("sigma_b", sigma_b)):
            if not (math.isfinite(val) and val >= 0):
                raise InputError(f"{name} must be a finite number >= 0, got {name}={val}")
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        dims = [in_features] + [width] * (depth - 1) + [outputs]
        layers = []
        for i in range(depth):
            layers.append(NTKLinear(dims[i], dims[i + 1], bias=bias, sigma_w=sigma_w, sigma_b=sigma_b,
                                    generator=gen, dtype=dtype, device=device))
            if i < depth - 1:
                layers.append(ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)
        self.in_features, self.width, self.depth, self.activation = in_features, width, depth, activation
        self.sigma_w, self.sigma_b, self.bias = float(sigma_w), float(sigma_b), bool(bias)
        self.outputs = outputs

    def forward(self, x):
        out = self.net(x)
        return out.squeeze(-1) if self.outputs == 1 else out

    def reinitialized(self, seed: int) -> "MLP":
        """A new MLP of the same architecture, initialised with `seed` (independent initialisations)."""
        p = next(self.parameters())
        return MLP(self.in_features, self.width, self.depth, self.activation, sigma_w=self.sigma_w,
                   sigma_b=self.sigma_b, bias=self.bias, seed=seed, dtype=p.dtype, device=p.device,
                   outputs=self.outputs)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict:
        """Lightweight description (saved with results)."""
        return dict(kind="MLP", in_features=self.in_features, width=self.width, depth=self.depth,
                    activation=self.activation, sigma_w=self.sigma_w, sigma_b=self.sigma_b, bias=self.bias,
                    n_params=self.n_params, **({} if self.outputs == 1 else dict(outputs=self.outputs)))


def paper_network(in_features: int = 784, *, seed: int | None = 0, **kwargs) -> MLP:
    """The paper's network: one hidden layer of 1000 ReLU units, scalar output, NTK parameterisation."""
    return MLP(in_features, width=1000, depth=2, activation="relu", seed=seed, **kwargs)


class CNN(nn.Module):
    """A small standard convolutional network, as users train one (PyTorch's default initialisation):

        conv(k x k, c1) - ReLU - avgpool 2 - conv(k x k, c2) - ReLU - avgpool 2 - flatten - linear(hidden) - ReLU
        - linear(outputs)

    Args:
        image_shape: (channels, height, width) of one input; inputs may come flat, x [n, channels * height * width]
            (as gfsgd.data gives them), or as images [n, channels, height, width].
        channels: (c1, c2); kernel_size: k (padding keeps the size); hidden: units of the first linear layer.
        outputs: C, outputs per example (1: f [n]; C > 1: f [n, C]).
        seed: seeds the initialisation (None: torch's global generator); dtype: of the parameters.
    Its empirical NTK goes through the Jacobian path of gfsgd.ntk (blocked by memory_budget).
    """

    def __init__(self, image_shape=(1, 28, 28), channels=(8, 16), kernel_size: int = 3, hidden: int = 64, *,
                 outputs: int = 1, seed: int | None = None, dtype=None):
        super().__init__()
        if len(tuple(image_shape)) != 3:
            raise InputError(f"image_shape must be (channels, height, width), got image_shape={image_shape!r}")
        cin, H, W = (_check_int(v, "image_shape", 1) for v in image_shape)
        c1, c2 = (_check_int(v, "channels", 1) for v in channels)
        k = _check_int(kernel_size, "kernel_size", 1)
        hidden = _check_int(hidden, "hidden", 1)
        outputs = _check_int(outputs, "outputs", 1)
        if H < 4 or W < 4:
            raise InputError(f"the image must be at least 4 x 4 (two 2 x 2 poolings), got {H} x {W}")
        if seed is not None:
            state = torch.random.get_rng_state()
            torch.manual_seed(int(seed))
        self.features = nn.Sequential(nn.Conv2d(cin, c1, k, padding=k // 2), nn.ReLU(), nn.AvgPool2d(2),
                                      nn.Conv2d(c1, c2, k, padding=k // 2), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c2 * (H // 4) * (W // 4), hidden), nn.ReLU(), nn.Linear(hidden, outputs))
        if seed is not None:
            torch.random.set_rng_state(state)
        if dtype is not None:
            self.to(dtype)
        self.image_shape, self.channels, self.kernel_size, self.hidden = (cin, H, W), (c1, c2), k, hidden
        self.outputs = outputs
        self.seed = seed

    def forward(self, x):
        if x.ndim == 2:
            x = x.reshape(x.shape[0], *self.image_shape)
        out = self.head(self.features(x))
        return out.squeeze(-1) if self.outputs == 1 else out

    def reinitialized(self, seed: int) -> "CNN":
        p = next(self.parameters())
        return CNN(self.image_shape, self.channels, self.kernel_size, self.hidden, outputs=self.outputs, seed=seed,
                   dtype=p.dtype)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict:
        return dict(kind="CNN", image_shape=list(self.image_shape), channels=list(self.channels),
                    kernel_size=self.kernel_size, hidden=self.hidden, outputs=self.outputs, n_params=self.n_params)
