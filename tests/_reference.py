"""Independent reference computations shared by tests: a network trained by hand, step by step."""
import torch


def train_by_hand(model, X, Y, lr, beta, T, at, measure):
    """Full-batch heavy ball on 0.5 mean_i |f(x_i) - y_i|^2 (summed over outputs), written out with autograd:
    returns {t: measure(f, params)} for t in `at`, with f(x) the network at the current parameters."""
    names = [n for n, _ in model.named_parameters()]
    params = [q.detach().clone().requires_grad_(True) for q in model.parameters()]
    vel = [torch.zeros_like(q) for q in params]

    def f(x, ps=None):
        return torch.func.functional_call(model, dict(zip(names, params if ps is None else ps)), (x,))

    out = {}
    for t in range(T + 1):
        if t in at:
            out[t] = measure(f, {n: q.detach() for n, q in zip(names, params)})
        if t == T:
            break
        res = f(X) - Y
        loss = 0.5 * (res ** 2).reshape(X.shape[0], -1).sum(1).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for q, v, gq in zip(params, vel, grads):
                v.mul_(beta).sub_(lr * gq)
                q.add_(v)
    return out
