"""Deploy artifacts (deploy/) held to the code, and `rolecall worker --check`.

* The Azure template and its example parameters are parsed with regular expressions (no Bicep
  compiler on the test machine) and held to schemas/names.py and deploy/azure/roles.json.
* install.sh really installs into a temporary prefix; the installed agent, started with the
  installed settings file and identity from a stand-in for Azure instance metadata, registers
  against Azurite and applies its role's baseline: an image booting for the first time.
* The installed `rolecall worker --check` sees an image that carries an incarnation (the
  check itself: tests/test_check.py).

Every address contacted is on 127.0.0.1; the metadata endpoint is always pointed at a local
stand-in, so nothing here can reach the real metadata address.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rolecall
from rolecall import launch
from rolecall.cli import run as rolecall_cli
from rolecall.controller.fleet import list_instances
from rolecall.schemas.names import POISON_SUFFIX, Names
from rolecall.storage.clients import Storage
from rolecall.worker.config import WorkerSettings
from rolecall.worker.service import SERVICE_NAME
from tests.conftest import OperatorKey
from tests.fleet import Ledger, cli, write_baseline
from tests.imds import FakeMetadata

REPO = Path(__file__).resolve().parent.parent
AZURE = REPO / "deploy" / "azure"
LINUX = REPO / "deploy" / "linux"
WINDOWS = REPO / "deploy" / "windows"
BICEP = (AZURE / "main.bicep").read_text()
PARAMS = json.loads((AZURE / "main.parameters.json").read_text())["parameters"]


def bicep_default(param: str) -> str:
    m = re.search(rf"^param {param} string = '([^']*)'$", BICEP, re.M)
    assert m, f"main.bicep has no string default for {param}"
    return m.group(1)


def bicep_var(name: str) -> str:
    m = re.search(rf"^var {name} = '(.*)'$", BICEP, re.M)
    assert m, f"main.bicep has no string var {name}"
    return m.group(1)


def run(argv: list[Any], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], check=False, capture_output=True, text=True, timeout=300, **kw
    )


def interpolate(text: str, values: dict[str, str]) -> str:
    """Bicep's '${x}' interpolation and \\' escapes, for the variables these tests know."""
    for _ in range(5):
        text = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
    return text.replace("\\'", "'")


# --- Azure template ----------------------------------------------------------------------


def test_parameters_name_every_queue_as_schemas_names_does() -> None:
    names = Names(PARAMS["namespace"]["value"])
    for r in PARAMS["roles"]["value"]:
        assert r["queue"] == names.role_queue(r["role"])
        assert r["poisonQueue"] == names.poison_queue(names.role_queue(r["role"]))
        assert r["resultsContainer"] == names.results_container(r["role"])
    for i in PARAMS["instances"]["value"]:
        assert i["queue"] == names.instance_queue(i["instance"])
        assert i["poisonQueue"] == names.poison_queue(names.instance_queue(i["instance"]))
    # the example shows a role name that needs hashing, as real ones (WebRole_IN_0) do
    assert any(
        r["queue"] != f"{names.namespace}-role-{r['role']}" for r in PARAMS["roles"]["value"]
    )


@pytest.mark.parametrize("namespace", ["rc", "prod-eu"])
def test_bicep_defaults_derive_names_as_schemas_names_does(namespace: str) -> None:
    names = Names(namespace)
    derived = {
        p: interpolate(bicep_default(p), {"namespace": namespace})
        for p in "payloadsContainer stateContainer logsContainer eventsQueue eventsPoisonQueue "
        "instanceQueuePrefix".split()
    }
    assert derived["payloadsContainer"] == names.payloads_container
    assert derived["stateContainer"] == names.state_container
    assert derived["logsContainer"] == names.logs_container
    assert derived["eventsQueue"] == names.events_queue
    assert derived["eventsPoisonQueue"] == names.poison_queue(names.events_queue)
    assert names.instance_queue("vm-1") == derived["instanceQueuePrefix"] + "vm-1"
    assert bicep_default("namespace") == "rc" == Names().namespace


def test_deploy_md_builds_each_role_parameter_from_rolecall_names(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/deploy.md's parameter loop maps `rolecall names ROLE -o json` onto a role object
    with jq; every name it takes (the instances prefix included: no derivation in jq) is
    printed by `rolecall names` and equals the example parameters'."""
    doc = (REPO / "docs" / "deploy.md").read_text()
    loop = doc.split('names "$role" -o json |')[1].split("done")[0]
    mapping = dict(re.findall(r"(\w+): \.(\w+)\b", loop))
    assert {"queue", "baselineBlob", "instancesPrefix"} <= mapping.keys(), loop
    monkeypatch.delenv("ROLECALL_CONFIG", raising=False)
    for r in PARAMS["roles"]["value"]:
        ns = ["--namespace", PARAMS["namespace"]["value"]]
        assert rolecall_cli([*ns, "names", r["role"], "-o", "json"]) == 0
        names = json.loads(capsys.readouterr().out)
        assert {param: names[key] for param, key in mapping.items()} == {
            param: r[param] for param in mapping
        }


