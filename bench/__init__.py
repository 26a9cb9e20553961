"""rolecall's benchmark suite (issue #7): throughput, storage transactions, idle cost, boot
time, fan-out, footprint and a reliability comparison with Celery on kombu's Azure Storage
Queues transport.

Every benchmark runs its baseline in the same invocation, against its own in-memory Azurite
on loopback, and reports ratios rather than bare numbers: absolute figures on a shared 2-core
machine say little on their own, ratios measured side by side say what rolecall costs.

``python -m bench`` runs everything at full size and writes ``bench/RESULTS.md``;
``python -m bench --tiny`` runs the same code at toy sizes so ``tests/test_bench.py`` keeps it
from rotting.
"""
