"""Benchmarks of fastprof (scripts, not tests). Results are reported in docs/performance.md."""
