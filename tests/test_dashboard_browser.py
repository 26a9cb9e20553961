"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): the pages move
while the fleet does, without a reload.

Locally the test skips, saying so, where /usr/bin/chromium is absent; in CI (``CI`` set) that
is a failure. Screenshots of the three pages at the end land in build/screenshots/dashboard/
(docs/images/ holds the committed ones: copy them from there after a change to the pages).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecall.storage.clients import Storage
from tests.dashboard import controller
from tests.fleet import Fleet, Operator, cli, cli_json, wait_for, write_baseline

CHROMIUM = Path(os.environ.get("ROLECALL_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots" / "dashboard"
#: how long the browser waits for a page to show a change (polls every 2 s, cache 5 s)
SEEN_MS = 60_000


@pytest.fixture
def browser() -> Iterator[object]:
    missing = None if CHROMIUM.exists() else f"no Chromium at {CHROMIUM}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "Playwright is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {missing} (apt-get install chromium)")
        pytest.skip(f"browser test skipped: {missing} (apt-get install chromium to run it)")
    with sync_playwright() as p:
        # as root (containers, CI) Chromium needs its sandbox off to start at all
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            yield b
        finally:
            b.close()


def gated(script: Path, gate: str) -> Path:
    """A job that waits until the test opens its gate (``gate`` may name $ROLECALL_INSTANCE),
    then succeeds, except on web-2, where it fails as a full disk would."""
    script.write_text(
        f'#!/bin/sh\nwhile [ ! -e "{gate}" ]; do sleep 0.1; done\necho "rotating"\n'
        'if [ "$ROLECALL_INSTANCE" = web-2 ]; then echo "no space left on device" >&2; exit 3; fi\n'
    )
    return script


def test_the_pages_follow_a_reimage_a_run_and_a_poisoned_message_live(
    browser: object, env: dict[str, str], tmp_path: Path, workers: Fleet, ops: Operator,
    storage: Storage,
) -> None:  # fmt: skip
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    expect.set_options(timeout=SEEN_MS)
    hold = tmp_path / "hold"
    step = f'#!/bin/sh\nwhile [ -e "{hold}" ]; do sleep 0.1; done\necho configured\n'
    b = write_baseline(tmp_path / "b", [("configure", step.encode())])
    assert cli(env, "baseline", "set", "web", str(b)).returncode == 0
    fleet = {name: workers.worker("web", name) for name in ("web-0", "web-1", "web-2")}
    wait_for(lambda: sum(r["state"] == "ready" and r["live"] for r in cli_json(env, "instances"))
             == 3, timeout=90, what="the fleet ready")  # fmt: skip

    with controller(env, tmp_path) as c:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(c.url)
        page.evaluate("window.rolecallNeverReloaded = true")
        cell = page.locator('.cell[data-instance="web-1"]')
        expect(cell).to_have_attribute("data-status", "ready")

        # the fleet: web-1 is reimaged and configures itself again, on the same page
        hold.touch()
        fleet["web-1"].reimage(restart=True)
        expect(cell).to_have_attribute("data-status", "configuring")
        expect(page.locator(".compliance .figure")).to_have_text("2 / 3")
        hold.unlink()
        expect(cell).to_have_attribute("data-status", "ready")
        expect(page.locator(".compliance .figure")).to_have_text("3 / 3")
        assert page.evaluate("window.rolecallNeverReloaded") is True

        # a run: its progress bar advances as targets complete
        job = gated(tmp_path / "rotate-certs.sh", f"{tmp_path}/go-$ROLECALL_INSTANCE")
        started = cli(env, "run", "web", "--script", str(job), "--each", "--max-attempts", "1")
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()
        page.goto(c.url + f"runs/{run_id}")
        page.evaluate("window.rolecallNeverReloaded = true")
        progress = page.locator("#run-progress")
        expect(progress).to_have_attribute("aria-valuemax", "3")
        expect(progress).to_have_attribute("aria-valuenow", "0")
        (tmp_path / "go-web-0").touch()
        expect(progress).to_have_attribute("aria-valuenow", "1")
        expect(page.locator("#run-done")).to_have_text("1 of 3 targets done")
        for name in ("web-1", "web-2"):
            (tmp_path / f"go-{name}").touch()
        expect(progress).to_have_attribute("aria-valuenow", "3")
        expect(page.locator("#run-state")).to_have_text("failed")
        failure = page.locator('table.failures tr[data-target="web-2"]')
        expect(failure.locator("td.num").first).to_have_text("3")
        expect(failure.locator("pre.tail")).to_contain_text("no space left on device")
        assert page.evaluate("window.rolecallNeverReloaded") is True

        # poison: a message no agent can read appears with the reason it was set aside
        page.goto(c.url + "poison")
        page.evaluate("window.rolecallNeverReloaded = true")
        # (web-2's failed job, out of attempts, is there already)
        queue = storage.names.poison_queue(storage.names.instance_queue("web-1"))
        article = page.locator(f'article.poison[data-queue="{queue}"]')
        expect(page.locator("article.poison")).to_have_count(1)
        expect(article).to_have_count(0)
        ops.send_raw(storage.names.instance_queue("web-1"), "this is not a job")
        row = article.locator("tr[data-reason]")
        expect(row).to_have_count(1)
        reason = row.get_attribute("data-reason")
        assert reason and reason != "undecodable"
        expect(row.locator(".reason")).to_have_text(reason)
        assert page.evaluate("window.rolecallNeverReloaded") is True

        _screenshots(page, c.url, run_id)


def _screenshots(page: object, url: str, run_id: str) -> None:
    """The three pages as they are at the end, for people (docs/operators.md shows them)."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in (("fleet", ""), ("run", f"runs/{run_id}"), ("poison", "poison")):
        page.goto(url + path)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    print(f"screenshots in {SCREENSHOTS}")
