"""One agent per instance name (worker/registration.py): a second agent refuses, a restart
and a reimage take the name over at once, a holder elsewhere is watched for a heartbeat, and
an agent whose record someone else wrote stops."""

from __future__ import annotations

import threading
from pathlib import Path

from rolecall.controller.fleet import list_instances
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.instances import Holder
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceRecord, InstanceState
from rolecall.storage.clients import Storage
from tests.fleet import TEST_ARGS, Fleet, Operator, Worker, wait_for

FAST = ["--heartbeat", "1"]


def record(storage: Storage, instance: str = "web-0") -> InstanceRecord:
    blob = storage.get_blob(storage.names.state_container, Names.instance_blob("web", instance))
    return decode_document(blob.data, InstanceRecord)


def registered(storage: Storage, instance: str = "web-0") -> bool:
    return any(s.instance == instance for s in list_instances(storage, "web"))


def second(workers: Fleet, tmp_path: Path, instance: str = "web-0", *args: str) -> Worker:
    """Another agent under the same name, on a disk (state directory) of its own."""
    w = Worker("web", instance, tmp_path / "elsewhere", workers.env, [*TEST_ARGS, *args])
    workers.workers.append(w)
    return w


def plant(storage: Storage, *, host: str, heartbeat: float, incarnation: str = "i-planted") -> None:
    """A record as an agent on another machine writes it."""
    now = utcnow()
    r = InstanceRecord(
        role="web", instance="web-0", incarnation=incarnation, agent_version="0.3.0",
        boot_time=now, last_seen=now, state=InstanceState.READY, heartbeat_s=heartbeat,
        contract="1.2", holder=Holder(host=host, pid=4242, os_boot="another-boot"),
    )  # fmt: skip
    storage.put_blob(storage.names.state_container, Names.instance_blob("web", "web-0"),
                     encode_document(r), metadata=r.to_metadata())  # fmt: skip


def test_a_second_agent_under_a_running_name_refuses_and_the_first_keeps_it(
    ops: Operator, workers: Fleet, tmp_path: Path
) -> None:
    first = workers.worker("web", "web-0", *FAST)
    wait_for(lambda: registered(ops.storage), what="web-0 registered")
    held = record(ops.storage).incarnation
    dup = second(workers, tmp_path).start()
    assert dup.wait(60) == 2
    said = dup.logs()
    assert "held by another running agent" in said and "pid" in said and "Traceback" not in said
    assert first.alive and record(ops.storage).incarnation == held
    assert len(ops.hellos("web-0")) == 1, "the refused agent said nothing to the controller"


def test_a_restart_after_a_crash_and_a_reimage_take_the_name_over_at_once(
    ops: Operator, workers: Fleet
) -> None:
    w = workers.worker("web", "web-0", *FAST)
    wait_for(lambda: registered(ops.storage), what="web-0 registered")
    w.kill()  # SIGKILL: the record still says it holds the name
    w.start()
    wait_for(lambda: len(ops.hellos("web-0")) == 2, timeout=20, what="the restart's hello")
    w.reimage()  # SIGKILL, wiped disk, a new incarnation under the same name
    w.start()
    wait_for(lambda: len(ops.hellos("web-0")) == 3, timeout=20, what="the reimage's hello")
    assert record(ops.storage).incarnation == w.incarnation
    assert "waiting up to" not in w.logs(), "a dead predecessor on this machine is not waited for"


def test_a_holder_on_another_machine_that_misses_a_heartbeat_is_replaced(
    ops: Operator, workers: Fleet
) -> None:
    plant(ops.storage, host="another-machine", heartbeat=1)
    w = workers.worker("web", "web-0", *FAST)
    wait_for(lambda: w.incarnation and record(ops.storage).incarnation == w.incarnation,
             timeout=30, what="the name taken over")  # fmt: skip
    assert "waiting up to" in w.logs() and w.alive


def test_a_holder_on_another_machine_that_keeps_writing_is_not_replaced(
    ops: Operator, workers: Fleet
) -> None:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.3):
            plant(ops.storage, host="another-machine", heartbeat=1)

    plant(ops.storage, host="another-machine", heartbeat=1)
    writer = threading.Thread(target=beat, daemon=True)
    writer.start()
    try:
        w = workers.worker("web", "web-0", *FAST)
        assert w.wait(60) == 2
    finally:
        stop.set()
        writer.join(5)
    assert "held by another running agent" in w.logs() and "another-machine" in w.logs()
    assert record(ops.storage).incarnation == "i-planted"


def test_an_agent_whose_record_another_agent_wrote_stops(ops: Operator, workers: Fleet) -> None:
    w = workers.worker("web", "web-0", *FAST)
    wait_for(lambda: registered(ops.storage), what="web-0 registered")
    plant(ops.storage, host="another-machine", heartbeat=60, incarnation="i-took-over")
    assert w.wait(60) == 2
    assert "was taken over by another agent" in w.logs()
    assert record(ops.storage).incarnation == "i-took-over", "the stopping agent wrote nothing"
