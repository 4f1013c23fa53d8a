"""benchmarks/README.md quotes the stored results: every checked number is the JSON's, formatted as the README
prints it.

Each check names a README section (by its script), a place in it and a JSON value with its format:
- `row(section, row_regex, {column: (json, key path, format)})`: a table row (the one line matching row_regex;
  columns split on "|", 0 the first cell); the cell must contain the formatted value as a whole number;
- `text(section, regex, [(json, key path, format), ...])`: the regex must match the section once, and its i-th
  group must equal the i-th formatted value.
So a number edited in the README, or a result re-stored without updating the README, fails: the last test
edits every checked number in turn (its last digit) and asserts that the checks catch it. Every JSON that the
README names is checked at least once, and every benchmark script has a section with at least one check (or
says why it has none).
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
RESULTS = ROOT / "benchmarks" / "results"


# ------------------------------------------------------------------------------------------------ formats
def f(spec):
    return lambda v: format(v, spec)


def sig(n):
    """n significant digits, trailing zeros kept ("0.20", "41", "1.0")."""
    return lambda v: format(v, f"#.{n}g").rstrip(".")


def pct(spec):
    return lambda v: format(100 * v, spec)


def pct_sig(n):
    return lambda v: sig(n)(100 * v)


def comma(v):
    return format(round(v), ",")


def us(spec):  # seconds -> microseconds
    return lambda v: format(v * 1e6, spec)


def times(n, spec):  # a fraction of n: 0.9667 of 30 -> "29"
    return lambda v: format(v * n, spec)


def sci_unicode(v):  # 3.785e-05 -> "3.8 × 10⁻⁵"
    m, e = f"{v:.1e}".split("e")
    sup = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
    return f"{m} × 10{str(int(e)).translate(sup)}"


# ------------------------------------------------------------------------------------------------ checks
CHECKS = []


def row(section, regex, cells):
    for col, spec in cells.items():
        CHECKS.append(("row", section, regex, col, spec))


def text(section, regex, specs):
    for i, spec in enumerate(specs, 1):
        CHECKS.append(("text", section, regex, i, spec))


# bench_critical_lr.py
CL = "critical_lr.json"
for i, b in enumerate((1, 10)):
    R = ("results", "rows", i)
    row("bench_critical_lr.py", rf"^\| {b} +\| 1024", {
        1: (CL, R + ("cells",), f("d")), 2: (CL, R + ("predicted_divergent",), f("d")),
        3: (CL, R + ("sd_diverged",), f("d")), 4: (CL, R + ("mismatches",), f("d")), 5: (CL, R + ("adjacent",), f("d")),
        6: (CL, R + ("elsewhere",), f("d")), 7: (CL, R + ("theory_seconds",), f(".3f")),
        8: (CL, R + ("sd_seconds",), f(".1f"))})
text("bench_critical_lr.py", r"the whole run (\d+) s", [(CL, ("wall_seconds",), f(".0f"))])
text("bench_critical_lr.py", r"between\n?\s*([\d.]+) and ([\d.]+) \(b = 1\) or at ([\d.]+) \(b = 10\)", [
    (CL, ("results", "rows", 0, "mismatch_ratio_min"), f(".3f")),
    (CL, ("results", "rows", 0, "mismatch_ratio_max"), f(".3f")),
    (CL, ("results", "rows", 1, "mismatch_ratio_min"), f(".3f"))])
text("bench_critical_lr.py", r"\(b = 1: (\d+) of \d+; b = 10: (\d+) of \d+\)", [
    (CL, ("results", "rows", 0, "mismatch_predicted_divergent"), f("d")),
    (CL, ("results", "rows", 1, "mismatch_predicted_divergent"), f("d"))])

# bench_ntk.py
NT = "ntk.json"
for i, (dt, method, n, has_median) in enumerate([("float64", "baseline", 1000, False), ("float64", "structured", 1000, True),
                                                 ("float64", "structured", 10000, True),
                                                 ("float32", "baseline", 1000, False), ("float32", "structured", 1000, True),
                                                 ("float32", "structured", 10000, True)]):
    idx = [0, 1, 3, 4, 5, 7][i]  # the rows of the JSON (the summaries sit between them)
    R = ("results", "rows", idx)
    wall = sig(3) if method == "baseline" or n == 10000 else sig(2)
    cells = {2: (NT, R + ("N",), f("d")), 3: (NT, R + ("wall_s",), wall), 5: (NT, R + ("peak_rss_mb",), f(".0f")),
             6: (NT, R + ("peak_increase_mb",), f(".0f"))}
    if has_median:
        cells[4] = (NT, R + ("wall_median_s",), wall)
    row("bench_ntk.py", rf"^\| {dt} \| {method}[^|]*\| {n} \|", cells)
text("bench_ntk.py", r"relative Frobenius difference (\S+) \(float64\), (\S+) \(float32\)", [
    (NT, ("results", "rows", 2, "rel_diff"), f(".1e")), (NT, ("results", "rows", 6, "rel_diff"), f(".1e"))])
text("bench_ntk.py", r"float64: (\d+)x faster, ([\d.]+)x less peak RSS \((\d+)x less", [
    (NT, ("results", "rows", 2, "speedup"), f(".0f")), (NT, ("results", "rows", 2, "memory_ratio_peak"), f(".1f")),
    (NT, ("results", "rows", 2, "memory_ratio_increase"), f(".0f"))])
text("bench_ntk.py", r"takes ([\d.]+) s and (\d+) MB peak", [
    (NT, ("results", "rows", 3, "wall_s"), sig(3)), (NT, ("results", "rows", 3, "peak_rss_mb"), f(".0f"))])
text("bench_ntk.py", r"the whole run (\d+) s", [(NT, ("wall_seconds",), f(".0f"))])

# bench_cnn_kernel.py
CK = "cnn_kernel.json"
for idx, label in ((0, "reference"), (1, "gfsgd")):
    R = ("results", "rows", idx)
    row("bench_cnn_kernel.py", rf"^\| {label}[^|]*\| 2000 \|", {
        3: (CK, R + ("wall_s",), f(".1f")), 4: (CK, R + ("peak_rss_mb",), f(".0f")),
        5: (CK, R + ("peak_increase_mb",), f(".0f")), 6: (CK, R + ("kernel_mb",), f(".0f"))})
text("bench_cnn_kernel.py", r"gfsgd is ([\d.]+)x faster at ([\d.]+)x less peak memory \(([\d.]+)x less", [
    (CK, ("results", "rows", 2, "speedup"), f(".1f")), (CK, ("results", "rows", 2, "memory_ratio_peak"), f(".1f")),
    (CK, ("results", "rows", 2, "memory_ratio_increase"), f(".1f"))])
text("bench_cnn_kernel.py", r"the whole run (\d+) s", [(CK, ("wall_seconds",), f(".0f"))])
text("bench_cnn_kernel.py", r"relative difference ([\d.]+) \(the same", [(CK, ("results", "rows", 2, "rel_diff_probe"),
                                                                            f(".1f"))])

# validate_cnn_mnist.py
CM, VC = "cnn_mnist.json", "validate_cnn_mnist.py"
MS = ("results", "mse")
for name, label in (("sd", "SD"), ("linearized", "linearized")):
    row(VC, rf"^\| {label} ", {
        1: (CM, MS + ("train", name, "median_rel_gap"), f(".1f")), 2: (CM, MS + ("train", name, "spearman"), f(".2f")),
        3: (CM, MS + ("test", name, "median_rel_gap"), sig(3)), 4: (CM, MS + ("test", name, "spearman"), f(".2f")),
        5: (CM, MS + ("train", name, "divergence_agreement"), times(24, ".0f"))})
text(VC, r"the mse part\n?\s*([\d,]+) s: kernel ([\d,]+) s, SD (\d+) s, linearized ([\d,]+) s, the real network ([\d,]+) s; "
         r"the ce part ([\d,]+) s", [
    (CM, MS + ("seconds",), comma), (CM, MS + ("kernel_seconds",), comma), (CM, MS + ("sd_seconds",), comma),
    (CM, MS + ("linearized_seconds",), comma), (CM, MS + ("nn_seconds",), comma),
    (CM, ("results", "ce", "seconds"), comma)])
text(VC, r"over the (\d+) configs where both converge", [(CM, MS + ("train", "sd", "n_both_converge"), f("d"))])
text(VC, r"its regret is\n?\s*(\d+) \(", [(CM, MS + ("train", "sd", "regret"), f(".0f"))])
text(VC, r"choice ends ([\d.]+) above the best\n?\s*cell", [(CM, MS + ("test", "sd", "regret"), f(".3f"))])
text(VC, r"median gap ([\d.]+) points", [(CM, MS + ("test_accuracy", "median_abs_gap"), pct(".1f"))])
text(VC, r"hold ([\d.]+) of the kernel's\n?\s*Frobenius norm, the diagonal blocks differ from their mean by ([\d.]+) "
         r"of it,\n?\s*and its SD final losses differ from the\n?\s*C-output SD's by a median ([\d.]+)", [
    (CM, MS + ("class_diagonal", "offdiag_rel"), f(".2f")), (CM, MS + ("class_diagonal", "diag_spread_rel"), f(".3f")),
    (CM, MS + ("class_diagonal", "median_rel_diff_final_loss_vs_sd"), f(".2f"))])
for key, lab in (("beta=0.0,b=10", r"\(0, 10\)"), ("beta=0.0,b=100", r"\(0, 100\)"), ("beta=0.5,b=100", r"\(0.5, 100\)")):
    E = ("results", "ce", "edges", key)
    row(VC, rf"^\| {lab} \|", {1: (CM, E + ("predicted",), f(".1f")), 2: (CM, E + ("real",), sig(3)),
                                3: (CM, E + ("ratio",), f(".2f"))})
text(VC, r"median train-loss gap ([\d.]+), test-accuracy gap (\d+) points", [
    (CM, ("results", "ce", "grid", "median_rel_gap_train"), f(".2f")),
    (CM, ("results", "ce", "grid", "median_abs_gap_accuracy"), pct(".0f"))])

# validate_network_fidelity.py
NF, VN = "network_fidelity.json", "validate_network_fidelity.py"
text(VN, r"`recommend`, (\d+) s; the JSON's wall time, ([\d,]+) s", [(NF, ("results", "edges_seconds"), f(".0f")),
                                                                    (NF, ("wall_seconds",), comma)])
for key, label, n in (("diabetes", "diabetes", 30), ("breast_cancer", "breast cancer", 30), ("mnist_cnn", "MNIST CNN", 12)):
    S_ = ("results", key)
    rel = "relinearized_t0=50" if key == "mnist_cnn" else "relinearized_t0=100"
    for pred, plabel in (("linear", "linear"), (rel, "re-linearised at 5%")):
        spec = f(".1f") if key == "mnist_cnn" else f(".2f")
        row(VN, rf"^\| {label} \| {plabel} \|", {
            2: (NF, S_ + ("train", pred, "median_rel_gap"), spec), 3: (NF, S_ + ("train", pred, "spearman"), f(".2f")),
            4: (NF, S_ + ("test", pred, "median_rel_gap"), sig(2)),
            5: (NF, S_ + ("train", pred, "divergence_agreement"), times(n, ".0f"))})
    C_ = S_ + ("edges_recommend", "classification")
    row(VN, rf"^\| {label} \| \d+ \| \d+ \| \d+ \|$", {1: (NF, C_ + ("network_edge",), times(n, ".0f")),
                                                   2: (NF, C_ + ("linear_edge",), times(n, ".0f")),
                                                   3: (NF, C_ + ("relinearized",), times(n, ".0f"))})
for key, label in (("diabetes", "diabetes"), ("breast_cancer", "breast cancer")):
    R_ = ("results", key, "edges_recommend", "recommend")
    for j, b in enumerate((10, 100)):
        row(VN, rf"^\| {label} \| {b} \|", {2: (NF, R_ + ("no_probes", "rows", j, "regret"), f(".3f")),
                                              3: (NF, R_ + ("probes", "rows", j, "regret"), f(".3f"))})
text(VN, r"half of training the MLP gaps are still ([\d.]+) \(diabetes\) and ([\d.]+) \(breast", [
    (NF, ("results", "diabetes", "edges_recommend", "late_t0", "1000", "train", "median_rel_gap"), f(".2f")),
    (NF, ("results", "breast_cancer", "edges_recommend", "late_t0", "1000", "train", "median_rel_gap"), f(".2f"))])
text(VN, r"The edge costs ([\d.]+) s \(diabetes\), ([\d.]+) s \(breast cancer\) and (\d+) s \(CNN\)", [
    (NF, ("results", "diabetes", "edges_recommend", "edge_seconds"), f(".1f")),
    (NF, ("results", "breast_cancer", "edges_recommend", "edge_seconds"), f(".1f")),
    (NF, ("results", "mnist_cnn", "edges_recommend", "edge_seconds"), f(".0f"))])
text(VN, r"against (\d+) s, (\d+) s and (\d+) s for the real grids", [
    (NF, ("results", k, "nn_seconds"), f(".0f")) for k in ("diabetes", "breast_cancer", "mnist_cnn")])

for k, label in (("diabetes", "diabetes"), ("breast_cancer", "breast cancer"), ("mnist_cnn", "MNIST CNN")):
    F_ = ("results", k, "drift_forecast")
    row(VN, rf"^\| {label} \| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$", {
        1: (NF, F_ + ("configs",), f("d")), 2: (NF, F_ + ("median_error",), f(".3f")),
        3: (NF, F_ + ("median_error_hold",), f(".3f")), 4: (NF, F_ + ("within_2x",), f(".2f"))})

# bench_exact_edge_newton.py
EN, BEN = "exact_edge_newton.json", "bench_exact_edge_newton.py"
for i, (N_, beta_, b_) in enumerate([(500, "+0.0", 1), (500, "+0.5", 10), (500, "-0.4", 4), (500, "+0.9", 1),
                                     (2000, "+0.0", 1), (2000, "+0.5", 10), (2000, "-0.4", 4), (2000, "+0.9", 1)]):
    R_ = ("results", "rows", i)
    cells = {3: (EN, R_ + ("edge_newton",), sig(6)), 4: (EN, R_ + ("newton_s",), f(".2f"))}
    if N_ == 500:
        cells.update({5: (EN, R_ + ("bisection_s",), f(".2f")), 6: (EN, R_ + ("speedup",), f(".1f")),
                      7: (EN, R_ + ("rel_diff",), f(".1e"))})
    row(BEN, rf"^\| {N_} \| \{beta_} \| {b_} \|", cells)
text(BEN, r"the whole run (\d+) s", [(EN, ("wall_seconds",), f(".0f"))])
text(BEN, r"agree to ([\d.e+-]+) at N = 500", [(EN, ("results", "per_N", "500", "rel_diff_max"), f(".1e"))])

# validate_subset_mnist.py
SM, VS = "subset_mnist.json", "validate_subset_mnist.py"
for n in (1000, 2000, 5000):
    S_ = ("results", "summary", str(n))
    row(VS, rf"^\| {n} \|", {1: (SM, S_ + ("median_gap_vs_sd60k",), f(".3f")), 2: (SM, S_ + ("median_gap_vs_real",), f(".3f")),
                              3: (SM, S_ + ("configs_covered",), f("d")),
                              4: (SM, S_ + ("single_subset_configs_covered",), lambda v: ", ".join(map(str, v))),
                              5: (SM, S_ + ("single_subset_band_width_median",), f(".2f")),
                              6: (SM, S_ + ("seconds_median",), f(".1f")), 7: (SM, S_ + ("band_seconds_median",), f(".1f")),
                              8: (SM, S_ + ("speedup",), f(".1f"))})
text(VS, r"the whole run\n?\s*([\d,]+) s", [(SM, ("wall_seconds",), comma)])
text(VS, r"its band the prediction from 5,000 points takes ([\d.]+) s", [
    (SM, ("results", "summary", "5000", "band_seconds_median"), f(".1f"))])
text(VS, r"one forward pass, ([\d.]+) s;", [(SM, ("results", "energy_seconds"), f(".1f"))])
text(VS, r"median\n?\s*gaps ([\d.]+), ([\d.]+) and\s+([\d.]+); the error", [
    (SM, ("results", "summary_energy", str(n), "median_gap_vs_sd60k"), f(".3f")) for n in (1000, 2000, 5000)])
text(VS, r"lies below it by a median ([\d.]+) \(max ([\d.]+)\)", [
    (SM, ("results", "scaling", "median_gap"), f(".2f")), (SM, ("results", "scaling", "max_gap"), f(".2f"))])
text(VS, r"The band holds (\d+) of the (\d+) points", [(SM, ("results", "scaling", "inside_band"), f("d")),
                                                       (SM, ("results", "scaling", "points"), f("d"))])
text(VS, r"The scaling part took\n?\s*(\d+) s", [(SM, ("results", "scaling", "seconds"), f(".0f"))])

# bench_design_schedule.py
DS, BDS = "design_schedule.json", "bench_design_schedule.py"
text(BDS, r"every family: ([\d.]+) s \(issue", [(DS, ("results", "design_seconds"), f(".1f"))])
text(BDS, r"searching (\d+) modes of ([\d,]+);", [(DS, ("results", "modes_searched"), f("d")),
                                                  (DS, ("results", "modes"), comma)])
text(BDS, r"only\) took ([\d.]+) s in the same run \(ratio ([\d.]+)\)", [
    (DS, ("results", "recommend_seconds"), f(".1f")), (DS, ("results", "ratio_design_to_recommend"), f(".2f"))])
text(BDS, r"within ([\d.e+-]+) of it \(median ([\d.e+-]+)\)", [(DS, ("results", "max_rel_diff"), f(".2e")),
                                                                (DS, ("results", "median_rel_diff"), f(".2e"))])
text(BDS, r"ends at ([\d.]+) \(b = 10\) and\n?\s*([\d.]+) \(b = 100\)", [
    (DS, ("results", "best_over_constant", "10"), f(".3f")), (DS, ("results", "best_over_constant", "100"), f(".3f"))])

# validate_schedules_mnist.py
SC, VSC = "schedules_mnist_N10000.json", "validate_schedules_mnist.py"
text(VSC, r"--N 10000` \(([\d,]+) s on this", [(SC, ("wall_seconds",), comma)])
text(VSC, r"the dense problem \((\d+) s\)", [(SC, ("results", "problem_seconds"), f(".0f"))])
text(VSC, r"\((\d+) s with every row re-run", [(SC, ("results", "design_seconds"), f(".0f"))])
for b, nd in (("10", 4), ("100", 3)):
    P_ = ("results", "per_batch", b)
    row(VSC, rf"^\| {b} \|", {1: (SC, P_ + ("best_family_real",), sig(nd)), 2: (SC, P_ + ("designed_real",), sig(nd)),
                                 3: (SC, P_ + ("gain",), pct(".1f")), 4: (SC, P_ + ("gain_test",), pct(".1f"))})
text(VSC, r"\| 10 \|.*\| ([\d,]+) / ([\d,]+) of", [
    (SC, ("results", "per_batch", "10", "ramp_steps_to_const_pred"), comma),
    (SC, ("results", "per_batch", "10", "ramp_steps_to_const_real"), comma)])
text(VSC, r"over the 14 schedules ([\d.]+) \(test loss ([\d.]+)\)", [
    (SC, ("results", "median_gap"), f(".3f")), (SC, ("results", "median_gap_test"), f(".3f"))])

# bench_loss_at.py phases
LP = "loss_at_phases.json"
for case in ("signal beta<0", "signal beta>0", "signal edge", "noise beta<0", "noise beta>0", "noise edge",
             "noise map"):
    C_ = ("cases", case)
    row("bench_loss_at.py", rf"^\| {re.escape(case)} \|", {
        2: (LP, C_ + ("configs",), comma), 4: (LP, C_ + ("loss_at_s",), f(".2f")),
        5: (LP, C_ + ("loss_curve_s",), f(".1f")), 6: (LP, C_ + ("speedup",), f(".1f")),
        7: (LP, C_ + ("max_rel_diff",), f(".1e"))})
text("bench_loss_at.py", r"Worst case ([\d.]+)x \(the noise-dominated β > 0 cell and the noise-dominated edge\), best "
     r"([\d.]+)x", [(LP, ("cases", "noise beta>0", "speedup"), f(".1f")),
                    (LP, ("cases", "noise beta<0", "speedup"), f(".1f"))])

# bench_regimes.py (its JSON is the list of rows)
RG = "regimes.json"
row("bench_regimes.py", r"^\| full, N = 1000 \|", {1: (RG, (0, "baseline_s"), lambda v: comma(v * 1e6)),
                                                    2: (RG, (0, "ours_s"), lambda v: comma(v * 1e6)),
                                                    3: (RG, (0, "ratio"), f(".1f"))})
row("bench_regimes.py", r"^\| full step / two N x N matmuls", {
    0: (RG, (0, "two_matmuls_s"), lambda v: format(v * 1e3, ".1f")), 3: (RG, (0, "step_over_two_matmuls"), f(".2f"))})
row("bench_regimes.py", r"^\| SD, 2500 configs", {1: (RG, (1, "baseline_s"), us(".1f")), 2: (RG, (1, "ours_s"), us(".2f")),
                                                   3: (RG, (1, "ratio"), f(".1f"))})
row("bench_regimes.py", r"^\| linearized, 2500 configs", {1: (RG, (2, "baseline_s"), lambda v: comma(v * 1e6)),
                                                           2: (RG, (2, "ours_s"), us(".1f")), 3: (RG, (2, "ratio"), f(".1f"))})
text("bench_regimes.py", r"two 1000 x 1000 matmuls took ([\d.]+) ms", [
    (RG, (0, "two_matmuls_s"), lambda v: format(v * 1e3, ".1f"))])

# bench_engine.py
EN = "engine.json"
for i, (regime, sched) in enumerate([("sd", "constant"), ("sd", "cosine"), ("linearized", "constant"),
                                     ("linearized", "cosine")]):
    R = ("results", "rows", i)
    row("bench_engine.py", rf"^\| {regime} \| {sched} \|", {
        2: (EN, R + ("before_best_us",), f(".3f")), 3: (EN, R + ("after_best_us",), f(".3f")),
        4: (EN, R + ("ratio_best",), f(".3f")), 5: (EN, R + ("ratio_median",), f(".3f"))})
text("bench_engine.py", r"\((\d+) vs (\d+) of 2500\s+constant, (\d+) vs (\d+) under the schedule; SD: (\d+) and (\d+)", [
    (EN, ("results", "rows", 2, "diverged_before"), f("d")), (EN, ("results", "rows", 2, "diverged_after"), f("d")),
    (EN, ("results", "rows", 3, "diverged_before"), f("d")), (EN, ("results", "rows", 3, "diverged_after"), f("d")),
    (EN, ("results", "rows", 0, "diverged_after"), f("d")), (EN, ("results", "rows", 1, "diverged_after"), f("d"))])
text("bench_engine.py", r"the whole run (\d+) s", [(EN, ("wall_seconds",), f(".0f"))])
text("bench_engine.py", r"constant hyperparameters \(best ([\d.]+),\s+median ([\d.]+)\)", [
    (EN, ("results", "rows", 2, "ratio_best"), f(".3f")), (EN, ("results", "rows", 2, "ratio_median"), f(".3f"))])

# bench_test_loss.py
TL = "test_loss.json"
text("bench_test_loss.py", r"([\d.]+) ms per config-step without \(best; median ([\d.]+) ms\), ([\d.]+) ms with\s+"
                           r"\(median ([\d.]+) ms\); ratio ([\d.]+) \(best\), ([\d.]+) \(median\)", [
    (TL, ("results", "without_best_ms"), f(".2f")), (TL, ("results", "without_median_ms"), f(".2f")),
    (TL, ("results", "with_best_ms"), f(".2f")), (TL, ("results", "with_median_ms"), f(".2f")),
    (TL, ("results", "ratio_best"), f(".3f")), (TL, ("results", "ratio_median"), f(".3f"))])
text("bench_test_loss.py", r"the whole run (\d+) s", [(TL, ("wall_seconds",), f(".0f"))])

# validate_test_loss_mnist.py
TM = "test_loss_mnist_summary.json"
def _gaps(kind):
    return lambda c: f"{pct_sig(2)(c[kind + '_gap_median'])}% / {pct_sig(2)(c[kind + '_gap_max'])}%"


def _finals(c):
    t = c["final_test"]
    return f"{t['full']:.4f} / {t['sd']:.4f} / {t['nn']:.4f} ± {t['nn_se']:.4f}"


for i, lab in enumerate([r"b=10, β=0", r"b=10, β=−0\.3", r"b=100, β=0", r"b=100, β=−0\.3"]):
    row("validate_test_loss_mnist.py", rf"^\| {lab} \|", {
        1: (TM, (i,), _gaps("test")), 2: (TM, (i,), _gaps("train")),
        3: (TM, (i, "sd_vs_full_test_gap_max"), pct_sig(2)), 4: (TM, (i,), _finals)})

# bench_exact_edge.py
EE = "exact_edge.json"
for i, n in enumerate((200, 500, 1000, 2000)):
    R = ("results", "rows", i)
    row("bench_exact_edge.py", rf"^\| {n} \|", {1: (EE, R + ("exact_edge",), f(".4f")), 2: (EE, R + ("sd_edge",), f(".4f")),
                                              3: (EE, R + ("ratio",), f(".3f")), 4: (EE, R + ("exact_seconds",), sig(2 if i < 2 else 3)),
                                              5: (EE, R + ("sd_seconds",), f(".3f"))})
text("bench_exact_edge.py", r"the whole run (\d+) s", [(EE, ("wall_seconds",), f(".0f"))])

# bench_loss_at.py
LA = "loss_at.json"
row("bench_loss_at.py", r"^\| 2,500-config", {1: (LA, ("map", "loss_at_s"), f(".2f")), 2: (LA, ("map", "loss_curve_s"), f(".0f")),
                                             3: (LA, ("map", "speedup"), f(".0f")), 4: (LA, ("map", "max_rel_diff"), f(".1e"))})
row("bench_loss_at.py", r"^\| one config", {1: (LA, ("long", "loss_at_s"), f(".3f")), 2: (LA, ("long", "loss_curve_s"), f(".1f")),
                                           3: (LA, ("long", "speedup"), comma), 4: (LA, ("long", "max_rel_diff"), f(".1e"))})

# validate_recommend_mnist.py
RM, R4 = "recommend_mnist_summary.json", "recommend_mnist_r4_summary.json"
row("validate_recommend_mnist.py", r"^\| recommended \(alpha, beta\) \|", {1: (RM, ("b=10", "recommended", "lr"), f(".3f")),
                                                                         2: (RM, ("b=100", "recommended", "lr"), f(".2f"))})
for col, b in ((1, "b=10"), (2, "b=100")):
    row("validate_recommend_mnist.py", r"^\| its real loss at 2,000", {col: (RM, (b, "recommended", "real"), f(".4f"))})
    CHECKS.append(("row", "validate_recommend_mnist.py", r"^\| its real loss at 2,000", col,
                   (RM, (b, "best_cell", "real"), f(".4f"))))
    CHECKS.append(("row", "validate_recommend_mnist.py", r"^\| its real loss at 2,000", col,
                   (RM, (b, "ratio_recommended_to_best"), f(".2f"))))
    row("validate_recommend_mnist.py", r"^\| Spearman\(predicted, real\), converging cells \| 0", {
        col: (RM, (b, "spearman"), f(".2f"))})
    CHECKS.append(("row", "validate_recommend_mnist.py", r"^\| Spearman\(predicted, real\), converging cells \| 0", col,
                   (RM, (b, "converging_cells"), f("d"))))
    row("validate_recommend_mnist.py", r"^\| divergence predicted = observed, away from the boundary \| \d+ / \d+ \| \d",
        {col: (RM, (b, "divergence_agreement_away_from_boundary"), times(30, ".0f"))})
text("validate_recommend_mnist.py", r"network path per cell; ([\d,]+) s in the stored run", [(RM, ("seconds",), comma)])
text("validate_recommend_mnist.py", r"--batch_sizes 10`, ([\d,]+) s;", [(R4, ("seconds",), comma)])
row("validate_recommend_mnist.py", r"^\| recommended \(0\.204, 0\.95\): real loss", {
    1: (R4, ("b=10", "recommended", "real"), f(".4f"))})
CHECKS.append(("row", "validate_recommend_mnist.py", r"^\| recommended \(0\.204, 0\.95\): real loss", 1,
               (R4, ("b=10", "best_cell", "real"), f(".4f"))))
CHECKS.append(("row", "validate_recommend_mnist.py", r"^\| recommended \(0\.204, 0\.95\): real loss", 1,
               (R4, ("b=10", "ratio_recommended_to_best"), f(".2f"))))
row("validate_recommend_mnist.py", r"^\| Spearman\(predicted, real\), converging cells \| \*\*", {
    1: (R4, ("b=10", "spearman"), f(".2f"))})
text("validate_recommend_mnist.py", r"now read ([\d.]+) ± ([\d.]+) \(predicted ([\d.]+)\) and ([\d.]+) ± ([\d.]+) "
                                    r"\(predicted ([\d.]+)\)", [
    (R4, ("cells", 26, "real"), f(".3f")), (R4, ("cells", 26, "real_se"), f(".3f")),
    (R4, ("cells", 26, "predicted"), f(".3f")), (R4, ("cells", 20, "real"), f(".3f")),
    (R4, ("cells", 20, "real_se"), f(".3f")), (R4, ("cells", 20, "predicted"), f(".3f"))])
text("validate_recommend_mnist.py", r"close \(([\d.]+) and ([\d.]+) at beta = 0\), and the network at b = 2 with alpha = ([\d.]+)", [
    (RM, ("b=2 vs b=128", "predicted_largest_stable_lr_at_2"), f(".2f")),
    (RM, ("b=2 vs b=128", "predicted_largest_stable_lr_at_128"), f(".2f")), (RM, ("b=2 vs b=128", "lr"), f(".2f"))])

# diagnose_edge_mnist.py
DE = "diagnose_edge_mnist.json"
for i, (lr, beta) in enumerate([("0.970", "−0.50"), ("1.441", "−0.25"), ("2.141", "0.00"), ("1.441", r"\+0.50"),
                                ("2.141", r"\+0.25"), ("0.439", "0.00"), ("0.970", r"\+0.25")]):
    C = ("cells", i)
    cells = {0: (DE, C + ("lr",), f(".3f")), 6: (DE, C + ("network",), f(".3f"))}
    CHECKS.append(("row", "diagnose_edge_mnist.py", rf"^\| {lr} \([\d.]+\) \| {beta} \|", 0,
                   (DE, C, lambda c: format(c["lr"] / c["sd_crit"], ".2f"))))
    if i != 2:
        cells.update({2: (DE, C + ("predicted",), f(".3f")), 3: (DE, C + ("linearized_mean",), f(".3f")),
                      4: (DE, C + ("linearized_median",), f(".3f")), 5: (DE, C + ("linearized",), f(".3f"))})
        CHECKS.append(("row", "diagnose_edge_mnist.py", rf"^\| {lr} \([\d.]+\) \| {beta} \|", 3,
                       (DE, C + ("linearized_se",), f(".3f"))))
    row("diagnose_edge_mnist.py", rf"^\| {lr} \([\d.]+\) \| {beta} \|", cells)
text("diagnose_edge_mnist.py", r"--data_root ../shared/data` \((\d+) s;", [(DE, ("seconds",), f(".0f"))])

# bench_spectrum.py
M60, D8, SN, FM = "spectrum_mnist60k.json", "spectrum_dense8000.json", "spectrum_nn.json", "full_mnist.json"
text("bench_spectrum.py", r"NTK in \*\*(\d+) s\*\* \(([\d.]+) min:\nload (\d+) s, per-layer features (\d+) s, eigenpairs (\d+) s\), "
                          r"\*\*peak RSS ([\d.]+) GB\*\*\. Block Lanczos with block (\d+)", [
    (M60, ("total_s",), f(".0f")), (M60, ("total_s",), lambda v: format(v / 60, ".1f")), (M60, ("load_s",), f(".0f")),
    (M60, ("features_s",), f(".0f")), (M60, ("eigen_s",), f(".0f")), (M60, ("peak_rss_gb",), f(".1f")),
    (M60, ("block_size",), f("d"))])
text("bench_spectrum.py", r"in (\d) passes plus one verification pass \(about (\d+) s per pass", [
    (M60, ("passes",), lambda v: str(v - 1)), (M60, ("pass_seconds",), f(".0f"))])
text("bench_spectrum.py", r"λ_1000/λ_1 = (.+?); tail fit ν = ([\d.]+) \[([\d.]+), ([\d.]+)\], R² ([\d.]+);", [
    (M60, ("lambda_k",), sci_unicode), (M60, ("tail", "nu"), f(".3f")), (M60, ("tail", "nu_ci", 0), f(".3f")),
    (M60, ("tail", "nu_ci", 1), f(".3f")), (M60, ("tail", "r2_lambda"), f(".3f"))])
text("bench_spectrum.py", r"residual energy outside the top 1000 is ([\d.]+)% of", [
    (FM, ("spectrum", "tail", "constraints"), lambda c: format(100 * c["energy_tail"] / c["energy"], ".1f"))])
for dt in ("float64", "float32"):
    row("bench_spectrum.py", rf"^\| {dt} \| [\d.]+ s", {
        1: (D8, (dt, "dense_ntk_eigh_s"), f(".1f")), 2: (D8, (dt, "operator_topk_s"), f(".1f")),
        3: (D8, (dt, "speedup"), f(".2f")), 4: (D8, (dt, "max_rel_err_vs_dense"), f(".1e"))})
    CHECKS.append(("row", "bench_spectrum.py", rf"^\| {dt} \| [\d.]+ s", 2, (D8, (dt, "basis"), comma)))
    CHECKS.append(("row", "bench_spectrum.py", rf"^\| {dt} \| [\d.]+ s", 2, (D8, (dt, "passes"), lambda v: str(v - 1))))
text("bench_spectrum.py", r"eigenvalues are accurate to (\S+) relative at N = 8,000", [
    (D8, ("float32", "max_rel_err_vs_dense"), f(".1e"))])
text("bench_spectrum.py", r"([\d.]+)–([\d.]+) ms against ([\d.]+)–([\d.]+) ms per step, \*\*ratio ([\d.]+)–([\d.]+), median ([\d.]+)\*\*", [
    (SN, ("rounds",), lambda r: format(min(x["nn_ms"] for x in r), ".1f")),
    (SN, ("rounds",), lambda r: format(max(x["nn_ms"] for x in r), ".1f")),
    (SN, ("rounds",), lambda r: format(min(x["plain_ms"] for x in r), ".1f")),
    (SN, ("rounds",), lambda r: format(max(x["plain_ms"] for x in r), ".1f")),
    (SN, ("rounds",), lambda r: format(min(x["ratio"] for x in r), ".2f")),
    (SN, ("rounds",), lambda r: format(max(x["ratio"] for x in r), ".2f")), (SN, ("median_ratio",), f(".2f"))])

# validate_full_mnist.py
FD = "full_mnist_dense.json"
for k in ("100", "300", "1000"):
    R = ("ranks", k)
    row("validate_full_mnist.py", rf"^\| {k} \| [\d.]+ s", {
        1: (FD, R + ("seconds",), f(".1f")), 2: (FD, R + ("top_k_max_rel_err",), f(".1e")),
        3: (FD, R + ("sd_max_gap",), lambda g: ", ".join(format(100 * x, ".1f") for x in g)),
        4: (FD, R + ("sd_max_gap_all",), pct(".1f"))})
for i, (b, beta) in enumerate([(10, "0"), (10, "−0.3"), (100, "0"), (100, "−0.3"), (1000, "0"), (1000, "−0.3")]):
    C = ("configs", i)
    row("validate_full_mnist.py", rf"^\| {b} \| {beta} \| [\d.]+ \|", {
        2: (FM, C + ("lr",), f(".3f")), 3: (FM, C + ("seeds",), f("d")), 4: (FM, C + ("gap_median",), pct(".1f")),
        5: (FM, C + ("gap_max",), pct(".1f")), 6: (FM, C + ("exponent_pred",), f(".3f")),
        7: (FM, C + ("exponent_real",), f(".3f"))})
text("validate_full_mnist.py", r"took (\d+) s at b = 10 and (\d+) s at b = 100", [
    (FM, ("configs", 0, "nn_seconds"), f(".0f")), (FM, ("configs", 2, "nn_seconds"), f(".0f"))])
text("validate_full_mnist.py", r"b = 1000 for 2,000 steps (\d+) s for two", [(FM, ("configs", 4, "nn_seconds"), f(".0f"))])

# bench_dask.py
DK = "dask.json"
for i in range(3):
    for col, part in ((1, "nn"), (2, "nn_small"), (3, "full")):
        R = ("rounds", i, part)
        row("bench_dask.py", rf"^\| {i} \|", {col: (DK, R + ("serial_s",), f(".1f"))})
        CHECKS.append(("row", "bench_dask.py", rf"^\| {i} \|", col, (DK, R + ("dask_s",), f(".1f"))))
        CHECKS.append(("row", "bench_dask.py", rf"^\| {i} \|", col, (DK, R + ("ratio",), f(".2f"))))
text("bench_dask.py", r"Medians: \*\*nn_small ([\d.]+)×\*\* \(≥ 1\.6×\), nn ([\d.]+)×, full\n([\d.]+)×", [
    (DK, ("nn_small_median_ratio",), f(".2f")), (DK, ("nn_median_ratio",), f(".2f")), (DK, ("full_median_ratio",), f(".2f"))])

# bench_regimes_ab.py
AB = "regimes_refactor_issue22.json"
for i, (regime, spec) in enumerate([("full", comma), ("sd", f(".3f")), ("linearized", f(".3f"))]):
    R = ("regimes", i)
    row("bench_regimes_ab.py", rf"^\| {regime} \|", {1: (AB, R + ("median_before_us",), spec),
                                                      2: (AB, R + ("median_after_us",), spec),
                                                      3: (AB, R + ("ratio_after_over_before",), f(".2f"))})

# bench_memory.py
MM = "memory.json"
for n, label in ((2000, "2,000"), (5000, "5,000"), (10000, "10,000"), (15000, "15,000")):
    A = ("by_N", str(n))
    cells = {1: (MM, A + ("dense_kernel_mb",), f(".0f")), 4: (MM, A + ("increase_mb",), f(".0f")),
             5: (MM, A + ("peak_rss_mb",), f(".0f")), 6: (MM, A + ("seconds",), f(".1f"))}
    if n != 15000:
        cells.update({2: (MM, ("before_by_N", str(n), "increase_mb"), f(".0f")),
                      3: (MM, ("before_by_N", str(n), "peak_rss_mb"), f(".0f"))})
    row("bench_memory.py", rf"^\| {label} \|", cells)
    CHECKS.append(("row", "bench_memory.py", rf"^\| {label} \|", 6, (MM, A + ("passes",), f("d"))))
text("bench_memory.py", r"The N = 15,000 process took (\d+) s, the N = 10,000 processes (\d+) s \(before\)\nand (\d+) s", [
    (MM, ("by_N", "15000", "process_seconds"), f(".0f")), (MM, ("before_by_N", "10000", "process_seconds"), f(".0f")),
    (MM, ("by_N", "10000", "process_seconds"), f(".0f"))])
text("bench_memory.py", r"the increase falls from (\d+) MB to (\d+) MB, below the dense kernel; at N = 15,000 the run stays at\n"
                        r"(\d+) MB \(dense kernel (\d+) MB\)", [
    (MM, ("before_by_N", "10000", "increase_mb"), f(".0f")), (MM, ("by_N", "10000", "increase_mb"), f(".0f")),
    (MM, ("by_N", "15000", "increase_mb"), f(".0f")), (MM, ("by_N", "15000", "dense_kernel_mb"), f(".0f"))])
text("bench_memory.py", r"features, N \(784 \+ 1000 \+ 1000 \+ 1\) numbers \((\d+) MB", [
    (MM, ("by_N", "10000", "operator", "memory", "feature_bytes"), lambda v: format(v / 1e6, ".0f"))])
text("bench_memory.py", r"Krylov basis\n\((\d),(\d+) columns, (\d+) MB", [
    (MM, ("by_N", "10000", "eigensolver_memory", "basis"), lambda v: str(v // 1000)),
    (MM, ("by_N", "10000", "eigensolver_memory", "basis"), lambda v: format(v % 1000, "03d")),
    (MM, ("by_N", "10000", "eigensolver_memory", "basis_bytes"), lambda v: format(v / 1e6, ".0f"))])
text("bench_memory.py", r"comes close to N \(([\d,]+)\ncolumns at N = 2,000\)", [
    (MM, ("by_N", "2000", "eigensolver_memory", "basis"), comma)])

# benchmark scripts without checked numbers, and why
NO_JSON = {}


# ------------------------------------------------------------------------------------------------ machinery
def sections(text_):
    out, name, lines = {}, None, []
    for line in text_.splitlines():
        m = re.match(r"^## (\S+)", line)
        if m:
            if name:
                out[name] = "\n".join(lines)
            name, lines = m.group(1), []
        elif name:
            lines.append(line)
    if name:
        out[name] = "\n".join(lines)
    return out


def value(json_name, path):
    obj = json.loads((RESULTS / json_name).read_text())
    for k in path:
        obj = obj[k]
    return obj


def locate(text_, check):
    """(start, end) of the checked number's place in the README text (a cell, or a regex group), or an error."""
    kind, section, regex, where, (json_name, path, fmt) = check
    secs = sections(text_)
    if section not in secs:
        return f"no section '## {section}'"
    body = secs[section]
    offset = text_.index(body)
    if kind == "row":
        rows = [m for m in re.finditer(r"^.*$", body, re.M) if re.search(regex, m.group(0))]
        if len(rows) != 1:
            return f"{len(rows)} rows match {regex!r} in {section}"
        line = rows[0]
        cells = line.group(0).split("|")[1:-1]
        if where >= len(cells):
            return f"row {regex!r} has no column {where}"
        start = line.start() + 1 + sum(len(c) + 1 for c in cells[:where])
        return offset + start, offset + start + len(cells[where])
    found = list(re.finditer(regex, body))
    if len(found) != 1:
        return f"{len(found)} matches of {regex!r} in {section}"
    return offset + found[0].start(where), offset + found[0].end(where)


