"""Benchmarks of leadpulse on the embedded stack; see bench/README.md."""
