"""The documentation: the API site builds with `mkdocs build --strict` (a broken reference, a docstring that
mkdocstrings cannot render, or a notebook mkdocs-jupyter cannot convert fails the build), docs/theory.md is in
it, and no code cites a THEORY.md that the repository does not have."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_citation_of_a_missing_theory_file():
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "gfsgd").rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if "THEORY.md" in line]
    assert not hits, f"THEORY.md is cited but not in the repository: {hits}"


def test_theory_anchors_cited_by_the_code_exist():
    """Every docs/theory.md#<anchor> cited in the code names a heading anchor of docs/theory.md."""
    anchors = set(re.findall(r"\{#([a-z0-9-]+)\}", (ROOT / "docs" / "theory.md").read_text()))
    cited = {}
    for p in list((ROOT / "gfsgd").rglob("*.py")) + list((ROOT / "tests").rglob("*.py")):
        for a in re.findall(r"docs/theory\.md#([a-z0-9-]+)", p.read_text()):
            cited.setdefault(a, p.relative_to(ROOT))
    missing = {a: str(f) for a, f in cited.items() if a not in anchors}
    assert cited and not missing, f"citations of anchors that docs/theory.md does not define: {missing}"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_jupyter")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "theory" / "index.html").is_file(), "docs/theory.md is not in the site"
    html = (site / "api" / "theory" / "index.html").read_text()
    assert "loss_at" in html and "critical_lr" in html, "the theory API page lacks its functions"
    for name in ("RegimeComparison", "NegativeMomentum"):
        assert (site / "notebooks" / name / "index.html").is_file(), f"notebook {name} not rendered"
