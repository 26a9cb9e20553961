"""``python -m bench [--tiny] [--only NAME ...]``: run the benchmarks, write the report.

The idle-cost and footprint benchmarks need minutes of a worker doing nothing, so they start
first and finish during the last benchmark, in the background of the others (each benchmark
has its own Azurite, so they do not share a storage emulator, only the machine, which an idle
worker barely uses).

Full size writes ``bench/RESULTS.md`` (and ``bench/out/results.json``); ``--tiny`` writes to
``bench/out/`` so a test run never overwrites the committed results. A benchmark that fails is
reported in the file and makes the exit status non-zero; so does a figure left unmeasured.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from bench import boot, fanout, peer_sigkill, report, throughput, transactions
from bench.core import Section, Size, environment, load_average, now_iso
from bench.footprint import FootprintBench
from bench.idle import IdleBench

HERE = Path(__file__).resolve().parent


class Background(Protocol):
    def start(self) -> Background: ...
    def finish(self) -> Section: ...


FOREGROUND: dict[str, Callable[[Size], Section]] = {
    "throughput": throughput.run,
    "transactions": transactions.run,
    "boot": boot.run,
    "fanout": fanout.run,
    "sigkill": peer_sigkill.run,
}
BACKGROUND: dict[str, Callable[[Size], Background]] = {
    "idle": IdleBench,
    "footprint": FootprintBench,
}
ORDER = ["throughput", "transactions", "idle", "boot", "fanout", "footprint", "sigkill"]


def _stamp(sec: Section, started: float, load: str) -> Section:
    sec.seconds = time.monotonic() - started
    sec.context = {
        "measured": f"{now_iso()}, {sec.seconds:.0f} s; load average at start {load}",
        **sec.context,
    }
    return sec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--tiny", action="store_true", help="toy sizes: proves the code runs")
    p.add_argument("--only", nargs="+", choices=ORDER, help="run only these benchmarks")
    p.add_argument("--out", type=Path, help="Markdown report path")
    p.add_argument("--json", type=Path, help="JSON results path")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="only re-render the report from saved results (no measuring)")  # fmt: skip
    a = p.parse_args(argv)
    if a.render is not None:
        saved = report.load(a.render)
        tiny = saved[2]["size"] == "tiny"
        report.write(a.out or HERE / ("out/RESULTS-tiny.md" if tiny else "RESULTS.md"), None,
                     *saved)  # fmt: skip
        return 1 if saved[3] else 0
    size = Size(a.tiny)
    out = a.out or (HERE / "out" / "RESULTS-tiny.md" if a.tiny else HERE / "RESULTS.md")
    json_path = a.json or HERE / "out" / ("results-tiny.json" if a.tiny else "results.json")
    chosen = a.only or ORDER
    t0 = time.monotonic()
    env = environment()
    results: dict[str, Section] = {}
    errors: list[str] = []

    running: dict[str, tuple[Background, float, str]] = {}
    for name in (n for n in ORDER if n in chosen and n in BACKGROUND):
        load = load_average()
        try:
            running[name] = (BACKGROUND[name](size).start(), time.monotonic(), load)
        except Exception:
            errors.append(f"{name}: {traceback.format_exc(limit=3)}")

    def finish(name: str) -> None:
        bench, started, load = running[name]
        print(f"bench: {name} (finishing) ...", file=sys.stderr, flush=True)
        try:
            results[name] = _stamp(bench.finish(), started, load)
        except Exception:
            errors.append(f"{name}: {traceback.format_exc(limit=5)}")

    foreground = [n for n in ORDER if n in chosen and n in FOREGROUND]
    with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
        finishing = []
        for i, name in enumerate(foreground):
            if i == len(foreground) - 1:
                # the background's finish is mostly waiting (for a poll a minute away), and
                # so is the last benchmark (SIGKILL: sleeping jobs): overlap them
                finishing = [pool.submit(finish, n) for n in running]
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            started, load = time.monotonic(), load_average()
            try:
                results[name] = _stamp(FOREGROUND[name](size), started, load)
            except Exception:
                errors.append(f"{name}: {traceback.format_exc(limit=5)}")
        if not finishing:
            finishing = [pool.submit(finish, n) for n in running]
        for f in finishing:
            f.result()

    sections = [results[n] for n in ORDER if n in results]
    for s in sections:
        errors += [f"{f.key}: not measured" for f in s.figures if f.value is None]
    meta = {
        "command": "python -m bench" + (" --tiny" if a.tiny else ""),
        "size": "tiny" if a.tiny else "full",
        "finished": now_iso(),
        "minutes": f"{(time.monotonic() - t0) / 60:.1f}",
        "benchmarks": " ".join(chosen),
    }
    report.write(out, json_path, sections, env, meta, errors)
    print(f"bench: wrote {out} ({meta['minutes']} min)", file=sys.stderr)
    for e in errors:
        print(f"bench: error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
