"""Incarnations: a reimaged instance configures itself again; a restart re-applies nothing."""

from __future__ import annotations

from pathlib import Path

from rolecall.controller.baselines import publish_baseline
from rolecall.schemas import Outcome
from tests.fleet import Fleet, Ledger, Operator, Worker, wait_for, write_baseline


def steps(ledger: Ledger, n: int, body: str = "") -> list[tuple[str, bytes]]:
    return [(f"step {i}", ledger.script(f"s{i}", body)) for i in range(n)]


def test_reimage_reapplies_the_baseline_and_does_pending_work(
    ops: Operator, ledger: Ledger, workers: Fleet, tmp_path: Path
) -> None:
    """Boot applies the baseline; SIGKILL + wiped disk + restart under the same name is a new
    incarnation that applies it again and then does the work queued for it meanwhile."""
    publish_baseline(
        ops.storage, "web", write_baseline(tmp_path / "b", steps(ledger, 3)), signer=ops.signer
    )
    w = workers.worker("web", "web-0")
    wait_for(lambda: len(ledger.entries("s2")) == 1, what="the baseline at first boot")
    first = w.incarnation

    w.reimage()
    ops.enqueue(ops.job("web", ops.publish(ledger.script("pending")), instance="web-0"))
    w.start()
    wait_for(lambda: ledger.entries("pending"), what="the pending instance job")
    second = w.incarnation
    assert second != first
    for i in range(3):
        assert [e[2] for e in ledger.entries(f"s{i}")] == [first, second]
    assert ledger.entries("pending")[0][2] == second
    hellos = ops.hellos("web-0")
    wait_for(lambda: len(ops.hellos("web-0")) == 2, what="two hello events")
    hellos = ops.hellos("web-0")
    assert [h.new_incarnation for h in hellos] == [True, True]


def test_a_plain_restart_reapplies_nothing(
    ops: Operator, ledger: Ledger, workers: Fleet, tmp_path: Path
) -> None:
    publish_baseline(
        ops.storage, "web", write_baseline(tmp_path / "b", steps(ledger, 2)), signer=ops.signer
    )
    w = workers.worker("web", "web-0")
    # the step's report, not its effect: a kill between a step's effect and its marker
    # re-runs it (the window every system of this kind has; docs/reliability.md)
    wait_for(lambda: ops.completions(step=1), what="the baseline")
    w.kill()  # even a crash: the disk survives
    w.start()
    wait_for(lambda: len(ops.hellos("web-0")) == 2, what="the second hello")
    hello = ops.hellos("web-0")[1]
    assert hello.new_incarnation is False
    w.stop()
    assert len(ledger.entries("s0")) == len(ledger.entries("s1")) == 1


def simulated_machine(workers: Fleet, tmp_path: Path, *args: str) -> tuple[Worker, Path]:
    """A worker whose OS boot time is read from a file: rewriting it is the reboot."""
    proc_stat = tmp_path / "proc-stat"
    proc_stat.write_text("cpu  1 2 3\nbtime 1700000000\n")
    w = workers.worker("web", "web-0", *args, start=False)
    w.env = {**w.env, "ROLECALL_BOOT_TIME_FILE": str(proc_stat)}
    w.start()
    return w, proc_stat


def test_a_reboot_code_pauses_the_baseline_until_the_next_boot(
    ops: Operator, ledger: Ledger, workers: Fleet, tmp_path: Path
) -> None:
    """Step 1 exits 194 (reboot required). The agent runs the reboot command (a stub here)
    and exits; once the OS has booted again steps 2 and 3 continue and step 1 is not run
    again."""
    marker = tmp_path / "rebooted"
    plan = steps(ledger, 3)
    plan[1] = ("needs reboot", ledger.script("s1", "exit 194"))
    publish_baseline(ops.storage, "web", write_baseline(tmp_path / "b", plan), signer=ops.signer)
    w, proc_stat = simulated_machine(workers, tmp_path, "--reboot-command", f"touch {marker}")
    assert w.wait(30) == 5  # ExitCode.REBOOTING
    assert marker.exists()
    assert (len(ledger.entries("s1")), len(ledger.entries("s2"))) == (1, 0)
    proc_stat.write_text("btime 1700000600\n")  # the machine booted again
    w.start()
    wait_for(lambda: ledger.entries("s2"), what="the steps after the reboot")
    assert len(ledger.entries("s1")) == 1
    outcomes = {c.step: c.outcome for c in ops.completions(run_id="baseline-web-v1")}
    assert outcomes == {0: Outcome.SUCCEEDED, 1: Outcome.REBOOT_REQUIRED, 2: Outcome.SUCCEEDED}