def test_parameters_name_each_roles_blobs_as_schemas_names_does() -> None:
    for r in PARAMS["roles"]["value"]:
        assert r["baselineBlob"] == Names.baseline_blob(r["role"])
        assert r["instancesPrefix"] == Names.instances_prefix(r["role"])
        assert Names.instance_blob(r["role"], "i").startswith(r["instancesPrefix"])
        assert re.fullmatch(r"[0-9a-f-]{36}", r["principalId"]), "one identity per role"
    assert len({r["principalId"] for r in PARAMS["roles"]["value"]}) == len(
        PARAMS["roles"]["value"]
    )
    prefixes = [r["instancePrefix"] for r in PARAMS["roles"]["value"] if "instancePrefix" in r]
    assert not [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]


def test_bicep_role_ids_are_the_cited_built_in_roles() -> None:
    cited = dict(
        (name.strip(), guid)
        for guid, name in re.findall(
            r"'([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})' // (.+)$", BICEP, re.M
        )
    )
    expected = json.loads((AZURE / "roles.json").read_text())["builtin"]
    assert cited == expected
    for key in re.findall(r"builtInRoles\.(\w+)", BICEP):
        assert re.search(rf"^  {key}: '", BICEP, re.M), f"builtInRoles.{key} is not defined"


def test_bicep_conditions_are_well_formed_and_name_the_right_prefixes() -> None:
    values = {
        name: interpolate(v, {}) for name, v in re.findall(r"^var (\w+) = '(.*)'$", BICEP, re.M)
    }
    values["instanceQueuePrefix"] = "rc-inst-"
    role = {"r.baselineBlob": "baselines/web.json", "r.instancesPrefix": "instances/web/",
            "r.?instancePrefix": "vmss-web"}  # fmt: skip
    conditions = []
    for raw in re.findall(r"^    condition: '(.*)'$", BICEP, re.M):
        for k, v in role.items():
            raw = raw.replace("${" + k + "}", v)  # noqa: PLW2901
        conditions.append(interpolate(raw, values))
    assert len(conditions) == 5
    for c in conditions:
        assert "${" not in c and c.count("'") % 2 == 0, c
        depth = 0
        for ch in c:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            assert depth >= 0, c
        assert depth == 0, c
    joined = "\n".join(conditions)
    assert "StringEquals 'baselines/web.json'" in joined
    assert "StringStartsWith 'instances/web/'" in joined
    assert "StringStartsWith 'rc-inst-vmss-web'" in joined
    assert f"StringLike '*{POISON_SUFFIX}'" in joined


def _assignments() -> dict[str, dict[str, str]]:
    """Every role assignment of main.bicep: its name, role definition, scope, principal and
    condition, read from the template's text."""
    found = {}
    blocks = re.split(r"^resource ", BICEP, flags=re.M)[1:]
    for block in blocks:
        head, _, body = block.partition("\n")
        if "Microsoft.Authorization/roleAssignments@" not in head:
            continue
        fields = dict(re.findall(r"^ {2,4}(\w+): (.+)$", body, re.M))
        found[head.split()[0]] = {**fields, "loop": head}
    return found


