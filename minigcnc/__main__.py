"""`python -m minigcnc`: what can be run, the options every figure shares, and where to read on."""
import textwrap

from .registry import FIGURES

READ_ON = [  # (path in the source tree, what it is)
    ("notebooks/tutorial.ipynb", "the tutorial: GC, collapse and the bound on one small run, step by step"),
    ("docs/theory.md", "the mathematics: GC, neural collapse, the bound, and how each is computed"),
    ("docs/api.md", "every public function, with its arguments"),
    ("figures/REPORT.md", "the last full reproduction: every figure's claims, verdicts and wall time"),
]


def shared_options():
    """Lines describing every option of ``cli.figure_parser``, read from the parser itself (so they stay true)."""
    from .experiments.cli import figure_parser

    lines = []
    for action in figure_parser("python -m minigcnc.figureN", "")._actions:
        if not action.option_strings or action.dest == "help":
            continue
        name = action.option_strings[-1]
        if action.nargs != 0:
            name += " " + (action.metavar or ("|".join(action.choices) if action.choices else action.dest.upper()))
        lines += textwrap.wrap((action.help or "").replace("%%", "%"), 100, initial_indent=f"  {name:<30s} ",
                               subsequent_indent=" " * 33)
    return lines


def main():
    print("minigcnc: geometric complexity and neural collapse (Munn, Dherin & Gonzalvo, NeurIPS 2024)\n")
    print("Figures:")
    for module, extra, what in FIGURES.values():  # in the order python -m minigcnc.reproduce runs them
        print(f"  python -m minigcnc.{' '.join([module, *extra]):<26s} {what}")
    print("\nOptions every figure takes (python -m minigcnc.figureN --help adds the figure's own):")
    print("\n".join(shared_options()))
    print("\nEverything at once:\n  python -m minigcnc.reproduce                  every figure at its default scale, "
          "figures/REPORT.md")
    print("\nThe result cache (--cache, else $MINIGCNC_CACHE, else ~/.cache/minigcnc):\n"
          "  python -m minigcnc.experiments.cache --info               the folder, its runs and their size\n"
          "  python -m minigcnc.experiments.cache --prune [--dry-run]  delete the runs of other code [list them]")
    print("\nBenchmarks:\n  python -m minigcnc.bench                      speed ratios against baselines, one run")
    print("\nRead on (in the source tree):")
    for path, what in READ_ON:
        print(f"  {path:<28s} {what}")
    print("\nTests:\n  pip install -e \".[test]\" && python -m pytest")


if __name__ == "__main__":
    main()
