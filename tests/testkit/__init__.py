"""Client-side helpers shared by the test suites and benchmarks."""
