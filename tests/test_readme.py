"""The README's tutorial runs as printed, and what the README says of its output is what it prints."""
import os
import re

import numpy as np
import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def section_code(heading):
    """The one python block of the README section ``## <heading>...``."""
    text = open(README, encoding="utf-8").read()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"the section {heading!r} should hold exactly one python block"
    return blocks[0]


def tutorial_code():
    return section_code("Tutorial")


def test_the_tutorial_runs_and_shows_gc_rising_while_nc_falls(capsys):
    scope = {}
    exec(compile(tutorial_code(), "README.md#tutorial", "exec"), scope)  # noqa: S102 - our own README
    printed = capsys.readouterr().out.split("\n")
    rows = [line.split() for line in printed if line.strip()]
    steps = [int(r[0]) for r in rows]
    gc = np.array([float(r[1]) for r in rows])
    nc = np.array([float(r[2]) for r in rows])
    assert steps[0] == 0 and steps[-1] == 1000 and len(rows) == 5
    # the README's words: GC grows from its value at initialization; NC falls
    assert 40 < gc[0] < 80 and gc[-1] > gc[0]
    assert 2.5 < nc[0] < 4.5 and 0.25 < nc[-1] < 0.6 and np.all(np.diff(nc) < 0)


def test_your_own_experiment_runs_as_printed_and_both_claims_hold(capsys):
    """The README's width sweep, at tiny scale (in this test's own cache): what the README says it prints."""
    from minigcnc.experiments import cache

    exec(compile(section_code("Your own experiment"), "README.md#your-own-experiment", "exec"), {})  # noqa: S102
    out = capsys.readouterr().out
    for statement in ("a wider embedding ends with a higher GC", "across widths, a lower final GC goes with a"):
        line = next(line for line in out.splitlines() if line.startswith(statement))
        assert line.split()[-1] == "holds" and "+1.00 +1.00 +1.00" in line and " 0.009 " in line, out
    assert out.rstrip().endswith("2 claims: 2 holds, 0 inconclusive, 0 fails, 0 n/a"), out
    assert len(list((cache.default_cache_dir() / "runs").glob("*.json"))) == 9  # nine runs, in the cache


@pytest.mark.slow  # (~10 s: two tiny runs in two worker processes, twice)
def test_your_own_metric_runs_as_printed_in_workers_and_an_edit_recomputes(capsys):
    from minigcnc.experiments import cache, measure

    code = section_code("Your own metric")
    try:
        exec(compile(code, "README.md#your-own-metric", "exec"), {})  # noqa: S102 - our own README
        first = capsys.readouterr().out.strip()
        values = eval(first)  # noqa: S307 - what it printed: a list of two floats
        assert len(values) == 2 and all(v > 0 for v in values)
        assert len(list((cache.default_cache_dir() / "runs").glob("*.json"))) == 2
        exec(compile(code.replace(".mean()", ".max()"), "README.md#your-own-metric", "exec"), {})  # noqa: S102
        assert eval(capsys.readouterr().out.strip()) != values  # noqa: S307 - recomputed, not read back
        assert len(list((cache.default_cache_dir() / "runs").glob("*.json"))) == 4
    finally:
        measure.EXTRAS.pop("mean_norm", None)


DOCS = os.path.join(os.path.dirname(README), "docs")
# a measured cost or count typed into prose: "4.8 minutes", "565 run-seconds", "3.9-4.2x", "2.7-fold",
# "30 times slower", "12 penalized runs", "5 holds" (numbers live in figures/REPORT.md and the figures' JSON)
MEASURED = re.compile(
    r"(?<![-\w.])\d[\d.,]*(?:\s*-\s*\d[\d.,]*)?\s*(?:ms|s|sec|seconds?|min|minutes?|hours?|run-seconds|CPU minutes)\b"
    r"|(?<![-\w.])\d[\d.,]*(?:\s*-\s*\d[\d.,]*)?(?:x|-fold)\b"
    r"|(?<![-\w.])\d[\d.,]*\s+times\s+(?:faster|slower|as fast|as slow)\b"
    r"|(?<![-\w.])\d[\d,]*\s+(?:\w+\s+)?runs\b"
    r"|(?<![-\w.])\d+\s+(?:holds|fails|inconclusive)\b")


def measured_numbers(text):
    """The measured costs and counts (``MEASURED``) in the prose of a markdown ``text``, code spans and fenced
    blocks aside, as (line number, match)."""
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return [(i, m.group(0)) for i, line in enumerate(text.splitlines(), 1)
            for m in MEASURED.finditer(re.sub(r"`[^`]*`", "", line))]


def test_measured_numbers_are_found_outside_code_spans_only():
    found = [m for _, m in measured_numbers("took 4.8 minutes (565 run-seconds), 3.9-4.2x the exact, 2.7-fold; "
                                             "the 12 penalized runs, 5 holds; about 30 times slower")]
    assert found == ["4.8 minutes", "565 run-seconds", "3.9-4.2x", "2.7-fold", "12 penalized runs", "5 holds",
                     "30 times slower"]
    assert measured_numbers("VGG-11 runs, 8x8 digits, 3x3 convolutions, `--timeout 60 s`, p = 2/5!\n"
                            "```\n10 s\n```") == []


@pytest.mark.parametrize("name", ["figures.md", "theory.md"])
def test_the_docs_hold_no_measured_timing_or_count(name):
    """docs/ gives reasons; what the runs measured (times, speed factors, run and verdict counts) is generated
    into figures/REPORT.md and the figures' JSON, so a typed copy would go stale."""
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        found = measured_numbers(f.read())
    assert not found, (f"docs/{name} types measured numbers (line, text): {found}; point to figures/REPORT.md or "
                       "the figure's JSON instead")
