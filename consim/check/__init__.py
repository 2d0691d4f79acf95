"""Correctness verdicts: client histories and the linearizability checker (pure Python, no trio)."""
