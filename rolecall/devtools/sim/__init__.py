"""The local fleet simulator: reimages, crashes, storage faults, and a check of what survived.

``rolecall sim`` (and the chaos tests) run a fleet of real worker processes against a real
Azurite through a fault-injecting proxy, then compare what the controller reports with ground
truth that no instance can erase: a ledger file every job script appends to.
"""
