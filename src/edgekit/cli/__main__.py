"""``python -m edgekit.cli``: the ``edgekit`` command without the console script."""

from edgekit.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
