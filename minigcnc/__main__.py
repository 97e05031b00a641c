"""`python -m minigcnc`: what can be run."""
import importlib

FIGURES = [
    ("figure1", "learning rate, batch size and L2 lower embedding GC, geometric collapse and NC (paper Fig. 1)"),
    ("figure2", "GC estimators (sample subsets, Jacobian masking, output sampling) track the exact GC (Fig. 2)"),
    ("figure3", "the GC-based bound tracks the nearest-class-centre test error (Fig. 3) -- the main job"),
    ("figure4", "lower source GC gives lower target NC and better few-shot transfer (Fig. 4)"),
    ("figure_gc_regularization", "an explicit GC penalty lowers GC, geometric collapse and NC (appendix)"),
    ("figure_mnist", "Figure 1's sweeps on a convolutional net (appendix: VGG-11 on MNIST)"),
]


def main():
    print("minigcnc: geometric complexity and neural collapse (Munn, Dherin & Gonzalvo, NeurIPS 2024)\n")
    print("Figures (each: --scale tiny|laptop|paper  --jobs N  --fresh  --out DIR  --backend numpy|cupy  --quiet):")
    for name, what in FIGURES:
        try:
            importlib.import_module(f"minigcnc.{name}")
            status = ""
        except ImportError:
            status = "  [not built yet]"
        print(f"  python -m minigcnc.{name:<26s} {what}{status}")
    print("\nEverything at once:\n  python -m minigcnc.reproduce                  every figure at its default scale, "
          "figures/REPORT.md")
    print("\nBenchmarks:\n  python -m minigcnc.bench                      speed ratios against baselines, one run")
    print("\nTests:\n  pip install -e \".[test]\" && python -m pytest")


if __name__ == "__main__":
    main()
