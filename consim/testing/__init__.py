"""Test-only helpers: fault switches nothing in consim turns on (tests and ``consim check`` campaigns
do), and the Go builder the judges and benchmarks share."""
