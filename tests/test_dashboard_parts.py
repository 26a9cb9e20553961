"""The dashboard's parts that need no worker: a role's cells page by page."""

from __future__ import annotations

import re

import pytest

from rolecall.controller.web import pages
from rolecall.controller.web.server import parse_address, serving
from rolecall.controller.web.state import Components
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from tests.dashboard import get
from tests.factories import register


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
