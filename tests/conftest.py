import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def small_problem():
    from gfsgd import Problem
    return Problem.synthetic(24, nu=1.3, kappa=0.8, lambda_min=0.02, seed=3)
