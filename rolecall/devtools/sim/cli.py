"""``rolecall sim``: run the fleet simulator and print its report."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def sim(
    preset: Annotated[
        str, Opt(help="small (seconds) or large (the chaos configuration).")
    ] = "small",
    instances: Annotated[int | None, Opt(help="Instances over all roles.")] = None,
    roles: Annotated[int | None, Opt(help="Roles.")] = None,
    jobs: Annotated[int | None, Opt(help="One-of-N jobs to enqueue.")] = None,
    reimage_every: Annotated[float | None, Opt(help="Reimage a random instance every S s.")] = None,
    kill_every: Annotated[float | None, Opt(help="Crash (SIGKILL, disk kept) every S s.")] = None,
    azurite_restarts: Annotated[int | None, Opt(help="Graceful Azurite restarts mid-run.")] = None,
    fault_rate: Annotated[float | None, Opt(help="Fraction of worker requests faulted.")] = None,
    seed: Annotated[int | None, Opt(help="Random seed for the schedule.")] = None,
    workdir: Annotated[Path | None, Opt(help="Keep disks, logs and the ledger here.")] = None,
    report_json: Annotated[Path | None, Opt(help="Also write the report as JSON.")] = None,
    older_agent: Annotated[
        Path | None,
        Opt(
            help="Another version's `rolecall` (e.g. OTHER_VENV/bin/rolecall): every other "
            "instance runs it, a mixed fleet."
        ),
    ] = None,
) -> None:
    """Simulate a fleet under reimages, crashes, an Azurite restart and storage faults,
    then check that nothing was lost against a ledger the job scripts wrote.

    Exit 0 only if every invariant holds.

    \b
    Examples:
      rolecall sim
      rolecall sim --instances 20 --seed 7 --workdir sim-out
    """
    from rich.console import Console
    from rich.table import Table

    from rolecall.devtools.localfleet import stop_on_sigterm
    from rolecall.devtools.sim.config import LARGE, SMALL
    from rolecall.devtools.sim.runner import Simulation

    stop_on_sigterm()

    base = {"small": SMALL, "large": LARGE}[preset]
    overrides = {
        "instances": instances, "roles": roles, "jobs": jobs, "reimage_every_s": reimage_every,
        "kill_every_s": kill_every, "azurite_restarts": azurite_restarts,
        "fault_rate": fault_rate, "seed": seed,
        "older_agent": str(older_agent.resolve()) if older_agent else None,
    }  # fmt: skip
    cfg = base.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    console = Console()
    root = workdir or Path(tempfile.mkdtemp(prefix="rolecall-sim-"))
    state = Simulation(cfg, root, console).run()
    report = state.report
    table = Table(title="invariants", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAILED[/]", c.detail)
    console.print(table)
    for k, v in report.figures.items():
        console.print(f"  {k}: {v}")
    console.print(f"work directory (disks, logs, ledger): {root}")
    if report_json:
        report_json.write_text(
            json.dumps({"config": cfg.model_dump(), **report.as_dict()}, indent=2)
        )
    raise typer.Exit(0 if report.ok else 1)
