"""``python -m bench.scale``: what a fleet of 100 to 50,000 instances costs and asks of Azure,
computed from the code's own settings and the benchmarks' measured rates.

Nothing here is measured: it multiplies what one instance does (its defaults in
``worker/config.py``, the back-off in ``storage/backoff.py``) by the fleet size, and sets the
request rates against Azure's published scalability targets. docs/scale.md shows the table
this prints; ``tests/test_scale.py`` fails if the two ever differ, so the document follows
the code.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from rolecall.controller.fold import REPORTS_PAGE
from rolecall.schemas.codec import REPORT_INLINE_BYTES
from rolecall.worker.config import WorkerSettings

FLEETS = (100, 1_000, 10_000, 50_000)

# --- Azure's published targets (standard general-purpose v2 account) -----------------------
ACCOUNT_REQUESTS_S = 20_000  # requests a second, per account
QUEUE_MESSAGES_S = 2_000  # messages a second, per queue (1 KiB messages)
BLOB_REQUESTS_S = 500  # requests a second, per blob
BATCH_DELETE = 256  # blobs per Blob Batch request; Azure bills the batch and each delete in it

# --- list prices assumed (USD, LRS, hot tier, per 10,000 transactions) ----------------------
# This machine cannot reach the pricing page: these are the figures as last known, dated
# below. Check https://azure.microsoft.com/pricing/details/storage/ before budgeting.
PRICE_DATE = "2026-11-27 (assumed, not re-read)"
QUEUE_OP_PRICE = 0.004  # queue operations: receive, peek, delete, update, send
BLOB_WRITE_PRICE = 0.05  # blob writes and lists: the heartbeat, reports, result documents
HOURS_A_MONTH = 730

# --- client throughput measured by bench/ (RESULTS.md, throughput probe and fan-out) ---------
#: one Python process sending with the SDK: ~1.3 ms of CPU a send
SENDS_PER_PROCESS_S = 700
DISPATCH_PROCESSES = 8  # controller/sender.py uses up to this many on a controller VM


@dataclass(frozen=True)
class Row:
    instances: int
    idle_tx_h: float  # the whole fleet, an hour
    idle_month_usd: float
    idle_account_rps: float
    fanout_account_rps: float  # the account, same fan-out spread over one idle poll
    report_listing_calls: int  # List Blobs calls to read every instance's completion
    dispatch_s: float  # sending one job to every instance
    fold_requests: int  # HTTP requests to fold every completion (lists, result docs, batches)
    fold_tx: int  # transactions billed for them: each delete in a batch is one


def per_instance_idle() -> tuple[float, float]:
    """(queue polls, blob writes) an idle instance makes an hour, from the defaults."""
    s = WorkerSettings(role="r", instance="i")
    # idle back-off sits at poll_max with +-10 % jitter, capped at poll_max: 0.975 x on average
    mean_poll = 0.975 * s.poll_max_s
    polls = 2 * 3600 / mean_poll  # the instance queue and the role queue
    heartbeats = 3600 / s.heartbeat_s
    return polls, heartbeats


def row(n: int) -> Row:
    s = WorkerSettings(role="r", instance="i")
    polls, heartbeats = per_instance_idle()
    idle_h = n * (polls + heartbeats)
    usd = HOURS_A_MONTH * n * (polls * QUEUE_OP_PRICE + heartbeats * BLOB_WRITE_PRICE) / 10_000
    window = 0.975 * s.poll_max_s  # an --each reaches idle instances within one poll
    # per target: send, receive, delete (queues); report put, its delete (a subrequest of a
    # Blob Batch, billed as a transaction of its own), its share of a listing page, of the
    # batch request and of a result document (blobs)
    per_target = 3 + 2 + 1 / REPORTS_PAGE + 1 / BATCH_DELETE
    return Row(
        instances=n,
        idle_tx_h=idle_h,
        idle_month_usd=usd,
        idle_account_rps=idle_h / 3600,
        fanout_account_rps=idle_h / 3600 + n * per_target / window,
        report_listing_calls=-(-n // REPORTS_PAGE),
        dispatch_s=n / (SENDS_PER_PROCESS_S * min(DISPATCH_PROCESSES, max(1, n // 2000))),
        fold_requests=-(-n // REPORTS_PAGE) + -(-n // BATCH_DELETE) + 1,
        fold_tx=-(-n // REPORTS_PAGE) + -(-n // BATCH_DELETE) + 1 + n,
    )


def render() -> str:
    polls, heartbeats = per_instance_idle()
    lines = [
        f"Per idle instance: {polls:.1f} queue polls and {heartbeats:.1f} heartbeat writes an "
        f"hour ({polls + heartbeats:.1f} transactions). Prices as of {PRICE_DATE}: "
        f"${QUEUE_OP_PRICE} per 10,000 queue operations, ${BLOB_WRITE_PRICE} per 10,000 blob "
        "writes.",
        "",
        "| instances | idle tx/h (fleet) | idle $/month | idle requests/s | --each: requests/s "
        "(of 20,000) | lists to read every completion | dispatch to all, s | fold requests "
        "| fold transactions |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in FLEETS:
        r = row(n)
        lines.append(
            f"| {n:,} | {r.idle_tx_h:,.0f} | {r.idle_month_usd:,.2f} | {r.idle_account_rps:,.1f} "
            f"| {r.fanout_account_rps:,.0f} | {r.report_listing_calls:,} | {r.dispatch_s:,.1f} "
            f"| {r.fold_requests:,} | {r.fold_tx:,} |"
        )
    lines += [
        "",
        f"A report of one completion is stored in its blob's metadata up to "
        f"{REPORT_INLINE_BYTES:,} bytes, so reading a fan-out's completions costs the listing "
        "alone.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.parse_args(argv)
    sys.stdout.write(render() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
