"""minigcnc.bench: the package's command line and a section's report, at the smallest sizes (no timing asserted)."""
import subprocess
import sys

from minigcnc.bench.collapse import bench_collapse


def test_bench_collapse_reports_cdnv_and_nc1_timings():
    rows = []
    times = bench_collapse(lambda name, s, note: rows.append((name, s, note)), n=400, p=8, k=5, repeats=1)
    assert [r[0] for r in rows] == ["collapse.cdnv", "collapse.nc1"]
    assert set(times) == {"collapse.cdnv", "collapse.nc1"}
    assert all(isinstance(s, float) for s in times.values())
    assert all("400 x 8 features, 5 classes" in note for _, _, note in rows)


def test_python_m_minigcnc_bench_lists_its_sections_and_options():
    out = subprocess.run([sys.executable, "-m", "minigcnc.bench", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--only {train,gc,collapse,gpu}" in out.stdout and "--quick" in out.stdout and "--backend" in out.stdout
