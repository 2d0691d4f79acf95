"""``consim bench``: latency and throughput of consim's request paths (see ``consim.bench.cli``).

``stats`` (percentiles, summaries, spreads) and ``plots`` (inline SVG) are pure and shared with the
scenario ``load`` step and the repository's benchmarks/ scripts; ``virtual`` and ``live`` run the
measurements.
"""
