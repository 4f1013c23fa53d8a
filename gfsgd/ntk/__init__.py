"""Neural tangent kernels: the empirical NTK of a torch network (torch.func, row-blocked), its matrix-free
operator, the analytic infinite-width NTK of NTK-parameterised ReLU MLPs, and the bridge from a network to a
Problem. One concept per module:

empirical   empirical_ntk (structured and Jacobian methods), network_output, params_and_buffers,
            structured_support, METHODS
operator    KernelOperator, kernel_operator (matrix-free K_emp V: structured or jvp/vjp)
analytic    relu_ntk
network     NetworkProblem, problem_from_network (also gfsgd.problem_from_network; dense or rank=k)
"""
from .analytic import relu_ntk
from .empirical import (DEFAULT_MEMORY_BUDGET, METHODS, empirical_ntk, network_output, params_and_buffers,
                        structured_support)
from .network import NetworkProblem, problem_from_network
from .operator import KernelOperator, kernel_operator

__all__ = ["empirical_ntk", "kernel_operator", "KernelOperator", "relu_ntk", "network_output", "problem_from_network",
           "NetworkProblem", "structured_support", "params_and_buffers", "METHODS", "DEFAULT_MEMORY_BUDGET"]
