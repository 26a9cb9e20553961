"""What instances report becomes /metrics labels only from the code's own vocabulary.

A hostile instance writes its own record's counts; names the code never gives are summed as
``other`` so the fleet cannot mint labels (pure logic: no storage needed).
"""

from __future__ import annotations

import itertools

from rolecall.controller.web.metrics import known
from rolecall.storage.meter import OPERATIONS, classify
from rolecall.storage.retry import ERROR_KINDS

URLS = [
    "https://a.queue/q/messages", "https://a.queue/q/messages/id", "https://a.queue/q/messages?peekonly=true",
    "https://a.queue/?comp=list", "https://a.queue/q?comp=metadata", "https://a.queue/q",
    "https://a.blob/c?comp=list", "https://a.blob/?comp=batch", "https://a.blob/c?restype=container",
    "https://a.blob/c/b",
]  # fmt: skip


def test_every_operation_the_meter_names_is_in_the_vocabulary() -> None:
    for service, method, url in itertools.product(
        ("queue", "blob"), ("GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"), URLS
    ):
        assert classify(service, method, url) in OPERATIONS


def test_names_an_instance_made_up_are_counted_as_other() -> None:
    reported = {"blob.put": 3, "blob.zz_minted_1": 5, "queue.receive": 2, "bogus": 1}
    assert known(reported, OPERATIONS) == {"blob.put": 3, "queue.receive": 2, "other": 6}
    assert known({"throttled": 1, "made_up": 2}, ERROR_KINDS) == {"throttled": 1, "other": 2}
