"""``python -m intelpact``: the same command line as ``intelpact``."""

from intelpact.interfaces.cli import main

if __name__ == "__main__":
    main(prog_name="intelpact")