#: How docs/security.md names each role definition and scope of the template.
_ROLE_LABELS = {
    "messageProcessor": "Message Processor", "leaseRenewerId": "lease renewer",
    "messageSender": "Message Sender", "blobWriterId": "blob writer",
    "blobDataReader": "Blob Data Reader", "provisionerId": "provisioner",
}  # fmt: skip


def _scope_label(a: dict[str, str]) -> str:
    scope, cond = a["scope"], a.get("condition", "")
    per_role = {
        "roleQueues[i]": "its role queue", "rolePoisonQueues[i]": "its role poison queue",
        "instanceQueues[i]": "its instance queues", "resultsContainers[i]": "its results container",
        "instancePoisonQueues[i]": "its instance poison queues", "payloads": "`<ns>-payloads`",
        "logs": "`<ns>-logs`", "events": "`<ns>-events`",
    }  # fmt: skip
    if scope in per_role:
        return per_role[scope]
    if scope == "state":
        # every path the condition lets through is the role's own: its baseline blob exactly,
        # its instance records by prefix (a worker reads its own record at start)
        paths = set(re.findall(r"\$\{blobPath\} (\w+) \\'\$\{r\.(\w+)\}\\'", cond))
        assert paths, f"a role's grant on the state container needs a condition: {a}"
        mine = {"its baseline blob": ("StringEquals", "baselineBlob"),
                "its `instances/<role>/`": ("StringStartsWith", "instancesPrefix")}  # fmt: skip
        assert cond.count("${blobPath}") == len(paths) and paths <= set(mine.values()), a
        return " and ".join(label for label, path in mine.items() if path in paths)
    assert scope == "account", a
    if "r.?instancePrefix" in cond:
        poison = "StringLike" in cond
        return "its instance poison queues" if poison else "its instance queues"
    assert a["roleDefinitionId"] == "provisionerId" and not cond, a
    return "the account"


def test_bicep_grants_each_role_identity_its_own_queues_and_blobs_as_security_md_says() -> None:
    """Issue 15, finding 10: one worker identity had every role queue, every baseline and
    every instance queue. Each worker grant now names its role's own principal, on its
    role's own resources or under a condition naming its role's path or prefix; and the
    threat-model table in docs/security.md lists exactly these grants."""
    worker = {k: a for k, a in _assignments().items() if k.startswith("worker")}
    assert worker and "workerPrincipalId" not in BICEP
    grants = set()
    for name, a in worker.items():
        assert a["principalId"] in ("r.principalId", "inst.principalId"), name
        loop = "for r in roles" in a["loop"] or "for (r, i) in roles" in a["loop"]
        assert loop or "in instances" in a["loop"], name
        grants.add((_ROLE_LABELS[a["roleDefinitionId"]], _scope_label(a)))
    security = (REPO / "docs" / "security.md").read_text()
    table = security.split("### Entra ID roles (managed identities)")[1].split("\n\n")[2]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| worker of a role")
    ]
    documented = {(role, scope) for _, role, scope in rows}
    covered = {
        (label, scope)
        for label, scope in grants
        for role, doc_scope in documented
        if label in role and doc_scope.startswith(scope)
    }
    assert covered == grants, grants - covered
    for role, doc_scope in documented:
        assert any(g in role and doc_scope.startswith(s) for g, s in grants), (role, doc_scope)


def test_bicep_account_refuses_anonymous_plaintext_and_old_tls() -> None:
    assert re.search(r"^param allowSharedKeyAccess bool = false$", BICEP, re.M)
    for setting in (
        "supportsHttpsTrafficOnly: true",
        "minimumTlsVersion: 'TLS1_2'",
        "allowBlobPublicAccess: false",
        "allowSharedKeyAccess: allowSharedKeyAccess",
    ):
        assert f"    {setting}\n" in BICEP, setting


def syntax_errors(source: bytes, grammar: str = "bicep") -> list[str]:
    """Where tree-sitter's grammar (``bicep`` or ``powershell``) could not parse ``source``:
    neither the Bicep compiler nor PowerShell is on this machine; the grammars, from PyPI,
    are."""
    import tree_sitter
    import tree_sitter_bicep
    import tree_sitter_powershell

    module = {"bicep": tree_sitter_bicep, "powershell": tree_sitter_powershell}[grammar]
    tree = tree_sitter.Parser(tree_sitter.Language(module.language())).parse(source)
    found: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line = node.start_point[0] + 1
            found.append(f"line {line}: {source[node.start_byte : node.start_byte + 60]!r}")
        stack.extend(node.children)
    return found


