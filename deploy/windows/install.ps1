<#
.SYNOPSIS
Install the rolecall worker on Windows: into a base image (-ForImage) or onto one machine.

.DESCRIPTION
Run as Administrator, idempotently (run again to upgrade):

 1. lays PREFIX (default C:\Program Files\rolecall) out for side-by-side agent versions, as
    on Linux (docs/deploy.md): pip-installs rolecall from -From (a wheel, an sdist or a source
    checkout; default: the checkout this script lives in) into a virtual environment of its
    own, PREFIX\versions\<V>; copies the launcher (rolecall\launch.py) to PREFIX\launch.py;
    records <V> as current in PREFIX\agent.json (the version before stays installed, as
    previous). Agent upgrades add versions beside it; they never replace the launcher;
 2. creates DATADIR (default C:\ProgramData\rolecall) readable by SYSTEM and Administrators
    only, and writes DATADIR\worker.env from a template unless it exists (same KEY=VALUE
    format as on Linux; the agent's state goes to DATADIR\state, its logs to DATADIR\logs);
 3. registers the scheduled task \rolecall\rolecall-worker: SYSTEM, at startup, highest
    privileges, no time limit, running run-worker.ps1, which restarts the agent if it exits;
 4. without -ForImage, starts the task. With -ForImage, leaves the task disabled and hooks
    SetupComplete.cmd, so that each VM made from the Sysprep'd image enables and starts it
    once Windows setup has finished (never during setup's reboots).

Why a scheduled task and not a Windows service: Python cannot answer the Service Control
Manager by itself, so a service needs pywin32 (an extra, compiled dependency with a
post-install step in the venv) or a third-party wrapper binary (NSSM, WinSW) in the image.
A SYSTEM task needs only what every Windows has, is registered with built-in cmdlets, and is
kept by Sysprep like any machine-wide task. What it lacks we supply: restart-on-exit and log
files (run-worker.ps1). The trade-off: at shutdown the agent is terminated rather than asked
to stop, so a running job loses its lease when it expires instead of at once; the agent is
built for exactly that (job markers, lease expiry, reimage and SIGKILL tests).

.EXAMPLE
.\deploy\windows\install.ps1 -AccountName rolecallprod01 -ClientId <worker identity client id> -ForImage
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
    [switch]$ForImage
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$TaskName = 'rolecall-worker'
$TaskPath = '\rolecall\'

function Invoke-Native([string]$What, [scriptblock]$Command) {
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

function Find-Python {
    if ($Python) { return $Python }
    $launcher = Get-Command py.exe -ErrorAction SilentlyContinue
    if ($launcher) {
        $exe = & $launcher.Source -3 -c 'import sys; print(sys.executable)'
        if ($LASTEXITCODE -eq 0 -and $exe) { return $exe.Trim() }
    }
    # Not the Microsoft Store alias: SYSTEM cannot run it.
    $found = Get-Command python.exe -ErrorAction SilentlyContinue |
        Where-Object { $_.Source -notlike '*\WindowsApps\*' } | Select-Object -First 1
    if ($found) { return $found.Source }
    throw 'no Python found: install Python 3.10+ for all users (python.org installer, InstallAllUsers=1) or pass -Python'
}

$admin = ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole(
    [Security.Principal.WindowsBuiltInRole]::Administrator)
if (-not $admin) { throw 'run install.ps1 as Administrator' }
if (-not (Test-Path -LiteralPath $From)) { throw "-From $From does not exist" }
$From = (Resolve-Path -LiteralPath $From).Path

$py = Find-Python
Invoke-Native "$py (Python 3.10 or newer)" { & $py -c 'import sys; sys.exit(sys.version_info < (3, 10))' }
if ($py -like "$env:USERPROFILE\*") {
    Write-Warning "$py is a per-user Python; the virtual environment depends on it. Prefer an all-users install."
}

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

Write-Host "==> data directory $DataDir"
New-Item -ItemType Directory -Force -Path (Join-Path $DataDir 'logs') | Out-Null
# SYSTEM (S-1-5-18) and Administrators (S-1-5-32-544) only: the state, the settings and the
# logs are nobody else's business. SIDs, not names, so localized Windows works too.
Invoke-Native 'icacls' { icacls $DataDir /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null }
$state = Join-Path $DataDir 'state'
$envFile = Join-Path $DataDir 'worker.env'
if (Test-Path -LiteralPath $envFile) {
    Write-Host '    worker.env kept (already present)'
} else {
    $clientLine = if ($ClientId) { "AZURE_CLIENT_ID=$ClientId" } else { '#AZURE_CLIENT_ID=' }
    @(
        '# rolecall worker settings: KEY=VALUE, read by run-worker.ps1 before every start.'
        '# Every setting has a ROLECALL_ name; see `rolecall worker --help` and docs/deploy.md.'
        '# Role and instance come from Azure instance metadata (VM name, rolecall-role tag).'
        'ROLECALL_USE_IMDS=true'
        "ROLECALL_NAMESPACE=$Namespace"
        "ROLECALL_ACCOUNT_NAME=$AccountName"
        '# client id of the worker''s user-assigned identity; required when the VM has several'
        $clientLine
        "ROLECALL_STATE_DIR=$state"
        '#ROLECALL_TRUSTED_KEYS=''["C:\\ProgramData\\rolecall\\controller.pub"]'''
        'ROLECALL_REBOOT_COMMAND="shutdown.exe /r /t 10 /c rolecall"'
        'ROLECALL_LOG_LEVEL=info'
    ) | Set-Content -LiteralPath $envFile -Encoding ASCII
}

Write-Host "==> scheduled task $TaskPath$TaskName"
$powershell = Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe'
$runner = Join-Path $Prefix 'run-worker.ps1'
$action = New-ScheduledTaskAction -Execute $powershell -WorkingDirectory $DataDir `
    -Argument ('-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "{0}" -DataDir "{1}"' -f $runner, $DataDir)
$trigger = New-ScheduledTaskTrigger -AtStartup
$principal = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\SYSTEM' -LogonType ServiceAccount -RunLevel Highest
# No execution time limit (the default, 72 hours, would stop the agent on day three); restart
# if the task cannot start; never a second instance; run on battery (laptops in labs).
$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -RestartCount 255 -RestartInterval (New-TimeSpan -Minutes 1) -MultipleInstances IgnoreNew `
    -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries
Register-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath -Action $action -Trigger $trigger `
    -Principal $principal -Settings $settings -Force `
    -Description 'rolecall worker: applies this instance''s role baseline and runs its jobs' | Out-Null

if ($ForImage) {
    Disable-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath | Out-Null
    $scripts = Join-Path $env:SystemRoot 'Setup\Scripts'
    New-Item -ItemType Directory -Force -Path $scripts | Out-Null
    $ours = Join-Path $Prefix 'SetupComplete-rolecall.cmd'
    Copy-Item -Force -LiteralPath (Join-Path $PSScriptRoot 'SetupComplete.cmd') -Destination $ours
    $setupComplete = Join-Path $scripts 'SetupComplete.cmd'
    $call = "call `"$ours`""
    # First, not last: an existing SetupComplete.cmd may end with `exit` (or lack a final
    # newline), and ours only enables and starts a task, which returns at once.
    $existing = @()
    if (Test-Path -LiteralPath $setupComplete) { $existing = @(Get-Content -LiteralPath $setupComplete) }
    if ($existing -notcontains $call) {
        Set-Content -LiteralPath $setupComplete -Value (@('@echo off', $call) + $existing) -Encoding ASCII
    }
    if (Test-Path -LiteralPath (Join-Path $state 'incarnation')) {
        Write-Warning "$state holds an incarnation: delete it before Sysprep, or every VM made from the image skips its baseline"
    }
    Write-Host "Task registered disabled; $setupComplete enables and starts it on each new VM."
    Write-Host "Check the bake (claims nothing): & '$runner' -Check -CheckArgs '--role', 'ROLE', '--instance', 'bake-check'"
} else {
    Start-ScheduledTask -TaskName $TaskName -TaskPath $TaskPath
    Write-Host "Started. Logs: $DataDir\logs\worker.log"
}
