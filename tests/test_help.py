"""Honest --help: every flag has help, and no default is stated twice ('(default 200) (default: 256)')."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [["train_full.py"], ["train_linearized.py"], ["train_spectral_diagonal.py"], ["train_nn.py"],
           ["train_4_regimes.py"], ["-m", "gfsgd.theory"], ["-m", "gfsgd.recommend"]]


@pytest.mark.parametrize("cmd", SCRIPTS, ids=lambda c: c[-1])
def test_help_states_each_default_once(cmd):
    res = subprocess.run([sys.executable, *cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    text = " ".join(res.stdout.split())  # argparse wraps lines
    assert not re.search(r"\(default [^:)][^)]*\)", text), re.search(r"\(default [^:)][^)]*\)", text).group(0)
    assert text.count("(default:") >= 3


def _parsers():
    from gfsgd import cli, network_cli
    from gfsgd.recommend.__main__ import _parser as rec_parser
    from gfsgd.theory.__main__ import _parser as th_parser
    kernel = cli.build_parser("kernel scripts", ["full", "linearized", "sd"])
    cli.add_model_args(kernel, network=False)
    net = cli.build_parser("network scripts", ["nn", "full", "linearized", "sd"], network=True)
    network_cli.add_network_args(net)
    return {"kernel scripts": kernel, "network scripts": net, "theory": th_parser(), "recommend": rec_parser()}


def test_every_flag_has_help():
    for name, p in _parsers().items():
        missing = [a.option_strings for a in p._actions if a.option_strings and not a.help]
        assert not missing, f"{name}: flags without help: {missing}"
        long_titles = [g.title for g in p._action_groups if g.title and len(g.title) > 90]
        assert not long_titles, f"{name}: group titles should be short: {long_titles}"