def test_main_bicep_parses_with_the_bicep_grammar() -> None:
    assert syntax_errors(BICEP.encode()) == []
    # and the check is real: a resource left open is found
    assert syntax_errors(b"resource x 'Microsoft.Storage/x@2023-01-01' = {\n  name: 'x'\n")


def test_bicep_compiles_when_the_compiler_is_here(tmp_path: Path) -> None:
    bicep = shutil.which("bicep")
    if bicep is None:
        pytest.skip("no bicep CLI on this machine (install it to compile main.bicep)")
    r = run([bicep, "build", AZURE / "main.bicep", "--outdir", tmp_path])
    assert r.returncode == 0, r.stderr


# --- Windows scripts ---------------------------------------------------------------------


def powershell_syntax_errors(source: bytes) -> list[str]:
    return syntax_errors(source, "powershell")


POWERSHELL_FILES = sorted(
    [*WINDOWS.glob("*.ps1"), REPO / "worker" / "run-script.ps1"], key=lambda p: p.name
)


@pytest.mark.parametrize("script", POWERSHELL_FILES, ids=lambda p: p.name)
def test_powershell_scripts_parse(script: Path) -> None:
    assert powershell_syntax_errors(script.read_bytes()) == []


@pytest.mark.parametrize(
    "broken",
    [
        b"if ($a -eq 1) {\n  Write-Host 'unclosed'\n",
        b"$x = @(1, 2\n",
        b"function Get-Thing {\n  param([string]$Name\n}\n",
        b"Write-Host 'unterminated\n",
    ],
)
def test_the_powershell_check_fails_on_a_syntax_error(broken: bytes) -> None:
    assert powershell_syntax_errors(broken), "a broken script must not pass"


def test_the_powershell_check_fails_on_a_real_script_with_one_brace_missing() -> None:
    source = (WINDOWS / "verify.ps1").read_bytes()
    cut = source.rindex(b"}")
    assert powershell_syntax_errors(source[:cut] + source[cut + 1 :])


def test_setup_complete_enables_and_starts_the_service_or_the_fallback_task() -> None:
    cmd = (WINDOWS / "SetupComplete.cmd").read_bytes()
    assert b"\r\n" in cmd and b"\n" not in cmd.replace(b"\r\n", b"")  # cmd.exe wants CRLF
    install = (WINDOWS / "install.ps1").read_text()
    service = re.search(r"\$ServiceName = '(.*)'", install)
    task = re.search(r"\$TaskPath = '(.*)'\s+", install)
    name = re.search(r"\$TaskName = '(.*)'", install)
    assert service and task and name
    assert service.group(1) == SERVICE_NAME
    svc = service.group(1).encode()
    assert b'"%SC%" config ' + svc + b" start= auto" in cmd and b'"%SC%" start ' + svc in cmd
    full = f"{task.group(1)}{name.group(1)}".encode()
    assert b'/Change /TN "' + full + b'" /ENABLE' in cmd and b'/Run /TN "' + full + b'"' in cmd
    assert b"%SystemRoot%\\System32\\" in cmd, "system programs by full path"


