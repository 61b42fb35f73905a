"""Benchmark: optimizer state, update-step time, scaling and peak memory.

    python -m bench            # the full run (make bench), from the repository root
    python -m bench --quick    # small sizes; checks that it still works

Each measurement runs in a subprocess of its own (a Keras backend is fixed
per process, and peak memory must be a process's own). Contenders are
interleaved step by step, so that machine noise falls on all alike. Writes
results.md, results.json, bench.png and table2.png to --out (default:
bench/). The tests run the workers in-process at the quick sizes
(tests/python/test_bench.py).

models.py: the sizes, the contenders and the models; workers.py: each
measurement; table2.py, stability.py and findings.py: section h, the
paper's Table 2 on real text; report.py: results.md, results.json and
bench.png; run.py: the run, section by section. What the tests use too
(the reference Transformer, the compiled step, the count of state) is in
tools/harness.py.
"""
