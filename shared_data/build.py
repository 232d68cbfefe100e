"""Build the ``vocal_mels`` dataset: ``python -m shared_data.build``.

The command lives in ``shared_data.dataset.build_cli``; this module keeps its short name.
"""

from shared_data.cli import run_main
from shared_data.dataset.build_cli import main

if __name__ == "__main__":
    run_main(main)
