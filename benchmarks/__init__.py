"""Performance benchmarks (`make bench`); see benchmarks/suite.py."""
