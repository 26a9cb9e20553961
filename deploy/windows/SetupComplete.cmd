@echo off
rem rolecall: runs once on each VM made from a Sysprep'd image, after Windows setup (OOBE)
rem has finished and before the first logon, as SYSTEM. install.ps1 -ForImage registers the
rem worker task disabled (so it cannot start during setup's own reboots, with the machine
rem half-specialized) and calls this file from %WINDIR%\Setup\Scripts\SetupComplete.cmd.
rem From here on the task's boot trigger starts the agent on every boot; a reimage runs setup,
rem and so this file, again. Windows ignores this script's exit code; the log is for people.
setlocal
set "LOG=%ProgramData%\rolecall\logs\setupcomplete.log"
if not exist "%ProgramData%\rolecall\logs" mkdir "%ProgramData%\rolecall\logs"
echo %DATE% %TIME% enabling and starting \rolecall\rolecall-worker>>"%LOG%"
schtasks.exe /Change /TN "\rolecall\rolecall-worker" /ENABLE>>"%LOG%" 2>&1
schtasks.exe /Run /TN "\rolecall\rolecall-worker">>"%LOG%" 2>&1
endlocal
exit /b 0
