"""minigcnc.autograd_internals: each name is the object autograd itself uses, and the package's modules take
autograd's internals from it alone."""
import ast
from pathlib import Path

import autograd.numpy as anp
import numpy as onp
from autograd import grad
from autograd import tracer as autograd_tracer

from minigcnc import autograd_internals as ai

PACKAGE = Path(__file__).resolve().parents[1] / "minigcnc"
PUBLIC_AUTOGRAD = {"autograd", "autograd.extend", "autograd.misc", "autograd.numpy"}


def test_every_name_is_autograds_own_object():
    import autograd.core as core
    import autograd.numpy.numpy_boxes as boxes

    assert ai.VJPNode is core.VJPNode and ai.VSpace is core.VSpace and ai.vspace is core.vspace
    assert ai.add_outgrads is core.add_outgrads and ai.ArrayBox is boxes.ArrayBox
    assert ai.trace_stack is autograd_tracer.trace_stack and ai.new_box is autograd_tracer.new_box
    assert ai.toposort is autograd_tracer.toposort  # the one the tracer itself calls
    assert sorted(ai.__all__) == sorted(n for n in vars(ai) if not n.startswith("_"))


def test_the_names_behave_as_the_package_uses_them():
    seen = {}

    def f(x):
        seen["boxed"] = ai.isbox(x)
        seen["value"] = ai.getval(x)
        return anp.sum(x ** 2)

    x = onp.arange(3.0)
    onp.testing.assert_allclose(grad(f)(x), 2 * x)
    assert seen["boxed"] and isinstance(seen["value"], onp.ndarray) and not ai.isbox(x)
    assert isinstance(ai.vspace(x), ai.VSpace) and onp.array_equal(ai.vspace(x).zeros(), onp.zeros(3))


def test_no_other_module_imports_a_private_autograd_name():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "autograd_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("autograd"):
                if node.module not in PUBLIC_AUTOGRAD and not (node.module == "autograd.core" and
                                                               [a.name for a in node.names] == ["make_vjp"]):
                    bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} from {node.module}")
    assert not bad, f"import autograd's internals through minigcnc.autograd_internals: {bad}"
