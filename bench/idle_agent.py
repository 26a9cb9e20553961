"""A real worker agent whose transaction meter can be read while it runs.

``rolecall worker --stats-file`` writes its counts only on exit, which cannot separate boot
from idling or show when each poll happened. This runs the same ``worker.agent.Agent`` with
the same settings (from ``ROLECALL_*`` variables, defaults otherwise) plus one daemon thread
that appends ``{"t": <unix time>, "c": <counts>}`` to ``--samples`` whenever the counts
change. The thread only reads the meter; the agent is unmodified.

    python -m bench.idle_agent --samples idle.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from rolecall.worker.agent import Agent
from rolecall.worker.config import WorkerSettings


def sample(agent: Agent, path: Path, every: float, stop: threading.Event) -> None:
    last: dict[str, int] = {}
    with path.open("a") as out:
        while not stop.wait(every):
            counts = agent.storage.meter.snapshot()
            if counts != last:
                out.write(json.dumps({"t": time.time(), "c": counts}) + "\n")
                out.flush()
                last = counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=Path, required=True)
    p.add_argument("--every", type=float, default=0.02)
    a = p.parse_args()
    agent = Agent(WorkerSettings())
    stop = threading.Event()
    t = threading.Thread(target=sample, args=(agent, a.samples, a.every, stop), daemon=True)
    t.start()
    try:
        return int(agent.run())
    finally:
        stop.set()
        t.join(1)


if __name__ == "__main__":
    sys.exit(main())
