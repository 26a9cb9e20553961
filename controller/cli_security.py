"""Operators' commands for trust: signing keys and least-privilege SAS bundles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from rolecall.controller.context import ctx_of, expected_errors

keys_app = typer.Typer(
    help="Signing keys for jobs and baselines; roles' sealing keys for secrets.",
    no_args_is_help=True,
)
sas_app = typer.Typer(help="Least-privilege SAS bundles.", no_args_is_help=True)


@keys_app.command("generate")
@expected_errors
def keys_generate(
    out: Annotated[
        Path, typer.Option(metavar="FILE", help="Private key file to create (mode 0600).")
    ],
) -> None:
    """Create an Ed25519 signing key and its public key (OUT.pub).

    Give OUT to the controller (ROLECALL_SIGNING_KEY) and OUT.pub to workers
    (--trusted-key); workers then refuse unsigned or altered jobs.

    \b
    Example:
      rolecall keys generate --out controller.key
    """
    from rolecall.controller.signing import generate

    public, kid = generate(out)
    typer.echo(f"private key: {out}\npublic key:  {public}\nkey id:      {kid}")


@keys_app.command("seal-generate")
@expected_errors
def keys_seal_generate(
    ctx: typer.Context,
    role: Annotated[
        str, typer.Argument(metavar="ROLE", help="The role whose instances will hold the key.")
    ],
    out: Annotated[
        Path, typer.Option(metavar="FILE", help="Private key file to create (mode 0600).")
    ],
) -> None:
    """Create a role's sealing key: `rolecall run` seals --secret-env values to it.

    Install OUT on the role's instances (ROLECALL_SEALING_KEY); the public half is kept in
    the namespace, where `rolecall run` finds it.

    \b
    Example:
      rolecall keys seal-generate web --out web-sealing.key
    """
    from rolecall.controller.sealing import generate_sealing_key

    doc = generate_sealing_key(ctx_of(ctx).storage, role, out)
    typer.echo(f"private key: {out} (install on {role}'s instances as ROLECALL_SEALING_KEY)\n"
               f"key id:      {doc.key_id}")  # fmt: skip


@sas_app.command("worker")
@expected_errors
def sas_worker(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(metavar="ROLE", help="The worker's role.")],
    instance: Annotated[str, typer.Option(metavar="NAME", help="The worker's instance name.")],
    out: Annotated[Path, typer.Option(metavar="FILE", help="Bundle file to write (mode 0600).")],
    hours: Annotated[float, typer.Option(metavar="HOURS", help="Validity in hours.")] = 24 * 30,
) -> None:
    """Issue the SAS bundle one worker needs, and no more (see docs/security.md).

    \b
    Example:
      rolecall sas worker --role web --instance WebRole_IN_0 --out web0.sas.json
      # then on the instance: ROLECALL_SAS_FILE=web0.sas.json rolecall worker ...
    """
    from rolecall.controller.sas import issue_worker_sas
    from rolecall.schemas.codec import encode_document

    bundle = issue_worker_sas(ctx_of(ctx).storage, role, instance, hours)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(encode_document(bundle))
    counts = f"{len(bundle.queues)} queue, {len(bundle.containers)} container, {len(bundle.blobs)}"
    typer.echo(
        f"wrote {out}: {counts} blob tokens, valid until {bundle.expires_at:%Y-%m-%d %H:%M}Z"
    )
