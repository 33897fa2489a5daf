"""``trevo bench``: speed and memory of every component against sequence length.

``trevo bench mixers`` measures the registered token mixers (trevo.bench.mixers), ``trevo bench ops``
the linear-recurrence engine's forms (trevo.bench.ops). Both report ratios measured in one run
(to softmax attention, chunk to recurrent, achieved to this machine's matmul FLOP/s) and log-log
scaling exponents, never bare times alone; trevo.bench.report turns the results into a section of
the arena report. Benchmarks run here, never in timed tests.
"""
