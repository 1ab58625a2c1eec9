"""eventq_cli: the `eventq` command line and the `eventq run` supervisor, the layer above the rest.

It may import the core (`eventq`), `worker`, `producers` and `fake_hubspot`; nothing imports it
(tests/unit/test_layers.py checks).
"""

__all__: list[str] = []
