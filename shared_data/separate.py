"""Separate songs into vocals and accompaniment: ``python -m shared_data.separate``.

The command lives in ``shared_data.separation.separate_cli``; this module keeps its short name.
"""

from shared_data.cli import run_main
from shared_data.separation.separate_cli import main

if __name__ == "__main__":
    run_main(main)
