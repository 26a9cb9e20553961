"""Development and test tooling: the Azurite launcher, the demo, the reimage simulator, the
fault-injecting proxy and the local fleet.

Not part of the product: the wheel leaves this package out (pyproject.toml), so nothing here
is installed on instances, and the worker never imports it. A source checkout (``make
setup``, an editable install) has it.
"""