# --- Linux unit and installer ------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_is_hardened_only_where_a_configuration_agent_allows() -> None:
    u = unit_settings((LINUX / "rolecall-worker.service").read_text())
    assert u["After"] == u["Wants"] == ["network-online.target"]
    assert u["Restart"] in (["always"], ["on-failure"]) and int(u["RestartSec"][0]) > 0
    assert u["StateDirectory"] == ["rolecall"] and u["EnvironmentFile"] == [
        "/etc/rolecall/worker.env"
    ]
    assert u["KillMode"] == ["mixed"] and u["PrivateTmp"] == ["yes"]
    assert int(u["TimeoutStopSec"][0]) > 2 * WorkerSettings.model_fields["grace_s"].default
    assert "NoNewPrivileges" not in u and u.get("ProtectSystem", ["no"]) == ["no"]
    assert Path(u["ExecStart"][0].split()[0]) == Path("/opt/rolecall/bin/rolecall")


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    m = FakeMetadata(vm_name="vmss-web_3", role_tag="web")
    yield m
    m.close()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, operator_key: OperatorKey) -> Path:
    """install.sh into a temporary prefix, as in an image bake but with --no-enable.

    pip gets --no-deps, and the dependencies come from this test environment (rolecall itself
    left out) on PYTHONPATH while installing and through a .pth file in the installed version
    afterwards: what is tested is install.sh and the rolecall it installs, not PyPI, and it
    takes seconds, not a minute. (A venv made with --system-site-packages would not do: it
    sees the base interpreter's packages, not this virtual environment's.)"""
    root = tmp_path_factory.mktemp("image")
    deps = root / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("rolecall", "_editable_impl_rolecall", "pip", "__pycache__")):
            (deps / entry.name).symlink_to(entry)
    started = time.monotonic()
    r = install(root, "--pip-option=--no-deps", "--trusted-key", str(operator_key.public))
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"\ninstall.sh took {time.monotonic() - started:.1f}s")
    return root


def current_venv(root: Path) -> Path:
    """The installed version's virtual environment, as agent.json names it."""
    state = json.loads((root / "prefix" / "agent.json").read_text())
    return root / "prefix" / "versions" / state["current"]


def add_test_dependencies(root: Path) -> None:
    venv = current_venv(root)
    site = run([venv / "bin/python", "-c", "import site; print(site.getsitepackages()[0])"])
    (Path(site.stdout.strip()) / "zz_test_dependencies.pth").write_text(f"{root / 'deps'}\n")


