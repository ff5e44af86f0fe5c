"""Speed and memory benchmarks of neural-kernels, printed as JSON lines.

Run them all with ``python -m benchmarks`` (``make bench``), or one module with
``python -m benchmarks.bench_fc_kernel``; ``--quick`` runs small smoke cases. Timings are
never asserted in tests.
"""
