"""gfsgd.plots: figures carry what they claim (theory lines at the theory's values, log axes, labels) and
save as valid PNG / PDF files. Small problems only: the whole module runs in a few seconds."""
import numpy as np
import pandas as pd
import pytest

from gfsgd import Grid, Problem, plots
from gfsgd import theory as th
from gfsgd.plots import powerlaw
from gfsgd.regimes import spectral_diagonal as sd


@pytest.fixture(scope="module")
def spectral():
    return Problem.synthetic(64, nu=1.5, kappa=1.0, basis=None)


def _close(fig):
    import matplotlib.pyplot as plt
    plt.close(fig)


def _line(ax, gid):
    lines = [ln for ln in ax.lines if ln.get_gid() == gid]
    assert lines, f"no line with gid {gid!r}"
    return lines[0]


def test_save_writes_valid_png_and_pdf(tmp_path, spectral):
    c = sd.run(spectral, [(0.5, 0.0, 4)], 20, progress=False)
    fig = plots.loss_curves(c)
    out = plots.save(fig, tmp_path / "curves_nu1.5", formats=("png", "pdf"))
    assert [p.name for p in out] == ["curves_nu1.5.png", "curves_nu1.5.pdf"]  # dots in the name are kept
    assert out[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out[1].read_bytes()[:5] == b"%PDF-"
    assert plots.save(fig, tmp_path / "x.png", formats=("png",))[0].name == "x.png"
    _close(fig)


def test_alpha_beta_map_theory_lines_and_optimum(spectral):
    lrs, moms, b = np.geomspace(0.1, 3.0, 7), np.linspace(-0.6, 0.6, 5), 2
    curves = sd.run(spectral, Grid(lrs, moms, b).configs, 30, progress=False)
    fig = plots.alpha_beta_map(curves, problem=spectral)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # geometric lr grid
    assert "α" in ax.get_ylabel() and "β" in ax.get_xlabel()
    assert any("log_{10}" in a.get_ylabel() for a in fig.axes[1:]), "colour bar with its label"
    beta = _line(ax, "alpha_crit").get_xdata()
    np.testing.assert_allclose(_line(ax, "alpha_crit").get_ydata(), th.critical_lr(spectral, beta, b), rtol=1e-12)
    np.testing.assert_allclose(_line(ax, "asymptote_mode").get_ydata(), 2 * (1 + beta), rtol=1e-12)
    gamma = (64 - b) / (63 * b)
    np.testing.assert_allclose(_line(ax, "asymptote_noise").get_ydata(),
                               2 * (1 - beta) / (gamma * th.lambda_crit(spectral)), rtol=1e-10)
    # the optimum marker sits on the smallest loss of the grid at the last step
    final = pd.DataFrame(curves.configs, columns=["lr", "momentum", "b"]).assign(loss=curves.loss[:, -1])
    best = final.loc[final.loss.idxmin()]
    opt = _line(ax, "optimum")
    assert opt.get_xdata()[0] == best.momentum and opt.get_ydata()[0] == best.lr
    _close(fig)


def test_alpha_beta_map_marks_divergence_and_full_batch_has_no_noise_line(spectral):
    lrs, moms = np.linspace(0.5, 5.0, 6), np.array([-0.5, 0.0, 0.5])
    curves = sd.run(spectral, Grid(lrs, moms, 64).configs, 40, progress=False)
    lr, mom, v, t = plots.map_values(curves)
    assert t == 40 and v.shape == (6, 3)
    assert np.isnan(v[lr > 2 * (1 + mom.max())]).all(), "configs beyond 2(1+beta) diverge (NaN cells)"
    fig = plots.alpha_beta_map(curves, problem=spectral)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    assert not [ln for ln in ax.lines if ln.get_gid() == "asymptote_noise"], "gamma = 0 at b = N"
    assert "diverged" in [t.get_text() for t in ax.get_legend().get_texts()]
    _close(fig)


def test_alpha_beta_map_from_array_and_grid_of_maps(spectral):
    lrs, moms = np.geomspace(0.1, 2.0, 4), np.linspace(-0.5, 0.5, 3)
    vals = np.random.default_rng(0).uniform(1e-3, 1, (4, 3))
    with pytest.raises(ValueError, match="shape"):
        plots.alpha_beta_map(vals.T, lr=lrs, momentum=moms)
    fig = plots.alpha_beta_maps([dict(data=vals, lr=lrs, momentum=moms, batch_size=b) for b in (1, 8)],
                                problem=spectral, predicted_optimum=(0.5, 0.0))
    axes = [a for a in fig.axes if hasattr(a, "map_data")]
    assert len(axes) == 2 and all(_line(a, "predicted_optimum").get_xdata()[0] == 0.0 for a in axes)
    np.testing.assert_allclose(axes[0].map_data["log10_values"], np.log10(vals))
    _close(fig)


def test_budget_plot_axes_are_samples(spectral):
    runs = [sd.run(spectral, [(0.05 * b, 0.0, b)], 40 // b, progress=False) for b in (1, 2, 4)]
    fig = plots.budget_plot(runs)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "t·b" in ax.get_xlabel()
    xmax = {ln.get_label().split(",")[0]: ln.get_xdata().max() for ln in ax.lines}
    assert xmax == {"b=1": 40, "b=2": 40, "b=4": 40}  # every run processed 40 samples
    _close(fig)


def test_phase_diagram_transition_line_and_point():
    fig = plots.phase_diagram(points={"fit": (1.4, 0.5)})
    ax = fig.axes[0]
    ln = _line(ax, "transition")
    np.testing.assert_allclose(ln.get_ydata(), 2 * ln.get_xdata() - 1)
    assert _line(ax, "point").get_xdata()[0] == 1.4
    nu, kappa = np.meshgrid(np.linspace(1.01, 3, 9), np.linspace(0.1, 5, 9))
    code = powerlaw._phase_code(nu, kappa)
    names = np.array(["divergent", "signal", "noise"])[code]
    np.testing.assert_array_equal(names, th.phase(nu, kappa))  # same rule as the theory module
    _close(fig)
    with pytest.raises(ValueError, match="shape"):
        plots.phase_diagram(values=(np.arange(3), np.arange(4), np.zeros((3, 4))))


def test_spectrum_plot_fits_the_synthetic_exponents():
    p = Problem.synthetic(256, nu=1.7, kappa=0.9, basis=None)
    fig = plots.spectrum_plot(p)
    assert fig.fit.nu == pytest.approx(1.7, abs=1e-6)
    assert fig.fit.kappa == pytest.approx(0.9, abs=0.05)
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_xlabel() == "mode index k"
    k = _line(fig.axes[0], "fit_nu").get_xdata()
    np.testing.assert_allclose(_line(fig.axes[0], "fit_nu").get_ydata(), k ** -1.7, rtol=1e-6)
    _close(fig)


def test_theory_curves_match_sd_and_plot_with_regimes(spectral):
    cfg = [(0.4, 0.0, 2), (0.8, 0.3, 8)]
    thy = plots.theory_curves(spectral, cfg, 25)
    c = sd.run(spectral, cfg, 25, progress=False)
    np.testing.assert_allclose(thy.loss.to_numpy().reshape(2, -1), c.loss, rtol=1e-9)
    fig = plots.regime_comparison(pd.concat([c.to_frame(), thy]))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("theory" in s for s in labels) and any("spectral-diagonal" in s for s in labels)
    _close(fig)


def test_exponent_plot_diagonal():
    """The points are the given (predicted, measured) pairs, the diagonal y = x spans them all, the +-tol band
    holds exactly the points within tol of it (the third point, 0.3 off, lies outside), each label sits on its
    point, and the axes show every point."""
    from matplotlib.collections import PathCollection, PolyCollection
    pred, meas = np.array([0.5, 1.0, 1.5]), np.array([0.55, 0.93, 1.8])
    fig = plots.exponent_plot(pred, meas, labels=["a", "b", "c"], tol=0.1)
    ax = fig.axes[0]
    ln = _line(ax, "diagonal")
    x, y = np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
    np.testing.assert_allclose(y, x)  # the line is y = x ...
    both = np.concatenate([pred, meas])
    assert x.min() <= both.min() and x.max() >= both.max()  # ... and spans every predicted and measured value
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == 1
    np.testing.assert_allclose(points[0].get_offsets(), np.column_stack([pred, meas]))
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    band = bands[0].get_paths()[0]
    inside = [band.contains_point((p_, m_)) for p_, m_ in zip(pred, meas)]
    assert inside == [True, True, False]  # |0.05|, |0.07| <= 0.1 < |0.3|
    for d in (-0.099, 0.099):  # the band is +-tol wide around the diagonal, and no wider
        assert band.contains_point((1.0, 1.0 + d))
    for d in (-0.101, 0.101):
        assert not band.contains_point((1.0, 1.0 + d))
    notes = {t.get_text(): t.xy for t in ax.texts}
    assert set(notes) == {"a", "b", "c"}
    for lab, p_, m_ in zip("abc", pred, meas):
        np.testing.assert_allclose(notes[lab], (p_, m_))
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 <= both.min() and x1 >= both.max() and y0 <= both.min() and y1 >= both.max()
    _close(fig)
