"""``python -m recsys.cli``: the same command line as ``recsys``."""

from recsys.cli import main

main()
