<#
.SYNOPSIS
Install the rolecall worker on Windows: into a base image (-ForImage) or onto one machine.

.DESCRIPTION
Run as Administrator, idempotently (run again to upgrade):

 1. checks for a 64-bit Python 3.10+ installed for all users (a 32-bit one would run every
    job in the WOW64 views of the file system and registry);
 2. stops the running agent, if any, and lets it drain (an upgrade replaces files it holds);
 3. lays PREFIX (default C:\Program Files\rolecall) out for side-by-side agent versions, as
    on Linux (docs/deploy.md): pip-installs rolecall (pywin32 with it) from -From (a wheel,
    an sdist or a source checkout; default: the checkout this script lives in) into a
    virtual environment of its own, PREFIX\versions\<V>; copies the launcher
    (rolecall\launch.py) to PREFIX\launch.py; records <V> as current in PREFIX\agent.json
    (the version before stays installed, as previous). Agent upgrades add versions beside
    it; they never replace the launcher;
 4. creates DATADIR (default C:\ProgramData\rolecall) readable by SYSTEM and Administrators
    only (by SID, so localized Windows works), and writes DATADIR\worker.env from a template
    unless it exists; an existing one is kept only if SYSTEM or Administrators own it;
 5. registers the Windows service rolecall-worker (`rolecall service install --launcher`):
    LocalSystem, automatic start; it runs the launcher, which picks the agent version to run;
    restarted by the service manager 10 s after any unasked exit (an upgrade's exit 6
    included), asked to stop (and given the agent's grace to drain) at stop and at shutdown
    (preshutdown);
 6. without -ForImage, starts it. With -ForImage, leaves it disabled and hooks
    SetupComplete.cmd, so that each VM made from the Sysprep'd image enables and starts it
    once Windows setup has finished (never during setup's reboots).

-Mode Task registers the older scheduled task instead of the service (docs/deploy.md: a
fallback without graceful stop).

After installing, run verify.ps1 on the VM: it exercises stop and drain, restart after a
crash, a timeout killing a grandchild, a reboot code, and a PATH change (docs/deploy.md).

.EXAMPLE
.\deploy\windows\install.ps1 -AccountName rolecallprod01 -ClientId <worker identity client id> -TrustedKey controller.key.pub -ForImage
#>
[CmdletBinding()]
param(
    [string]$From = (Join-Path $PSScriptRoot '..\..'),
    [string]$Prefix = (Join-Path $env:ProgramFiles 'rolecall'),
    [string]$DataDir = (Join-Path $env:ProgramData 'rolecall'),
    [string]$Python = '',
    [string[]]$PipOption = @(),
    [string]$AccountName = '',
    [string]$ClientId = '',
    [string]$Namespace = 'rc',
    [ValidateSet('Service', 'Task')]
    [string]$Mode = 'Service',
    [switch]$ForImage,
    # the controller's public key (`rolecall keys generate --out FILE` makes FILE.pub), copied to
    # DATADIR\controller.pub and trusted; or -AcceptUnsigned (development only). One is required
    # for a new worker.env: an agent trusting no key refuses to start.
    [string]$TrustedKey = '',
    [switch]$AcceptUnsigned
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$ServiceName = 'rolecall-worker'
$TaskName = 'rolecall-worker'
$TaskPath = '\rolecall\'
$SystemSid = 'S-1-5-18'
$AdminsSid = 'S-1-5-32-544'
$System32 = Join-Path $env:SystemRoot 'System32'

function Invoke-Native([string]$What, [scriptblock]$Command) {
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

function Find-Python {
    if ($Python) { return $Python }
    $launcher = Join-Path $env:SystemRoot 'py.exe'
    if (Test-Path -LiteralPath $launcher) {
        $exe = & $launcher -3 -c 'import sys; print(sys.executable)'
        if ($LASTEXITCODE -eq 0 -and $exe) { return $exe.Trim() }
    }
    # Not the Microsoft Store alias: SYSTEM cannot run it.
    $found = Get-Command python.exe -ErrorAction SilentlyContinue |
        Where-Object { $_.Source -notlike '*\WindowsApps\*' } | Select-Object -First 1
    if ($found) { return $found.Source }
    throw 'no Python found: install 64-bit Python 3.10+ for all users (python.org installer, InstallAllUsers=1) or pass -Python'
}

function Get-OwnerSid([string]$Path) {
    $owner = (Get-Acl -LiteralPath $Path).Owner
    return ([Security.Principal.NTAccount]$owner).Translate([Security.Principal.SecurityIdentifier]).Value
}

function Stop-Agent {
    $service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
    if ($service -and $service.Status -ne 'Stopped') {
        Write-Host "==> stopping $ServiceName (the agent finishes or releases its job)"
        Stop-Service -Name $ServiceName
    }
    $task = Get-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath -ErrorAction SilentlyContinue
    if ($task) {
        Stop-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath -ErrorAction SilentlyContinue
        # the launcher, an agent version it started, or an agent of a pre-launcher install
        $launchPy = Join-Path $Prefix 'launch.py'
        $oldExe = Join-Path $Prefix 'Scripts\rolecall.exe'
        Get-CimInstance -ClassName Win32_Process -Filter "Name = 'python.exe' OR Name = 'rolecall.exe'" |
            Where-Object { "$($_.CommandLine)" -like "*$launchPy*" -or "$($_.ExecutablePath)" -like "$Prefix\versions\*" -or $_.ExecutablePath -eq $oldExe } |
            ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
        if ($Mode -eq 'Service') {
            Unregister-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath -Confirm:$false
            Write-Host '    the scheduled task of an earlier install is replaced by the service'
        }
    }
}

$admin = ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole(
    [Security.Principal.WindowsBuiltInRole]::Administrator)
if (-not $admin) { throw 'run install.ps1 as Administrator' }
if (-not (Test-Path -LiteralPath $From)) { throw "-From $From does not exist" }
$From = (Resolve-Path -LiteralPath $From).Path

$py = Find-Python
Invoke-Native "$py (Python 3.10 or newer)" { & $py -c 'import sys; sys.exit(sys.version_info < (3, 10))' }
Invoke-Native "$py (a 64-bit Python)" { & $py -c 'import struct, sys; sys.exit(struct.calcsize("P") != 8)' }
if ($py -like "$env:USERPROFILE\*") {
    Write-Warning "$py is a per-user Python; the virtual environment and the service depend on it. Prefer an all-users install."
}

Stop-Agent

# --- side-by-side layout (the same as deploy/linux/install.sh) ----------------------------
$versions = Join-Path $Prefix 'versions'
$staging = Join-Path $versions ".install-$PID"
New-Item -ItemType Directory -Force -Path $versions | Out-Null
if (Test-Path -LiteralPath $staging) { Remove-Item -Recurse -Force -LiteralPath $staging }
Write-Host "==> virtual environment (staged in $staging)"
Invoke-Native 'python -m venv' { & $py -m venv $staging }
$stagingPy = Join-Path $staging 'Scripts\python.exe'

Write-Host "==> pip install $From"
$pipArgs = @('-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--quiet', '--upgrade') + $PipOption + @($From)
Invoke-Native 'pip install' { & $stagingPy @pipArgs }
$version = (& $stagingPy -I -c 'import rolecall; print(rolecall.__version__)' | Out-String).Trim()
if ($LASTEXITCODE -ne 0 -or $version -notmatch '^[0-9][0-9A-Za-z.+!_-]*$') { throw "rolecall did not install (version '$version')" }
$target = Join-Path $versions $version
Write-Host "==> $target"
# Reinstalling a version replaces it. The launcher starts a version as `python -I -m rolecall`,
# so a venv renamed after it was made keeps working.
if (Test-Path -LiteralPath $target) { Remove-Item -Recurse -Force -LiteralPath $target }
Move-Item -LiteralPath $staging -Destination $target
$targetPy = Join-Path $target 'Scripts\python.exe'
$launcherSource = (& $targetPy -I -c 'import rolecall.launch as l; print(l.__file__)' | Out-String).Trim()
if ($LASTEXITCODE -ne 0) { throw "rolecall $version has no launcher (rolecall\launch.py): it cannot run side by side" }
$launcher = Join-Path $Prefix 'launch.py'
Copy-Item -Force -LiteralPath $launcherSource -Destination $launcher
Invoke-Native 'launch.py --record-install' { & $py -I $launcher --record-install $version }
Invoke-Native "rolecall $version --help" { & $py -I $launcher --help | Out-Null }
# --- end of the side-by-side layout --------------------------------------------------------
Copy-Item -Force -LiteralPath (Join-Path $PSScriptRoot 'run-worker.ps1') -Destination (Join-Path $Prefix 'run-worker.ps1')
Copy-Item -Force -LiteralPath (Join-Path $PSScriptRoot 'verify.ps1') -Destination (Join-Path $Prefix 'verify.ps1')

Write-Host "==> data directory $DataDir"
New-Item -ItemType Directory -Force -Path (Join-Path $DataDir 'logs') | Out-Null
# SYSTEM and Administrators only: the state, the settings and the logs are nobody else's
# business. SIDs, not names, so localized Windows works too. The agent protects its state
# directory itself at every start (worker/winacl.py).
Invoke-Native 'icacls' { & (Join-Path $System32 'icacls.exe') $DataDir /inheritance:r /grant:r "*${SystemSid}:(OI)(CI)F" "*${AdminsSid}:(OI)(CI)F" | Out-Null }
$state = Join-Path $DataDir 'state'
$envFile = Join-Path $DataDir 'worker.env'
$trustedPub = Join-Path $DataDir 'controller.pub'
if ($TrustedKey -and $AcceptUnsigned) { throw '-TrustedKey and -AcceptUnsigned exclude each other' }
if ($TrustedKey) {
    if (-not (Select-String -LiteralPath $TrustedKey -SimpleMatch '-----BEGIN PUBLIC KEY-----' -Quiet)) {
        throw "$TrustedKey is not a PEM public key (the .pub that rolecall keys generate writes)"
    }
    Copy-Item -LiteralPath $TrustedKey -Destination $trustedPub -Force
} elseif (-not $AcceptUnsigned -and -not (Test-Path -LiteralPath $envFile)) {
    throw 'give -TrustedKey FILE.pub (the controller''s public key; rolecall keys generate --out FILE makes one) or -AcceptUnsigned (development only)'
}
$trustLine = if ($AcceptUnsigned) { 'ROLECALL_ACCEPT_UNSIGNED=true' } else { "ROLECALL_TRUSTED_KEYS=[`"$($trustedPub.Replace('\', '\\'))`"]" }
if (Test-Path -LiteralPath $envFile) {
    # An owner may always rewrite a file's ACL: a worker.env someone else owns could tell
    # the agent, which runs as SYSTEM, to trust their keys or run their reboot command.
    $ownerSid = Get-OwnerSid $envFile
    if ($ownerSid -ne $SystemSid -and $ownerSid -ne $AdminsSid) {
        throw "$envFile is owned by $ownerSid, not SYSTEM or Administrators: check it, then remove it or take ownership (takeown /A /F) and run install.ps1 again"
    }
    Invoke-Native 'icacls /reset' { & (Join-Path $System32 'icacls.exe') $envFile /reset | Out-Null }
    Write-Host '    worker.env kept (already present)'
} else {
    $clientLine = if ($ClientId) { "AZURE_CLIENT_ID=$ClientId" } else { '#AZURE_CLIENT_ID=' }
    $shutdown = Join-Path $System32 'shutdown.exe'
    @(
        '# rolecall worker settings: KEY=VALUE, read by the service before every start.'
        '# Every setting has a ROLECALL_ name; see `rolecall worker --help` and docs/deploy.md.'
        '# Role and instance come from Azure instance metadata (VM name, rolecall-role tag).'
        'ROLECALL_USE_IMDS=true'
        "ROLECALL_NAMESPACE=$Namespace"
        "ROLECALL_ACCOUNT_NAME=$AccountName"
        '# client id of the worker''s user-assigned identity; required when the VM has several'
        $clientLine
        "ROLECALL_STATE_DIR=$state"
        $trustLine
        "ROLECALL_REBOOT_COMMAND=`"$shutdown /r /t 10 /c rolecall`""
        '# the role''s sealing key (rolecall keys seal-generate ROLE): opens jobs'' sealed secrets'
        '#ROLECALL_SEALING_KEY=C:\ProgramData\rolecall\sealing.pem'
        '# TLS trusts the Windows certificate store (auto); the proxy is WinHTTP''s unless set here'
        '#ROLECALL_TLS_TRUST=auto'
        '#HTTPS_PROXY=http://proxy.example:8080'
        'ROLECALL_LOG_LEVEL=info'
    ) | Set-Content -LiteralPath $envFile -Encoding ASCII
}

if ($Mode -eq 'Service') {
    Write-Host "==> service $ServiceName"
    $serviceArgs = @('service', 'install', '--data-dir', $DataDir, '--launcher', $launcher)
    if ($ForImage) { $serviceArgs += '--for-image' }
    Invoke-Native 'rolecall service install' { & $py -I $launcher @serviceArgs }
} else {
    Write-Host "==> scheduled task $TaskPath$TaskName (fallback: no graceful stop)"
    $powershell = Join-Path $System32 'WindowsPowerShell\v1.0\powershell.exe'
    $runner = Join-Path $Prefix 'run-worker.ps1'
    $action = New-ScheduledTaskAction -Execute $powershell -WorkingDirectory $DataDir `
        -Argument ('-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "{0}" -DataDir "{1}"' -f $runner, $DataDir)
    $trigger = New-ScheduledTaskTrigger -AtStartup
    # SYSTEM by SID, translated to this machine's language ('NT AUTHORITY\SYSTEM' is not a
    # name on a localized Windows)
    $system = ([Security.Principal.SecurityIdentifier]$SystemSid).Translate([Security.Principal.NTAccount]).Value
    $principal = New-ScheduledTaskPrincipal -UserId $system -LogonType ServiceAccount -RunLevel Highest
    # No execution time limit; restart if the task cannot start; never a second instance;
    # normal priority (a task's default, 7, is below normal)
    $settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) `
        -RestartCount 255 -RestartInterval (New-TimeSpan -Minutes 1) -MultipleInstances IgnoreNew `
        -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -Priority 4
    Register-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath -Action $action -Trigger $trigger `
        -Principal $principal -Settings $settings -Force `
        -Description 'rolecall worker: applies this instance''s role baseline and runs its jobs' | Out-Null
}

if ($ForImage) {
    if ($Mode -eq 'Task') { Disable-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath | Out-Null }
    $scripts = Join-Path $env:SystemRoot 'Setup\Scripts'
    New-Item -ItemType Directory -Force -Path $scripts | Out-Null
    $ours = Join-Path $Prefix 'SetupComplete-rolecall.cmd'
    Copy-Item -Force -LiteralPath (Join-Path $PSScriptRoot 'SetupComplete.cmd') -Destination $ours
    $setupComplete = Join-Path $scripts 'SetupComplete.cmd'
    $call = "call `"$ours`""
    # First, not last: an existing SetupComplete.cmd may end with `exit` (or lack a final
    # newline), and ours only enables and starts the agent, which returns at once.
    $existing = @()
    if (Test-Path -LiteralPath $setupComplete) { $existing = @(Get-Content -LiteralPath $setupComplete) }
    if ($existing -notcontains $call) {
        Set-Content -LiteralPath $setupComplete -Value (@('@echo off', $call) + $existing) -Encoding ASCII
    }
    if (Test-Path -LiteralPath (Join-Path $state 'incarnation')) {
        Write-Warning "$state holds an incarnation: delete it before Sysprep, or every VM made from the image skips its baseline"
    }
    Write-Host "Registered disabled; $setupComplete enables and starts it on each new VM."
    Write-Host "Check the bake (claims nothing): & '$(Join-Path $Prefix 'run-worker.ps1')' -Check -CheckArgs '--role', 'ROLE', '--instance', 'bake-check'"
} elseif ($Mode -eq 'Service') {
    Start-Service -Name $ServiceName
    Write-Host "Started. Logs: $DataDir\logs\worker.log. Verify: & '$(Join-Path $Prefix 'verify.ps1')'"
} else {
    Start-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath
    Write-Host "Started. Logs: $DataDir\logs\worker.log"
}
