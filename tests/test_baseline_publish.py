"""Two operators publishing one role's baseline at once: neither overwrites the other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rolecall.controller.baselines import current_baseline, publish_baseline
from rolecall.schemas.baseline import Baseline
from rolecall.schemas.errors import ConcurrencyConflict
from rolecall.storage.clients import Storage
from tests.fleet import write_baseline


def rival_publishes_while_we_sign(storage: Storage, path: Path) -> Callable[[Baseline], Baseline]:
    """A ``sign`` hook (it runs between our read and our write) during which another
    operator publishes, once."""
    done: list[Baseline] = []

    def sign(ours: Baseline) -> Baseline:
        if not done:
            done.append(publish_baseline(storage, "web", path, issuer="rival")[0])
        return ours

    return sign


def test_the_loser_of_a_publish_race_publishes_on_top(storage: Storage, tmp_path: Path) -> None:
    path = write_baseline(tmp_path / "b", [("s", b"#!/bin/sh\n")])
    publish_baseline(storage, "web", path)
    ours, _ = publish_baseline(
        storage, "web", path, sign=rival_publishes_while_we_sign(storage, path)
    )
    stored, _ = current_baseline(storage, "web")
    assert (ours.version, ours.issuer) == (3, "rolecall")
    assert stored == ours


def test_a_publish_expecting_a_version_fails_if_another_lands_first(
    storage: Storage, tmp_path: Path
) -> None:
    path = write_baseline(tmp_path / "b", [("s", b"#!/bin/sh\n")])
    publish_baseline(storage, "web", path)
    with pytest.raises(ConcurrencyConflict) as e:
        publish_baseline(
            storage,
            "web",
            path,
            expected_version=1,
            sign=rival_publishes_while_we_sign(storage, path),
        )
    assert "is at version 2, not 1" in str(e.value)
    stored, _ = current_baseline(storage, "web")
    assert stored is not None and (stored.version, stored.issuer) == (2, "rival")
