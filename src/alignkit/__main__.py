"""`python -m alignkit ...` (and `torchrun -m alignkit ...`) run the CLI."""

from alignkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
