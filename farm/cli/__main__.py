"""``python -m farm.cli``."""

from farm.cli import run

run()
