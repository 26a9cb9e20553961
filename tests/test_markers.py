"""Job markers (worker/markers.py): what an incarnation applied survives restarts and crashes,
torn lines and old markers are dropped, and markers written by older agents still count."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rolecall.worker.markers import JOURNAL, JobMarkers, _key


def test_a_marker_survives_a_restart_and_others_are_unknown(tmp_path: Path) -> None:
    m = JobMarkers(tmp_path).open()
    m.mark("run1.web-0", {"outcome": "succeeded"})
    m.mark("run2.web-0", {"outcome": "reboot_required"})
    m.close()  # a restart (or a SIGKILL: nothing is buffered)
    again = JobMarkers(tmp_path).open()
    assert again.get("run1.web-0") == {"outcome": "succeeded"}
    assert again.get("run2.web-0") == {"outcome": "reboot_required"}
    assert again.get("run3.web-0") is None


def test_a_torn_last_line_is_dropped_and_appending_goes_on(tmp_path: Path) -> None:
    m = JobMarkers(tmp_path).open()
    m.mark("kept", {"n": 1})
    m.close()
    with (tmp_path / JOURNAL).open("ab") as f:
        f.write(b'{"k": "' + _key("torn").encode() + b'", "t": 1')  # power cut mid-write
    again = JobMarkers(tmp_path).open()
    assert again.get("torn") is None
    again.mark("after", {"n": 2})
    again.close()
    third = JobMarkers(tmp_path).open()
    assert (third.get("kept"), third.get("after")) == ({"n": 1}, {"n": 2})


def test_markers_older_than_the_ttl_are_forgotten(tmp_path: Path) -> None:
    m = JobMarkers(tmp_path).open()
    m.mark("old", {"n": 1})
    m.close()
    lines = (tmp_path / JOURNAL).read_text().splitlines()
    entry = json.loads(lines[0])
    entry["t"] = int(time.time()) - 31 * 24 * 3600
    (tmp_path / JOURNAL).write_text(json.dumps(entry) + "\n")
    again = JobMarkers(tmp_path).open()
    assert again.get("old") is None
    assert (tmp_path / JOURNAL).read_text() == "", "the journal was compacted"


def test_markers_of_an_agent_before_the_journal_still_count(tmp_path: Path) -> None:
    """Images lag: an instance upgraded in place keeps the jobs/<hash>.json markers its old
    agent wrote, and the new agent must not re-run those jobs."""
    legacy = tmp_path / "jobs"
    legacy.mkdir()
    (legacy / f"{_key('run1.web-0')}.json").write_text('{"outcome": "succeeded"}')
    stale = legacy / f"{_key('ancient')}.json"
    stale.write_text("{}")
    month_ago = time.time() - 31 * 24 * 3600
    os.utime(stale, (month_ago, month_ago))
    m = JobMarkers(tmp_path).open()
    assert m.get("run1.web-0") == {"outcome": "succeeded"}
    assert m.get("ancient") is None
    assert not legacy.exists()
