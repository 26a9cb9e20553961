"""The dashboard's parts that need no worker: its cache, and a role's cells page by page."""

from __future__ import annotations

import re
import threading

import pytest

from rolecall.controller.web import pages
from rolecall.controller.web.cache import Cached
from rolecall.controller.web.server import parse_address, serving
from rolecall.controller.web.state import Components
from rolecall.schemas.errors import StorageError
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from tests.dashboard import get
from tests.factories import register
from tests.fleet import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_waits_for_the_first_load_only_and_keeps_the_last_good_value() -> None:
    clock, loads, gate = Clock(), [], threading.Event()
    outcomes: list[object] = [1, 2, StorageError("storage said no"), 4]

    def load() -> object:
        loads.append(1)
        if len(loads) > 1:
            gate.wait(30)  # a later load takes as long as the test says
        outcome = outcomes[len(loads) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    cached: Cached[object] = Cached(load, ttl_s=5, clock=clock)
    assert cached.get() == 1 and len(loads) == 1
    assert cached.get() == 1 and len(loads) == 1  # young enough: not loaded again
    clock.now = 5
    assert cached.get() == 1  # old: a load starts, and the caller is answered at once
    assert cached.get() == 1 and len(loads) == 2  # one load at a time
    gate.set()
    wait_for(lambda: cached.get() == 2, what="the background load's value")
    clock.now = 10
    cached.get()
    wait_for(lambda: cached.error == "storage said no", what="the failed load said")
    assert cached.get() == 2  # the last good value stays
    clock.now = 15
    cached.get()
    wait_for(lambda: cached.get() == 4 and cached.error is None, what="a good load again")


def test_nothing_to_show_yet_and_a_failing_load_is_the_failure() -> None:
    def load() -> int:
        raise StorageError("unreachable")

    with pytest.raises(StorageError):
        Cached(load, ttl_s=5).get()


def test_a_large_role_is_shown_page_by_page(
    settings: StorageSettings, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "CELLS_PER_PAGE", 2)
    monkeypatch.setattr(pages, "INLINE_CELLS", 2)
    for i in range(5):
        register(storage, f"web-{i}")
    with serving(settings, parse_address("127.0.0.1:0"), None, Components()) as url:
        fleet = get(url)
        assert "data-instance=" not in fleet.body and "All 5 cells, by page" in fleet.body
        first = get(url + "fleet/web")
        assert first.status == 200 and "page 1 of 3" in first.body
        assert len(re.findall(r'class="cell s-', first.body)) == 2
        assert "next ›" in first.body and "‹ previous" not in first.body
        last = get(url + "fleet/web?page=99")  # clamped to the last page
        assert "page 3 of 3" in last.body and "‹ previous" in last.body
        assert len(re.findall(r'class="cell s-', last.body)) == 1
        assert get(url + "fleet/nobody").status == 404
