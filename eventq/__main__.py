"""`python -m eventq` runs the CLI, which lives above the core in `eventq_cli`.

Only the interpreter runs this file (nothing imports it), so it belongs to the CLI layer, not the
core: tests/unit/test_layers.py counts it there, and fails if any module imports it.
"""

from eventq_cli.cli import main

main()
