"""Both theory command lines, run as users run them (python -m ...), their printed numbers checked against
the library calls made here."""
import re
import subprocess
import sys

import numpy as np
import pytest

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.theory import symbolic


def run_module(*args):
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def table(text):
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(.*?\S)\s{2,}(\S.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def first_float(s):
    return float(re.search(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", s).group(0))


def test_theory_cli_matches_the_library():
    rows = table(run_module("gfsgd.theory", "--nu", "1.5", "--kappa", "3.5", "--N", "500", "--batch_size", "4",
                            "--budget", "200", "--momenta", "-0.3", "0", "0.5"))
    p = Problem.synthetic(500, 1.5, 3.5, basis=None)
    assert int(rows["N"]) == 500 and int(rows["batch size b"]) == 4
    assert first_float(rows["L_0"]) == pytest.approx(p.loss0, rel=1e-3)
    assert first_float(rows["lambda_crit"]) == pytest.approx(th.lambda_crit(p, 1.0), rel=1e-3)
    ac = th.critical_lr(p, np.array([-0.3, 0.0, 0.5]), 4, tau=1.0)
    for m, a in zip(("-0.30", "+0.00", "+0.50"), ac):
        assert first_float(rows[f"critical lr at beta = {m}"]) == pytest.approx(a, rel=1e-3)
    assert rows["phase"] == th.phase(1.5, 3.5) == "noise"
    assert first_float(rows["loss exponent xi (L_t ~ t^-xi)"]) == pytest.approx(th.loss_exponent(1.5, 3.5), rel=1e-3)
    opt = th.optimal_hyperparameters(p, 4, horizon=200, tau=1.0, method="renewal")
    key = "optimal (alpha, beta) at T = 200 [renewal]"
    nums = [float(x) for x in re.findall(r"[-+]?\d*\.\d+(?:e[-+]?\d+)?", rows[key])]
    assert nums[0] == pytest.approx(opt.lr, rel=1e-3) and nums[1] == pytest.approx(opt.momentum, abs=1e-3)
    assert nums[2] == pytest.approx(opt.loss, rel=1e-3)
    assert opt.momentum < 0  # the printed optimum is the negative-momentum one of THEORY section 7


def test_theory_cli_on_a_saved_kernel(tmp_path):
    p = Problem.synthetic(256, 2.0, 1.0, seed=1)
    path = p.save(tmp_path / "k.pt")
    rows = table(run_module("gfsgd.theory", "--problem", str(path), "--batch-size", "8", "--budget", "100"))
    fit = th.fit_power_law(p)
    assert first_float(rows["fitted nu"]) == pytest.approx(fit.nu, abs=2e-3)
    assert first_float(rows["critical lr at beta = +0.00"]) == pytest.approx(float(th.critical_lr(p, 0.0, 8)),
                                                                             rel=1e-3)


def test_symbolic_cli_reports_the_checks():
    text = run_module("gfsgd.theory.symbolic")
    assert str(symbolic.check_closed_forms()) in text and "{'S': True, 'U': True, 'V': True}" in text
    assert f"tau and gamma only through gamma * tau: {symbolic.check_gamma_tau()}" in text
    assert "tau and gamma only through gamma * tau: True" in text
    assert "violations_S': 0" in text and "violations_dzU': 0" in text
