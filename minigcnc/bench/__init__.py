"""Speed benchmarks: ratios against baselines, every pair measured in the same run.

``python -m minigcnc.bench`` runs the CPU sections (``--only NAME`` one of them, ``--quick`` smaller problems,
``--backend cupy`` the GPU section); each section also runs alone:

- ``minigcnc.bench.train``: one SGD step (MLP and convnet, float32 and float64, batch 128) against PyTorch's CPU
  eager step and JAX's jit step (when importable) and minigcnc's own one-op-per-primitive route; prints a table;
- ``minigcnc.bench.gc``: exact GC against autograd ``make_vjp``, per-sample ``autograd.jacobian`` and JAX;
- ``minigcnc.bench.collapse``: ``cdnv`` and ``nc1`` on 50,000 x 512 features;
- ``minigcnc.bench.floor``: the training floor of ``python -m minigcnc.reproduce``: its SGD steps alone, timed for
  minigcnc and PyTorch with one thread per job, summed per figure;
- ``minigcnc.bench.threads``: ``fit`` of the MLP and the laptop convnet with the library's default BLAS threads
  (``minigcnc.threads``) against one thread and all threads, idle and beside a busy process it starts itself;
- ``minigcnc.bench.gpu``: on a CUDA GPU, the cupy backend against numpy and PyTorch.

Each section module has ``bench_<name>(report, ...)``, where ``report(name, seconds, note)`` receives every
timing. Timings are wall-clock medians on this machine; compare ratios, not absolute seconds.
"""
