"""Generate the synthetic corpus as audio files: ``python -m shared_data.synthetic``.

The command lives in ``shared_data.corpus.synthetic``; this module keeps its short name.
"""

from shared_data.cli import run_main
from shared_data.corpus.synthetic import main

if __name__ == "__main__":
    run_main(main)
