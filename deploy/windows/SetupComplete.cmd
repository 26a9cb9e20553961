@echo off
rem rolecall: runs once on each VM made from a Sysprep'd image, after Windows setup (OOBE)
rem has finished and before the first logon, as SYSTEM. install.ps1 -ForImage registers the
rem rolecall-worker service disabled (so it cannot start during setup's own reboots, with the
rem machine half-specialized) and calls this file from %WINDIR%\Setup\Scripts\SetupComplete.cmd.
rem From here on the service starts the agent on every boot; a reimage runs setup, and so this
rem file, again. An image made with install.ps1 -Mode Task has the scheduled task instead.
rem Windows ignores this script's exit code; the log is for people.
setlocal
set "SC=%SystemRoot%\System32\sc.exe"
set "LOG=%ProgramData%\rolecall\logs\setupcomplete.log"
if not exist "%ProgramData%\rolecall\logs" mkdir "%ProgramData%\rolecall\logs"
"%SC%" query rolecall-worker >nul 2>&1
if errorlevel 1 goto task
echo %DATE% %TIME% enabling and starting the rolecall-worker service>>"%LOG%"
"%SC%" config rolecall-worker start= auto>>"%LOG%" 2>&1
"%SC%" start rolecall-worker>>"%LOG%" 2>&1
goto done
:task
echo %DATE% %TIME% enabling and starting \rolecall\rolecall-worker>>"%LOG%"
"%SystemRoot%\System32\schtasks.exe" /Change /TN "\rolecall\rolecall-worker" /ENABLE>>"%LOG%" 2>&1
"%SystemRoot%\System32\schtasks.exe" /Run /TN "\rolecall\rolecall-worker">>"%LOG%" 2>&1
:done
endlocal
exit /b 0
