"""Exploratory experiments kept with their results; not part of diffrep_lite (see benchmarks/README.md)."""
