"""The registry of training rules (gfsgd.updates.base, docs/design.md#rules): a rule is one module, the regimes
ask it for its pieces, and nothing outside a rule's own module tests its type."""
import ast
import importlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gfsgd import Problem, updates
from gfsgd.regimes import full, linearized, spectral_diagonal

ROOT = Path(__file__).resolve().parents[1] / "gfsgd"

TOY = textwrap.dedent('''
    """A toy rule written outside gfsgd: SGD whose gradient noise is scaled by s,

        g = K d + sqrt(s) (g_B - K d),

    so its mean step is SGD's and its noise covariance s times SGD's. The second-moment regimes run it through
    noise_scale alone; the sampled linearized regime takes two pieces: the batch's weights times sqrt(s), and the
    extra term -alpha (1 - sqrt(s)) K d."""
    import math
    from dataclasses import dataclass

    import torch

    from gfsgd.updates import Pieces, UpdateRule, register


    @register
    @dataclass(frozen=True)
    class ScaledNoise(UpdateRule):
        s: float = 1.0
        name = "toy_scaled_noise"
        regimes = frozenset({"full", "sd", "linearized"})

        @property
        def noise_scale(self):
            return self.s

        def linearized_pieces(self, ctx):
            root = math.sqrt(self.s)

            def weights(st, h, idx, Kb, dB, vals):
                return vals * root

            def extra(st, h):
                dn = st["d"] * (-(1.0 - root) * h.lr)[None, :, None]
                st["v"].add_(torch.matmul(dn, ctx.K))
                if ctx.KtT is not None:
                    st["vt"].add_(torch.matmul(dn, ctx.KtT))

            return Pieces(weights=weights, extra=extra, full_batch_shortcut=False)
''')


@pytest.fixture
def toy_rule(tmp_path):
    (tmp_path / "toy_rule_module.py").write_text(TOY)
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("toy_rule_module")
        yield mod.ScaledNoise
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("toy_rule_module", None)
        updates.RULE_NAMES.pop("toy_scaled_noise", None)


def test_a_rule_in_a_temporary_module_runs_in_full_sd_and_linearized(toy_rule):
    """One new file, no other change: the exact full regime (noise_scale) and the sampled linearized regime (its
    own pieces) agree within sampling error, and s = 1 is SGD exactly in every regime."""
    p = Problem.synthetic(24, 1.5, 1.0, seed=3)
    configs = [(0.5, 0.0, 4), (0.4, 0.3, 8)]
    T, s = 40, 2.0
    rule = toy_rule(s)
    assert "toy_scaled_noise" in updates.RULE_NAMES and toy_rule in updates.SUPPORTED["full"]
    exact = full.run(p, configs, T, update=rule, progress=False)
    sgd = full.run(p, configs, T, progress=False)
    assert np.all(exact.loss[:, -1] > 1.05 * sgd.loss[:, -1])  # more noise, more loss: the rule did something
    sd = spectral_diagonal.run(p, configs, T, update=rule, progress=False)
    assert np.all(np.isfinite(sd.loss)) and sd.meta["update"] == "toy_scaled_noise"
    mc = linearized.run(p, configs, T, update=rule, repeats=3000, progress=False)
    z = (mc.loss[:, -1] - exact.loss[:, -1]) / mc.loss_se[:, -1]
    assert np.all(np.abs(z) < 4), z
    # s = 1 is SGD: the same exact curve, and the same sampled paths to round-off
    np.testing.assert_allclose(full.run(p, configs, T, update=toy_rule(1.0), progress=False).loss, sgd.loss,
                               rtol=1e-12)
    one = linearized.run(p, configs, T, update=toy_rule(1.0), repeats=4, progress=False)
    np.testing.assert_allclose(one.loss, linearized.run(p, configs, T, repeats=4, progress=False).loss, rtol=1e-10)


def test_a_rule_refuses_the_regimes_it_does_not_declare(toy_rule):
    with pytest.raises(updates.UnsupportedUpdate, match="the nn regime cannot run update=toy_scaled_noise"):
        updates.check_update(toy_rule(2.0), "nn")
    with pytest.raises(updates.UnsupportedUpdate, match="the theory regime cannot run update=toy_scaled_noise"):
        updates.check_update(toy_rule(2.0), "theory")


def test_register_refuses_a_taken_name_and_unknown_regimes():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Clash(updates.UpdateRule):
        name = "sgd"
        regimes = frozenset({"full"})
    with pytest.raises(ValueError, match="already registered"):
        updates.register(Clash)

    @dataclass(frozen=True)
    class Elsewhere(updates.UpdateRule):
        name = "elsewhere"
        regimes = frozenset({"full", "quantum"})
    with pytest.raises(ValueError, match="unknown regimes"):
        updates.register(Elsewhere)
    assert "elsewhere" not in updates.RULE_NAMES


def test_supported_is_read_from_the_rules_declarations():
    assert {c.name for c in updates.SUPPORTED["full"]} == {"sgd", "svag", "sde", "ngd", "gd_penalty"}
    assert {c.name for c in updates.SUPPORTED["sd"]} == {"sgd", "svag", "sde", "ngd"}
    assert {c.name for c in updates.SUPPORTED["linearized"]} == {"sgd", "svag", "ngd", "gd_penalty", "mb_penalty",
                                                                "normalized"}
    assert {c.name for c in updates.SUPPORTED["theory"]} == {"sgd", "svag", "sde", "ngd"}
    assert list(updates.RULE_NAMES)[:7] == ["sgd", "svag", "sde", "ngd", "gd_penalty", "mb_penalty", "normalized"]


def _rule_classes():
    return {c.__name__ for c in updates.RULE_NAMES.values()} | {"UpdateRule"}


def test_no_isinstance_on_rule_classes_outside_their_own_module():
    """A regime asks the rule; it never tests its type (grep for isinstance(x, <rule class>) over gfsgd/)."""
    rules = _rule_classes()
    own = {c.__name__: Path(sys.modules[c.__module__].__file__).resolve() for c in updates.RULE_NAMES.values()}
    own["UpdateRule"] = (ROOT / "updates" / "base.py").resolve()
    bad = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass") \
                    and len(node.args) == 2:
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} | \
                        {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
                for name in names & rules:
                    if own[name] != path.resolve():
                        bad.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} isinstance(..., {name})")
    assert not bad, "\n".join(bad)


def test_the_isinstance_check_sees_a_type_test():
    """The check above can fail: it finds the test in a synthetic source."""
    tree = ast.parse("def f(rule):\n    return isinstance(rule, (SDE, updates.SVAG))\n")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "isinstance"]
    names = {n.id for n in ast.walk(calls[0].args[1]) if isinstance(n, ast.Name)} | \
            {n.attr for n in ast.walk(calls[0].args[1]) if isinstance(n, ast.Attribute)}
    assert {"SDE", "SVAG"} <= names & _rule_classes()
