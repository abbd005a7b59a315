"""Benchmarks: the learning bench, the agent bench, the HumanEval discovery bench. Production code
never imports this package."""
