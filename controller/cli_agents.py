"""Operators' commands for agent releases: publish one, and see who runs which.

rolecall agent publish dist/ --version 0.3.0
rolecall baseline set web web/baseline.yaml      # with `agent: 0.3.0` in the file
rolecall agent show                              # releases, pins, and the fleet by version
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rolecall.controller.context import ctx_of, emit_json, expected_errors
from rolecall.controller.render import Format, Output

if TYPE_CHECKING:
    from rolecall.controller.agents import Published
    from rolecall.controller.fleet import InstanceSummary

Opt = typer.Option

agent_app = typer.Typer(
    help="Agent releases: publish one, pin it in a baseline, watch the fleet upgrade.",
    no_args_is_help=True,
)


@agent_app.command("publish")
@expected_errors
def agent_publish(
    ctx: typer.Context,
    wheeldir: Annotated[
        Path,
        typer.Argument(
            metavar="WHEELDIR", help="Every wheel the agent needs on the instances' platforms."
        ),
    ],
    version: Annotated[
        str, Opt("--version", metavar="VERSION", help="The rolecall version in WHEELDIR.")
    ],
) -> None:
    """Publish an agent release: upload its wheels (content-addressed) and write the release,
    signed with the signing key if one is set. A version is published once.

    \b
    Example (wheels for Linux x86-64 instances with Python 3.10+):
      pip wheel --no-deps -w dist . && pip download -d dist --only-binary=:all: \\
          --platform manylinux2014_x86_64 --python-version 3.10 dist/rolecall-0.3.0-*.whl
      rolecall agent publish dist --version 0.3.0
    """
    from rolecall.controller.agents import publish_release

    c = ctx_of(ctx)
    signer = c.signer()
    found, new = publish_release(
        c.storage, wheeldir, version, issuer=c.settings.issuer,
        sign=signer.sign if signer is not None else (lambda r: r), published=c.published(),
    )  # fmt: skip
    r = found.release
    verb = "published" if new else "already published (the same wheels)"
    typer.echo(
        f"agent {r.version} {verb}: {len(r.wheels)} wheels, contract {r.contract}, "
        f"release sha256:{found.sha256[:12]}; pin it with `agent: {r.version}` in a baseline"
    )


@agent_app.command("show")
@expected_errors
def agent_show(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Argument(metavar="[VERSION]", help="Only this release, with its wheels.")
    ] = None,
    output: Output = Format.TABLE,
) -> None:
    """Show agent releases, which baselines pin them, and how many live instances of each
    role run which agent version.

    \b
    Examples:
      rolecall agent show
      rolecall agent show 0.3.0 -o json
    """
    from rolecall.controller.agents import find_release, list_releases, pins
    from rolecall.controller.fleet import list_instances
    from rolecall.schemas.base import utcnow

    c = ctx_of(ctx)
    releases = [find_release(c.storage, version)] if version else list_releases(c.storage)
    pinned = pins(c.storage)
    now = utcnow()
    live = [s for s in list_instances(c.storage) if s.live(now)]
    if version is not None:
        live = [s for s in live if s.agent_version == version]
    data = _show_data(releases, pinned, live, wheels=version is not None)
    if output is Format.JSON:
        emit_json(data)
    else:
        _print_show(ctx, data, tsv=output is Format.TSV)


def _show_data(
    releases: list[Published], pinned: dict[str, Any], live: list[InstanceSummary], *, wheels: bool
) -> dict[str, Any]:
    fleet = Counter((s.role_key, s.agent_version or "(before 0.2)") for s in live)
    return {
        "releases": [
            {
                "version": p.release.version, "contract": p.release.contract,
                "wheels": len(p.release.wheels),
                "bytes": sum(w.size for w in p.release.wheels),
                "published_at": p.release.published_at.isoformat(),
                "issuer": p.release.issuer,
                "signed_by": p.release.signature.key_id if p.release.signature else None,
                "sha256": p.sha256,
                **({"files": [w.filename for w in p.release.wheels]} if wheels else {}),
            }
            for p in releases
        ],
        "pins": [
            {"role": role, "baseline_version": v, "agent": pin.version}
            for role, (v, pin) in sorted(pinned.items())
        ],
        "fleet": [
            {"role": role, "agent": agent, "live_instances": n}
            for (role, agent), n in sorted(fleet.items())
        ],
    }  # fmt: skip


def _print_show(ctx: typer.Context, data: dict[str, Any], *, tsv: bool) -> None:
    from rich.table import Table

    from rolecall.controller.render import print_tsv

    console = ctx_of(ctx).console
    tables = {
        "releases": ("version", "contract", "wheels", "bytes", "published_at", "issuer",
                     "signed_by"),
        "pins": ("role", "baseline_version", "agent"),
        "fleet": ("role", "agent", "live_instances"),
    }  # fmt: skip
    if tsv:  # one row a line, its table's name first
        print_tsv([[name, *(row[c] for c in columns)] for name, columns in tables.items()
                   for row in data[name]])  # fmt: skip
        return
    for name, columns in tables.items():
        if not data[name]:
            console.print(f"no {name}", highlight=False)
            continue
        table = Table(title=name, title_justify="left")
        for col in columns:
            table.add_column(col.replace("_", " "))
        for row in data[name]:
            table.add_row(*("" if row[col] is None else str(row[col]) for col in columns))
        console.print(table)
    for row in data["releases"]:
        for f in row.get("files", []):
            console.print(f"  {f}")
