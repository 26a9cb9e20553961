<#
.SYNOPSIS
Runs the rolecall worker under the "rolecall-worker" scheduled task (the fallback to the
service: install.ps1 -Mode Task) and keeps it running; with -Check, the image-bake check.

.DESCRIPTION
The service (install.ps1's default) is what should run the agent: it asks the agent to stop
and lets it drain at shutdown. A scheduled task cannot: at shutdown the agent is terminated
and its job's lease lapses instead of being released (docs/deploy.md). Under -Mode Task,
install.ps1 copies this script into the install root and registers it as the action of a
SYSTEM scheduled task that starts at boot. It starts the agent through the launcher
(PREFIX\launch.py, run by the base interpreter named in PREFIX\agent.json), which runs the
current agent version of the side-by-side install and switches back by itself when an
upgrade does not check in. It does for the agent what systemd does on Linux, because Task
Scheduler does not:

* settings: reads DATADIR\worker.env (KEY=VALUE lines, '#' comments, the same format as
  /etc/rolecall/worker.env) into the agent's environment before every start;
* restart: Task Scheduler's "restart on failure" only covers a task that fails to *start*;
  a process that exits non-zero is simply finished. This loop restarts the agent after 10 s
  whatever it exited with, except 0 (asked to stop) and 5 (it ran the reboot command); 6
  means an upgrade was installed and is restarted like any other exit;
* logs: a task's output goes nowhere, so the agent's JSON log lines (stderr) are written to
  DATADIR\logs\worker.log, the previous runs' kept as worker.1.log ... worker.5.log.

It waits for the launcher process alone, not for every process the agent started (which
`Start-Process -Wait` does): after a crash, a job process still running must not keep the
agent from being restarted.

If an agent started by an earlier instance of this script is still running (ending a task
does not always end the processes it started), it waits for that one instead of starting a
second agent on the same state directory.

With -Check it loads the same settings, runs `rolecall worker --check` once in the console
(claims nothing, creates no state) and exits with its code: use it when baking an image.

.EXAMPLE
& 'C:\Program Files\rolecall\run-worker.ps1' -Check -CheckArgs '--role', 'web', '--instance', 'bake-check'
#>
[CmdletBinding()]
param(
    [string]$DataDir = (Join-Path $env:ProgramData 'rolecall'),
    [int]$RestartDelaySeconds = 10,
    [switch]$Check,
    [string[]]$CheckArgs = @()
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# --- side-by-side layout: the launcher, run by the base interpreter -------------------------
$launcher = Join-Path $PSScriptRoot 'launch.py'
$versions = Join-Path $PSScriptRoot 'versions'
$py = (Get-Content -Raw -LiteralPath (Join-Path $PSScriptRoot 'agent.json') | ConvertFrom-Json).python
# --- end of the side-by-side layout --------------------------------------------------------
$envFile = Join-Path $DataDir 'worker.env'
$logDir = Join-Path $DataDir 'logs'
$log = Join-Path $logDir 'worker.log'
$runnerLog = Join-Path $logDir 'runner.log'
New-Item -ItemType Directory -Force -Path $logDir | Out-Null

function Write-RunnerLog([string]$Message) {
    Add-Content -LiteralPath $runnerLog -Value ('{0:o} {1}' -f (Get-Date), $Message)
}

function Import-WorkerEnv {
    if (-not (Test-Path -LiteralPath $envFile)) {
        Write-RunnerLog "no $envFile; starting with the machine environment only"
        return
    }
    foreach ($line in Get-Content -LiteralPath $envFile) {
        $text = $line.Trim()
        if ($text.Length -eq 0 -or $text.StartsWith('#')) { continue }
        $eq = $text.IndexOf('=')
        if ($eq -lt 1) { continue }
        $name = $text.Substring(0, $eq).Trim()
        $value = $text.Substring($eq + 1).Trim()
        if ($value.Length -ge 2 -and ($value[0] -eq $value[-1]) -and ('"', "'" -contains $value[0])) {
            $value = $value.Substring(1, $value.Length - 2)
        }
        # An empty value removes the variable, as an unset one would be on Linux.
        [Environment]::SetEnvironmentVariable($name, $value, 'Process')
    }
}

function Get-RunningAgent {
    # the launcher, or an agent version it started (python.exe -I -m rolecall worker)
    Get-CimInstance -ClassName Win32_Process -Filter "Name = 'python.exe'" |
        Where-Object {
            ($_.CommandLine -like "*$launcher*" -or "$($_.ExecutablePath)" -like "$versions\*") -and
            $_.CommandLine -match '\sworker(\s|"|$)' -and
            $_.CommandLine -notmatch '--check|--once|--record-install'
        }
}

if ($Check) {
    Import-WorkerEnv
    & $py -I $launcher worker --check @CheckArgs
    exit $LASTEXITCODE
}

while ($true) {
    $running = @(Get-RunningAgent)
    if ($running.Count -gt 0) {
        Write-RunnerLog "agent already running (pid $($running[0].ProcessId)); waiting for it"
        Wait-Process -Id $running[0].ProcessId -ErrorAction SilentlyContinue
        continue
    }
    Import-WorkerEnv
    if (Test-Path -LiteralPath $log) {
        for ($n = 4; $n -ge 1; $n--) {
            $older = Join-Path $logDir "worker.$n.log"
            if (Test-Path -LiteralPath $older) {
                Move-Item -Force -LiteralPath $older -Destination (Join-Path $logDir "worker.$($n + 1).log")
            }
        }
        Move-Item -Force -LiteralPath $log -Destination (Join-Path $logDir 'worker.1.log')
    }
    $agent = Start-Process -FilePath $py -ArgumentList '-I', "`"$launcher`"", 'worker' -NoNewWindow -PassThru `
        -RedirectStandardError $log -RedirectStandardOutput (Join-Path $logDir 'worker.out.log')
    $null = $agent.Handle  # keeps the process handle, so ExitCode is there after it exits
    $agent.WaitForExit()
    $code = $agent.ExitCode
    Write-RunnerLog "agent exited with $code"
    if ($code -eq 0 -or $code -eq 5) { break }
    Start-Sleep -Seconds $RestartDelaySeconds
}
