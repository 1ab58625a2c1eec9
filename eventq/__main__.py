"""`python -m eventq` runs the CLI."""

from eventq.cli import main

main()
