"""The data-quality gate: great-expectations suites over one day of the lake.

``recsys.validation.gate.run_gate`` is the entry point (``recsys validate``).
"""
