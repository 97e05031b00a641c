"""Every name the package takes from inside HIPS autograd that autograd does not document as its API, in one place.

The fast training step (``fast_step``), the fused layer primitives (``fused``, ``layers``), the exact-Jacobian
passes (``jacobian_passes``) and the backend's array boxes (``backend``) work below autograd's public functions
(``grad``, ``make_vjp``, ``autograd.extend``): they walk the tape, make boxes and add gradients themselves. The
names they need are imported here, each with a fallback where autograd has moved it, so that a change in a new
autograd release is fixed in this file alone. ``tests/test_autograd_internals.py`` checks that each is the
object autograd itself uses.

Where each lives, by autograd version (setup.cfg's floor is 1.7):

- ``VJPNode`` (the tape node that holds a primitive's VJP), ``vspace`` (the vector space of a value: zeros,
  ``mut_add``) and ``VSpace`` (its base class, to register the backend's array types): ``autograd.core``,
  re-exported by ``autograd.extend`` (its documented module for extending autograd) in 1.7, 1.8 and 1.9; taken
  from there.
- ``add_outgrads`` (adds a gradient into a node's running sum, in place once it owns the array):
  ``autograd.core`` only.
- ``isbox``, ``new_box``, ``getval`` (is a value traced, box a value, unbox it) and ``trace_stack`` (the
  current trace's counter, for new traces): ``autograd.tracer`` only.
- ``toposort`` (the tape's nodes from the output back, each after all its children): defined in
  ``autograd.util`` in 1.7, 1.8 and 1.9, and imported from there into ``autograd.tracer`` (where this package
  used to take it); the fallback takes it from ``tracer`` should a release keep it there only.
- ``ArrayBox`` (the box of a NumPy array, to register the backend's array types):
  ``autograd.numpy.numpy_boxes``.
"""
from autograd.core import add_outgrads
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.tracer import getval, isbox, new_box, trace_stack

try:
    from autograd.extend import VJPNode, VSpace, vspace
except ImportError:  # a layout that keeps them in core only
    from autograd.core import VJPNode, VSpace, vspace

try:
    from autograd.util import toposort  # autograd 1.7 - 1.9
except ImportError:
    from autograd.tracer import toposort

__all__ = ["ArrayBox", "VJPNode", "VSpace", "add_outgrads", "getval", "isbox", "new_box", "toposort",
           "trace_stack", "vspace"]
