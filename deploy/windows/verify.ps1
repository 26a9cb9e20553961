<#
.SYNOPSIS
After an install: checks on this Windows VM that the rolecall agent keeps its contract, and
prints a pass/fail table.

.DESCRIPTION
Run as Administrator on a VM where install.ps1 has installed and started the service (not
on a machine about to be captured: it starts the agent). It briefly stops the agent twice.

 service registered   automatic start, LocalSystem, restart on failure (also on a non-crash
                      failure), a preshutdown timeout longer than the agent's drain
 stop drains          Stop-Service: the agent hears the stop, finishes or releases its job,
                      posts what it owes, logs "agent stopped" and exits 0 within the deadline
 restart after crash  the launcher and its agent killed outright: the service manager
                      starts them again
 selfcheck            `rolecall service selfcheck`, through the agent's own code: a timeout
                      kills a job's grandchild (Job Object); a PowerShell script whose last
                      program exited 3010 reports 3010 (reboot required); hostile arguments
                      reach .ps1 and .cmd scripts intact; a step that extends the machine
                      PATH is seen by the next step; the OS boot time reads the same twice
 reboot (2 phases)    the first run records this boot; reboot the VM and run
                      `verify.ps1 -AfterReboot`: the agent must see the new boot

Exit code 0 when every check passed, 1 otherwise. docs/deploy.md says what each proves.

.EXAMPLE
& 'C:\Program Files\rolecall\verify.ps1'
#>
[CmdletBinding()]
param(
    [string]$Prefix = $PSScriptRoot,
    [string]$DataDir = (Join-Path $env:ProgramData 'rolecall'),
    [int]$TimeoutSeconds = 180,
    [switch]$AfterReboot
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$ServiceName = 'rolecall-worker'
# the side-by-side install's launcher, run by the base interpreter agent.json names
$launcher = Join-Path $Prefix 'launch.py'
$py = (Get-Content -Raw -LiteralPath (Join-Path $Prefix 'agent.json') | ConvertFrom-Json).python
$log = Join-Path $DataDir 'logs\worker.log'
$rebootState = Join-Path $DataDir 'verify\reboot'
$results = New-Object System.Collections.Generic.List[object]

function Add-Result([string]$Check, [bool]$Passed, [string]$Detail) {
    $results.Add([pscustomobject]@{ Result = $(if ($Passed) { 'PASS' } else { 'FAIL' }); Check = $Check; Detail = $Detail })
}

function Get-LogMessages {
    if (-not (Test-Path -LiteralPath $log)) { return @() }
    Get-Content -LiteralPath $log | ForEach-Object {
        try { ($_ | ConvertFrom-Json).msg } catch { $_ }
    }
}

function Wait-Until([scriptblock]$Condition, [int]$Seconds) {
    $watch = [Diagnostics.Stopwatch]::StartNew()
    while ($watch.Elapsed.TotalSeconds -lt $Seconds) {
        if (& $Condition) { return $true }
        Start-Sleep -Milliseconds 500
    }
    return $false
}

function Get-AgentPid {
    $started = @(Get-LogMessages | Where-Object { $_ -match '^started .* \(pid (\d+)\)$' })
    if ($started.Count -eq 0) { return $null }
    if ($started[-1] -match '\(pid (\d+)\)$') { return [int]$Matches[1] }
    return $null
}

function Test-Registration {
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
    if (-not (Test-Path $key)) { Add-Result 'service registered' $false "no $ServiceName service"; return }
    $svc = Get-ItemProperty -Path $key
    $problems = @()
    if ($svc.Start -ne 2) { $problems += "start type $($svc.Start), not automatic (2)" }
    if ($svc.ObjectName -ne 'LocalSystem') { $problems += "runs as $($svc.ObjectName)" }
    $props = $svc.PSObject.Properties.Name
    if (-not ($props -contains 'FailureActionsOnNonCrashFailures') -or $svc.FailureActionsOnNonCrashFailures -ne 1) {
        $problems += 'no recovery on non-crash failures'
    }
    if (-not ($props -contains 'FailureActions')) { $problems += 'no recovery actions' }
    $stop = (Get-ItemProperty -Path "$key\Parameters").StopTimeoutSeconds
    if (-not ($props -contains 'PreshutdownTimeout') -or $svc.PreshutdownTimeout -le $stop * 1000) {
        $problems += 'preshutdown timeout shorter than the drain'
    }
    Add-Result 'service registered' ($problems.Count -eq 0) $(if ($problems) { $problems -join '; ' } else { "drain deadline ${stop}s" })
}

function Test-StopDrains {
    Start-Service -Name $ServiceName
    if (-not (Wait-Until { (Get-LogMessages) -contains 'agent started (known incarnation)' -or (Get-LogMessages) -contains 'agent started (new incarnation)' } $TimeoutSeconds)) {
        Add-Result 'stop drains' $false 'the agent did not report its start'; return
    }
    $watch = [Diagnostics.Stopwatch]::StartNew()
    Stop-Service -Name $ServiceName
    $seconds = [int]$watch.Elapsed.TotalSeconds
    $messages = @(Get-LogMessages)
    $drained = $messages -contains 'agent stopped'
    $clean = $messages -contains 'agent exited with 0'
    $status = (Get-Service -Name $ServiceName).Status
    Add-Result 'stop drains' ($drained -and $clean -and $status -eq 'Stopped') "stopped in ${seconds}s; 'agent stopped' logged: $drained; exit 0: $clean"
}

function Test-RestartAfterCrash {
    Start-Service -Name $ServiceName
    if (-not (Wait-Until { $null -ne (Get-AgentPid) } 60)) { Add-Result 'restart after crash' $false 'no agent pid in the log'; return }
    $before = Get-AgentPid
    Stop-Process -Id $before -Force
    $restarted = Wait-Until { $pid2 = Get-AgentPid; $null -ne $pid2 -and $pid2 -ne $before -and (Get-Service -Name $ServiceName).Status -eq 'Running' } $TimeoutSeconds
    Add-Result 'restart after crash' $restarted "killed pid $before; restarted by the service manager: $restarted"
}

function Test-SelfCheck {
    $phase = if ($AfterReboot) { 'after' } else { 'before' }
    $lines = & $py -I $launcher service selfcheck --reboot-state $rebootState --reboot-phase $phase 2>&1
    foreach ($line in $lines) {
        if ("$line" -match '^(PASS|FAIL)\s+(.+?)\s{2,}(.*)$') { Add-Result $Matches[2] ($Matches[1] -eq 'PASS') $Matches[3] }
    }
    if ($LASTEXITCODE -ne 0 -and -not ($results | Where-Object { $_.Result -eq 'FAIL' })) {
        Add-Result 'selfcheck' $false ($lines -join ' ')
    }
}

$admin = ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole(
    [Security.Principal.WindowsBuiltInRole]::Administrator)
if (-not $admin) { throw 'run verify.ps1 as Administrator' }

Test-Registration
if (-not $AfterReboot) {
    Test-StopDrains
    Test-RestartAfterCrash
}
Test-SelfCheck

$results | Format-Table -AutoSize -Wrap | Out-String -Width 160 | Write-Host
if (-not $AfterReboot) {
    Write-Host "To finish the reboot check: reboot this VM, then run & '$PSCommandPath' -AfterReboot"
}
if ($results | Where-Object { $_.Result -eq 'FAIL' }) { exit 1 }
exit 0
