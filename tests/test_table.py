"""The claim table: whole statements, every seed, numbers with the digits they need, the plumbing banner, and
what a figure prints at its end (``print_table``)."""
import re

import numpy as np
import pytest

from minigcnc.experiments import claims as C
from minigcnc.experiments import table as T


def test_claim_table_never_cuts_a_long_statement_and_shows_every_seed():
    words = [f"w{i:03d}" for i in range(40)]
    statement = " ".join(words)[:199] + "Z"
    assert len(statement) == 200
    rng = np.random.default_rng(4)
    x = np.tile(np.arange(5.0), (7, 1))
    y = 0.8 * (x - 2.0) / np.sqrt(2.0) + rng.standard_normal((7, 5))
    c = C.rank_correlation_claim("f", statement, x, y, +1, "x", "y")
    chk = C.inequality_check("f", statement, [[1]], [[0]], "b", "v", by_construction=True)
    table = T.claim_table([c, chk])
    first_col = [line[:46].strip() for line in table.splitlines()]
    for block in ("claim", "check"):
        start = next(i for i, line in enumerate(table.splitlines()) if line.startswith(block))
        text = " ".join(s for s in first_col[start + 2:start + 2 + 5] if s)
        assert text.startswith(statement)
    assert len(re.findall(r"[+-]\d\.\d\d", table.split("Checks")[0])) >= 7  # 7 seeds
    for v in c.per_seed:
        assert f"{v:+.2f}" in table
    for header in ("statistic", "value", "95% CI", "p", "per seed", "verdict"):
        assert header in table.splitlines()[0]


def test_old_positional_claim_still_builds_and_prints():
    """figure2 builds a Claim positionally with its own verdict words; the table still prints it."""
    c = C.Claim("f", "median relative error small", "median |e - gc| / gc", 0.05, 2, "small", "mixed",
                [0.04, 0.06], "holds below 10%")
    d = c.to_dict()
    assert d["kind"] == "claim" and d["ci"] == [None, None] and d["p_value"] is None
    table = T.claim_table([c])
    assert table.splitlines()[-1].startswith("1 claim:") and "1 mixed" in table.splitlines()[-1]


@pytest.mark.parametrize("x,text", [(0.669, "+0.669"), (0.002134, "+0.0021"), (-0.0931, "-0.093"), (12.3456, "+12.346"),
                                    (0.0, "+0.000"), (3e-9, "+3.0e-09"), (float("nan"), "nan"), (None, "nan")])
def test_a_value_prints_with_the_digits_it_needs(x, text):
    assert T.fmt_sig(x) == text


def test_numbers_read_side_by_side_share_the_decimals_their_largest_needs():
    assert T.fmt_row([0.83, 0.72, 0.45]) == ["+0.83", "+0.72", "+0.45"]  # correlations: as before
    assert T.fmt_row([0.0012, -0.0034, 0.0]) == ["+0.0012", "-0.0034", "+0.0000"]  # not +0.00 -0.00 +0.00
    assert T.fmt_row([0.5, float("nan")], sign="") == ["0.50", "nan"] and T.fmt_row([]) == []
    assert T.fmt_interval(0.27, 1.07) == "[+0.27, +1.07]"
    assert T.fmt_interval(0.0012, 0.0034) == "[+0.0012, +0.0034]"  # the committed report printed [+0.00, +0.00]
    assert T.fmt_interval(0.501, 0.503) == "[+0.5010, +0.5030]"  # the width shows too: the ends never print equal
    assert T.fmt_interval(float("nan"), None) == "-"


def test_the_table_prints_small_effects_with_their_digits():
    """Figure 2's seed-pairing contrasts are a few thousandths: two fixed decimals printed them all as +0.00."""
    c = C.Claim("figure2", "an estimate tracks its seed's curve", "matched - mismatched", 0.00213, 5, "", "n/a",
                [0.0012, 0.0034, 0.0021, 0.0008, 0.0031], kind="description")
    table = T.claim_table([c])
    assert "+0.0021" in table and "+0.0012 +0.0034 +0.0021" in table.replace("\n", " ") and "+0.00 " not in table


def test_a_table_without_counted_claims_prints_no_empty_header_and_tiny_names_its_data():
    d = C.Claim("f", "a description", "s", 0.5, 1, "", "n/a", [0.5], kind="description")
    table = T.claim_table([d], scale="tiny", data="digits_rot")
    lines = table.splitlines()
    assert lines[0].startswith("PLUMBING CHECK: tiny scale trains short runs on digits_rot to test the code")
    assert "No counted claims" in table and not any(line.startswith("claim ") for line in lines)
    assert "8x8" not in T.claim_table([d], scale="tiny") and T.claim_table([]).startswith("No claims.")


def test_data_names_give_the_datasets_a_figure_trains_and_transfers_to_for_its_banner():
    from minigcnc.experiments.config import scale_base

    tiny = scale_base("tiny")
    assert T.data_names([tiny, tiny.replace(seed=1)]) == "digits"
    assert T.data_names([tiny.to_dict(), {"dataset": "gaussians"}]) == "digits and gaussians"
    assert T.data_names([{"dataset": "fashion_mnist", "target_dataset": "mnist5k"}]) == "fashion_mnist -> mnist5k"
    assert T.data_names([]) is None


def test_print_table_prints_the_claim_table_with_the_banner_naming_the_configs_data(capsys):
    from minigcnc.experiments.config import scale_base

    d = C.Claim("f", "a description", "s", 0.5, 1, "", "n/a", [0.5], kind="description")
    T.print_table([d], "tiny", [scale_base("tiny")])
    assert capsys.readouterr().out == T.claim_table([d], scale="tiny", data="digits") + "\n"
