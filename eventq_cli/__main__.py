"""`python -m eventq_cli` runs the CLI (as does `python -m eventq`)."""

from eventq_cli.cli import main

main()
