"""gfsgd: mini-batch SGD with momentum through generating functions.

Velikanov, Kuznedelev, Yarotsky, "A view of mini-batch SGD via generating functions" (ICLR 2023).
Public surface: Problem, Grid, Curves, Schedule, the regimes (gfsgd.regimes.*), the theory (gfsgd.theory)
and the results table (gfsgd.results).
"""
from .grid import Grid, execute
from .problem import Problem
from .regimes import Curves
from .schedules import Schedule

__version__ = "0.1.0"
__all__ = ["Problem", "Grid", "Curves", "Schedule", "execute", "__version__"]
