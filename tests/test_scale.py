"""docs/scale.md shows what the code computes: the table is `python -m bench.scale`'s output,
so a change to a default (poll_max_s, heartbeat_s) that changes the fleet's cost changes the
document too, or this fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.idle import IDLE_TARGET
from bench.scale import per_instance_idle, render, row

DOC = Path(__file__).resolve().parents[1] / "docs" / "scale.md"


def test_the_scale_table_in_the_docs_is_the_one_the_code_computes() -> None:
    text = DOC.read_text()
    start = text.index("<!-- scale-table -->\n") + len("<!-- scale-table -->\n")
    end = text.index("<!-- /scale-table -->")
    assert text[start:end].strip() == render().strip(), "run `python -m bench.scale`"


def test_an_idle_fleet_costs_what_the_settings_say_and_grows_linearly() -> None:
    polls, heartbeats = per_instance_idle()
    assert polls + heartbeats <= IDLE_TARGET, "the idle target per instance"
    assert row(50_000).idle_tx_h == pytest.approx(500 * row(100).idle_tx_h)
    assert row(50_000).fanout_account_rps < 20_000, "within one account's target"
