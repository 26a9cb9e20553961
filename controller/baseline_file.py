"""The operator's baseline file (YAML or JSON), turned into a published Baseline.

    steps:
      - name: install nginx
        script: scripts/install-nginx.sh     # relative to this file
        timeout: 600
      - name: site content
        archive: site.tar.gz
        entrypoint: deploy.sh
        reboot: never
        env: {SITE: blue}
    agent: 0.3.0                             # optional: the agent version to run first

Each script or archive is uploaded content-addressed; the baseline records only digests. An
``agent`` pin must name a published release (``rolecall agent publish``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rolecall.controller.payloads import publish_bytes
from rolecall.schemas.baseline import RebootPolicy, Step
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.jobs import EnvVar, Execution, Interpreter, PayloadKind
from rolecall.schemas.redact import MIN_SECRET_CHARS, short_secret
from rolecall.storage.clients import Storage


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    script: str | None = None
    archive: str | None = None
    interpreter: Interpreter = Interpreter.AUTO
    entrypoint: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(default_factory=dict)
    timeout: float = 600.0
    reboot: RebootPolicy = RebootPolicy.IF_REQUIRED

    @model_validator(mode="after")
    def _one_payload(self) -> StepSpec:
        if (self.script is None) == (self.archive is None):
            raise ValueError("each step needs exactly one of 'script' or 'archive'")
        if self.archive is not None and not self.entrypoint:
            raise ValueError("an 'archive' step needs an 'entrypoint'")
        return self


class BaselineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[StepSpec]
    agent: str | None = None

    @field_validator("agent", mode="before")
    @classmethod
    def _quoted(cls, v: object) -> object:
        # YAML reads `agent: 1.10` as the number 1.1: refuse rather than guess
        if v is not None and not isinstance(v, str):
            raise ValueError(f'write the version as a string, e.g. agent: "{v}"')
        return v


def load_spec(path: Path) -> BaselineSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text") from e
    data = _parse(path, text)
    if data is None:
        raise ConfigError(f"{path} is empty: a baseline is a list of `steps:` (docs/operators.md)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping with a `steps:` list, not a {_kind(data)}")
    try:
        return BaselineSpec.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:5]
        )
        raise ConfigError(f"{path} is not a valid baseline: {problems}") from e


def _parse(path: Path, text: str) -> Any:
    """YAML or JSON by suffix; a syntax error is one line with where it is."""
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    try:
        return json.loads(text) if text.strip() else None
    except ValueError as e:
        raise ConfigError(f"{path} is not valid {path.suffix or 'JSON'}: {e}") from None


def _kind(data: object) -> str:
    return "string" if isinstance(data, str) else type(data).__name__


def build_steps(storage: Storage, spec: BaselineSpec, base_dir: Path) -> list[Step]:
    steps = []
    for s in spec.steps:
        rel = s.script or s.archive
        assert rel is not None
        path = (base_dir / rel).resolve()
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"step {s.name!r}: cannot read {path}: {e.strerror}") from e
        kind = PayloadKind.ARCHIVE if s.archive else PayloadKind.SCRIPT
        ref = publish_bytes(storage, data, path.name, kind)
        env = [EnvVar(name=k, value=v) for k, v in s.env.items()]
        if short := [k for k, v in s.secret_env.items() if len(v) < MIN_SECRET_CHARS]:
            raise ConfigError(f"step {s.name!r}: {short_secret(short[0])}")
        env += [EnvVar(name=k, value=v, secret=True) for k, v in s.secret_env.items()]
        execution = Execution(
            interpreter=s.interpreter, entrypoint=s.entrypoint, args=s.args, env=env
        )
        steps.append(
            Step(
                name=s.name, payload=ref, execution=execution, timeout_s=s.timeout, reboot=s.reboot
            )
        )
    return steps