def install(root: Path, *extra: str, source: Path | str = REPO) -> subprocess.CompletedProcess[str]:
    paths = {"--prefix": root / "prefix", "--etc": root / "etc", "--systemd-dir": root / "systemd"}
    argv = [
        "bash",
        LINUX / "install.sh",
        "--from",
        source,
        "--python",
        sys.executable,
        "--no-enable",
    ]
    argv += [*(x for kv in paths.items() for x in kv), *extra]
    r = run(argv, env={**os.environ, "PYTHONPATH": str(root / "deps")}, cwd=root)
    if r.returncode == 0:
        add_test_dependencies(root)
    return r


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments, outer quotes)."""
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            out[key.strip()] = value
    return out


def test_install_lays_out_venv_settings_and_unit(installed: Path) -> None:
    prefix, etc = installed / "prefix", installed / "etc"
    # side by side: the version in versions/<V>, current in agent.json, the launcher beside
    state = json.loads((prefix / "agent.json").read_text())
    assert state["current"] == rolecall.__version__ and state["previous"] is None
    assert (prefix / "launch.py").read_text() == Path(launch.__file__).read_text()
    assert [p.name for p in (prefix / "versions").iterdir()] == [rolecall.__version__]
    # cwd: not the checkout, since `python -c` imports from the cwd first
    r = run(
        [current_venv(installed) / "bin/python", "-c",
         "import rolecall.worker as w; print(w.__file__)"],
        cwd=installed,
    )  # fmt: skip
    assert Path(r.stdout.strip()).is_relative_to(prefix), "rolecall must run from the prefix"
    env_file = etc / "worker.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert read_env_file(env_file)["ROLECALL_USE_IMDS"] == "true"
    u = unit_settings((installed / "systemd" / "rolecall-worker.service").read_text())
    assert u["ExecStart"] == [f"{prefix}/bin/rolecall worker"]
    assert u["EnvironmentFile"] == [str(env_file)]
    assert u["StateDirectory"] == ["rolecall"]  # state stays /var/lib/rolecall


def test_installed_unit_passes_systemd_analyze_verify(installed: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("no systemd-analyze on this machine: unit not verified")
    unit = installed / "systemd" / "rolecall-worker.service"
    r = run([tool, "verify", unit])
    assert r.returncode == 0 and "rolecall-worker.service" not in r.stderr, r.stderr


def test_reinstall_upgrades_in_place_and_keeps_the_settings(installed: Path) -> None:
    env_file = installed / "etc" / "worker.env"
    env_file.write_text(env_file.read_text() + "ROLECALL_ACCOUNT_NAME=kept\n")
    # the same version again: its venv is rebuilt beside the others and replaces it
    r = install(installed, "--pip-option=--no-deps")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.name for p in (installed / "prefix" / "versions").iterdir()] == [rolecall.__version__]
    assert "ROLECALL_ACCOUNT_NAME=kept" in env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_every_deploy_template_installs_a_trusted_key(installed: Path) -> None:
    """install.sh and install.ps1 require the controller's public key (or an explicit
    development switch) and write a settings file that trusts it; cloud-init sets it."""
    settings = read_env_file(installed / "etc" / "worker.env")
    assert json.loads(settings["ROLECALL_TRUSTED_KEYS"]) == [str(installed / "etc/controller.pub")]
    assert "BEGIN PUBLIC KEY" in (installed / "etc/controller.pub").read_text()
    ps1 = (WINDOWS / "install.ps1").read_text()
    assert "[string]$TrustedKey" in ps1 and "[switch]$AcceptUnsigned" in ps1
    assert "give -TrustedKey FILE.pub" in ps1 and "        $trustLine" in ps1
    assert "#ROLECALL_TRUSTED_KEYS" not in ps1
    cloud = (LINUX / "cloud-init.yaml").read_text()
    assert re.search(
        r"^\s+ROLECALL_TRUSTED_KEYS='\[\"/etc/rolecall/controller.pub\"\]'$", cloud, re.M
    )


def test_install_refuses_a_new_image_without_a_trusted_key(tmp_path: Path) -> None:
    r = install(tmp_path, "--pip-option=--no-deps")
    assert r.returncode == 2
    assert "give --trusted-key FILE.pub" in r.stderr and "--accept-unsigned" in r.stderr
    assert not (tmp_path / "prefix").exists()
    r = install(tmp_path, "--trusted-key", str(LINUX / "rolecall-worker.service"))
    assert r.returncode == 2 and "is not a PEM public key" in r.stderr


def test_install_refuses_an_unknown_option(tmp_path: Path) -> None:
    r = install(tmp_path, "--prefx", "x")
    assert r.returncode == 2 and "unknown option --prefx" in r.stderr
    assert not (tmp_path / "prefix").exists()


def test_first_boot_of_the_installed_agent_registers_and_applies_the_baseline(
    installed: Path,
    env: dict[str, str],
    storage: Storage,
    metadata: FakeMetadata,
    ledger: Ledger,
    tmp_path: Path,
) -> None:
    """The image's agent, with the image's settings file and its identity from instance
    metadata (VM name, rolecall-role tag), boots once: registers and configures itself."""
    baseline = write_baseline(tmp_path / "baseline", [("configure", ledger.script("configured"))])
    r = cli(env, "baseline", "set", "web", str(baseline))
    assert r.returncode == 0, r.stderr
    boot_env = {  # the image's trusted key, not the test's setting
        **read_env_file(installed / "etc" / "worker.env"),
        **{k: v for k, v in env.items() if k != "ROLECALL_TRUSTED_KEYS"},
        "ROLECALL_IMDS_ENDPOINT": metadata.url,
        "ROLECALL_STATE_DIR": str(tmp_path / "state"),
    }
    r = run([installed / "prefix/bin/rolecall", "worker", "--once"], env=boot_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (record,) = list_instances(storage, "web")
    assert (record.instance, record.baseline_version) == ("vmss-web_3", 1)
    assert [e[:2] for e in ledger.entries("configured")] == [["configured", "vmss-web_3"]]


# --- the installed agent's --check (the rest: tests/test_check.py) ------------------------


def test_installed_check_warns_about_an_image_that_carries_an_incarnation(
    installed: Path, env: dict[str, str], storage: Storage, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "incarnation").write_text("20260101000000-abcd")
    argv = ["worker", "--check", "--role", "web", "--instance", "web-0", "--state-dir", state]
    r = run([installed / "prefix/bin/rolecall", *argv], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"warn\s+state dir .*holds incarnation 20260101000000-abcd", r.stdout)