def problems(text_, checks=None):
    out = []
    for check in CHECKS if checks is None else checks:
        kind, section, regex, where, (json_name, path, fmt) = check
        span = locate(text_, check)
        if isinstance(span, str):
            out.append((check, span))
            continue
        want = fmt(value(json_name, path))
        got = text_[span[0]:span[1]]
        ok = (got == want) if kind == "text" else bool(
            re.search(rf"(?<![\d.]){re.escape(want)}(?![\d]|\.\d)", got))
        if not ok:
            out.append((check, f"{section}: {json_name} {list(path)} is {want!r}, the README has {got.strip()!r}"))
    return out


# ------------------------------------------------------------------------------------------------ tests
def test_readme_numbers_match_the_stored_results():
    bad = problems(README.read_text())
    assert not bad, "\n".join(msg for _, msg in bad)


def test_every_quoted_json_and_every_benchmark_is_checked():
    text_ = README.read_text()
    named = set(re.findall(r"([\w]+\.json)", text_))
    stored = {p.name for p in RESULTS.glob("*.json")}
    checked = {c[4][0] for c in CHECKS}
    assert named - stored == set(), f"the README names JSONs that are not stored: {named - stored}"
    assert (named & stored) - checked == set(), f"quoted but never checked: {(named & stored) - checked}"
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")}
    with_checks = {c[1] for c in CHECKS}
    assert scripts - with_checks - set(NO_JSON) == set(), f"benchmarks without checked numbers: {scripts - with_checks}"
    missing = scripts - set(sections(text_)) - set(NO_JSON)
    assert not missing, f"benchmarks without a README section: {missing}"


def _bump(s):
    """The number s with its last digit changed (9 -> 8, else + 1)."""
    i = max(k for k, ch in enumerate(s) if ch in "0123456789")
    return s[:i] + ("8" if s[i] == "9" else str(int(s[i]) + 1)) + s[i + 1:]


@pytest.mark.parametrize("i", range(len(CHECKS)))
def test_an_edited_number_is_caught(i):
    """Edit the number that check i reads (its last digit) in a copy of the README: the checks must fail."""
    text_ = README.read_text()
    check = CHECKS[i]
    span = locate(text_, check)
    assert not isinstance(span, str), span
    want = check[4][2](value(check[4][0], check[4][1]))
    place = text_[span[0]:span[1]]
    m = re.search(rf"(?<![\d.]){re.escape(want)}(?![\d]|\.\d)", place)
    assert m, (place, want)
    edited = text_[:span[0]] + place[:m.start()] + _bump(want) + place[m.end():] + text_[span[1]:]
    assert not problems(text_, [check])
    assert problems(edited, [check]), f"editing {want!r} in {place!r} went unnoticed"
