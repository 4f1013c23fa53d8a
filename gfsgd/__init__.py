"""gfsgd: mini-batch SGD with momentum through generating functions.

Velikanov, Kuznedelev, Yarotsky, "A view of mini-batch SGD via generating functions" (ICLR 2023).
Public surface: Problem, Grid, Curves, Schedule, the regimes (gfsgd.regimes.*), the theory (gfsgd.theory)
and the results table (gfsgd.results).
"""
from . import ntk, spectrum  # noqa: F401  (define Problem.from_network, Problem.from_operator)
from .curves import Curves
from .grid import Grid, execute
from .problem import Problem
from .recommend import recommend
from .schedules import Schedule
from .version import __version__
__all__ = ["Problem", "Grid", "Curves", "Schedule", "execute", "recommend", "__version__"]
