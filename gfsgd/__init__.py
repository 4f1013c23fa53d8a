"""gfsgd: mini-batch SGD with momentum through generating functions.

Velikanov, Kuznedelev, Yarotsky, "A view of mini-batch SGD via generating functions" (ICLR 2023).
Public surface: Problem (built by Problem.synthetic, Problem.from_kernel, problem_from_network,
problem_from_operator), Grid, Curves, Schedule, recommend, design_schedule, the regimes (gfsgd.regimes.*), the theory (gfsgd.theory) and
the results table (gfsgd.results).
"""
from .curves import Curves
from .grid import Grid, execute
from .ntk import problem_from_network
from .problem import Problem
from .recommend import recommend
from .recommend.design import ScheduleDesign, design_schedule
from .schedules import Schedule
from .spectrum import problem_from_operator
from .version import __version__


def _deprecated(name, target):
    """Problem.<name>: a deprecated alias of gfsgd.<target> (same arguments) that warns and calls it. Attached here,
    by the package's face, so that gfsgd.problem does not reach up to gfsgd.ntk and gfsgd.spectrum."""
    import warnings

    def alias(cls, *args, **kwargs):
        warnings.warn(f"Problem.{name} is deprecated: use gfsgd.{target.__name__} (same arguments)",
                      DeprecationWarning, stacklevel=2)
        return target(*args, **kwargs)
    alias.__name__, alias.__doc__ = name, f"Deprecated: use `gfsgd.{target.__name__}` (same arguments)."
    return classmethod(alias)


Problem.from_network = _deprecated("from_network", problem_from_network)
Problem.from_operator = _deprecated("from_operator", problem_from_operator)
__all__ = ["Problem", "Grid", "Curves", "Schedule", "execute", "recommend", "design_schedule", "ScheduleDesign",
           "problem_from_network",
           "problem_from_operator", "__version__"]
