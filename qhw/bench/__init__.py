"""Benchmarks and measurement helpers: hardware sweeps (``qhw bench hw``), cached simulation runs."""
