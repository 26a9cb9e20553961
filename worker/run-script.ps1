# rolecall: runs one job's PowerShell script and exits with the exit code of the last program
# it ran. `powershell -File job.ps1` exits 0 or 1 whatever that program returned, so an
# installer's 3010 (reboot required) would be lost unless every script ended with
# `exit $LASTEXITCODE`. The agent starts
#   powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File run-script.ps1 ARGS
# with the job's script in $env:ROLECALL_PS_SCRIPT, so ARGS reach the script unshifted:
# splatting @args keeps `-Name value` pairs named, as -File bound them.
# A script that ends with `exit N` still exits N; one stopped by a terminating error exits 1.
$global:LASTEXITCODE = 0
& $env:ROLECALL_PS_SCRIPT @args
exit $global:LASTEXITCODE
