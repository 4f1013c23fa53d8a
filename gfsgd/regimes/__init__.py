"""The training regimes. Each has the same contract:

    run(problem, configs, n_steps, *, schedule=None, log_steps=None, seed=0, device="auto", ...) -> Curves

- linearized: the linearized model with sampled mini-batches (optionally R repeats, mean and standard error);
- full: the exact batch-averaged second-moment dynamics;
- spectral_diagonal: the SD approximation with parameter tau;
- nn: the real network (see gfsgd.regimes.nn).
"""
from ..configs import default_log_steps  # noqa: F401  (re-exported)
from ..curves import Curves  # noqa: F401  (re-exported)

__all__ = ["Curves", "default_log_steps"]
