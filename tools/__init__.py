"""Development harnesses that are not part of the installed package (fuzzing, coverage generators).

Run from the repository root (``python -m pytest``, ``python benchmarks/...``): ``import tools.fuzz``.
"""