def test_a_failed_reboot_command_leaves_the_step_waiting_for_a_real_reboot(
    ops: Operator, ledger: Ledger, workers: Fleet, tmp_path: Path
) -> None:
    """The reboot command fails: the agent says so (exit 7, so its service restarts it),
    and an agent started again in the same OS boot neither marks the step done nor runs
    the steps after it; it asks for the reboot again. Only a new boot continues."""
    plan = steps(ledger, 3)
    plan[1] = ("needs reboot", ledger.script("s1", "exit 194"))
    publish_baseline(ops.storage, "web", write_baseline(tmp_path / "b", plan), signer=ops.signer)
    w, proc_stat = simulated_machine(workers, tmp_path, "--reboot-command", "false")
    assert w.wait(30) == 7  # ExitCode.REBOOT_FAILED
    assert "the reboot command exited with 1" in w.log()
    w.start()  # the service manager's restart, same boot
    assert w.wait(30) == 7
    assert (len(ledger.entries("s1")), len(ledger.entries("s2"))) == (1, 0)
    proc_stat.write_text("btime 1700000600\n")
    w.start("--reboot-command", "true")
    wait_for(lambda: ledger.entries("s2"), what="the steps after the reboot")
    assert len(ledger.entries("s1")) == 1


def test_a_new_baseline_version_reaches_live_instances_without_a_restart(
    ops: Operator, ledger: Ledger, workers: Fleet, tmp_path: Path
) -> None:
    publish_baseline(
        ops.storage, "web", write_baseline(tmp_path / "v1", steps(ledger, 1)), signer=ops.signer
    )
    ws = [workers.worker("web", f"web-{i}") for i in range(3)]
    wait_for(lambda: len(ledger.entries("s0")) == 3, what="v1 on every instance")
    from rolecall.controller.fleet import list_instances

    wait_for(
        lambda: (
            all(s.baseline_version == 1 for s in list_instances(ops.storage, "web"))
            and len(list_instances(ops.storage, "web")) == 3
        ),
        what="v1 recorded",
    )
    v2 = [*steps(ledger, 1), ("new step", ledger.script("v2"))]
    _, run = publish_baseline(
        ops.storage, "web", write_baseline(tmp_path / "v2", v2), signer=ops.signer
    )
    assert sorted(run.targets) == ["web-0", "web-1", "web-2"]
    wait_for(lambda: len(ledger.entries("v2")) == 3, what="v2 on every instance")
    assert len(ledger.entries("s0")) == 3, "the unchanged step is not run again"
    assert all(w.alive and w.starts == 1 for w in ws)


def process_gone(pid: int) -> bool:
    """Dead or a zombie waiting for a reaper: either way it can do nothing more."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_lost_host_takes_its_running_job_with_it(
    tmp_path: Path, ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """The agent starts each job in a session of its own; a simulated host failure must still
    kill the job (and what the job started), or a "dead" instance could go on writing effects."""
    pids = tmp_path / "pids"
    body = f'echo $$ >> "{pids}"\nsleep 60 &\necho $! >> "{pids}"\nwait'
    ops.enqueue(ops.job("web", ops.publish(ledger.script("long", body)), job_id="long"))
    w = workers.worker("web", "web-0")
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, what="the job")
    w.kill()
    job, grandchild = (int(p) for p in pids.read_text().split())
    wait_for(lambda: process_gone(job) and process_gone(grandchild), timeout=10,
             what="the job and its child to die with the host")  # fmt: skip
