"""The fold is a pure function: order and repetition of events do not change the result."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rolecall.controller.dispatch import dispatched, parse_limit, plan
from rolecall.controller.results import assemble
from rolecall.controller.results import fold_report as fold_completion
from rolecall.schemas import Outcome, RunMode, RunRecord, TargetResult, TargetState, utcnow
from rolecall.schemas.events import Started
from rolecall.schemas.runs import ResultsDelta
from tests.factories import completion, job

NOW = utcnow()


def run_of(mode: RunMode, targets: list[str], **kw: object) -> RunRecord:
    return RunRecord.model_validate(
        {
            "run_id": "r1",
            "role": "web",
            "mode": mode,
            "created_at": NOW,
            "updated_at": NOW,
            "targets": {t: TargetResult(target=t, state=TargetState.QUEUED) for t in targets},
            **kw,
        }
    )


def fold_all(run: RunRecord, events: list) -> RunRecord:  # type: ignore[type-arg]
    for e in events:
        run = fold_completion(run, e)
    return run


attempt_events = st.lists(
    st.tuples(
        st.sampled_from(["w0", "w1", "w2"]),
        st.integers(1, 3),
        st.sampled_from([Outcome.SUCCEEDED, Outcome.FAILED, Outcome.TIMED_OUT]),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


def to_completions(raw):  # type: ignore[no-untyped-def]
    return [
        completion(
            instance=i,
            attempt=a,
            outcome=o,
            will_retry=r and not o.ok,
            job_id=f"r1.{i}",
            finished_at=NOW + timedelta(seconds=a),
        )
        for i, a, o, r in raw
    ]


@settings(max_examples=500)
@given(attempt_events, st.randoms())
def test_fold_is_order_free_and_idempotent(raw, rnd) -> None:  # type: ignore[no-untyped-def]
    events = to_completions(raw)
    base = run_of(RunMode.EACH, ["w0", "w1", "w2"])
    once = fold_all(base, events)
    shuffled = events + events
    rnd.shuffle(shuffled)
    assert fold_all(base, shuffled) == once


def test_a_success_is_not_undone_by_a_late_retrying_report() -> None:
    run = run_of(RunMode.EACH, ["w0"])
    ok = completion(instance="w0", attempt=2, outcome=Outcome.SUCCEEDED)
    retry = completion(instance="w0", attempt=1, outcome=Outcome.FAILED, will_retry=True)
    assert fold_all(run, [ok, retry]).targets["w0"].state is TargetState.SUCCEEDED
    assert fold_all(run, [retry, ok]).targets["w0"].state is TargetState.SUCCEEDED


baseline_events = st.lists(
    st.tuples(
        st.sampled_from(["incA", "incB"]), st.integers(0, 2), st.booleans(), st.integers(0, 50)
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=500)
@given(baseline_events, st.randoms())
def test_baseline_steps_fold_order_free(raw, rnd) -> None:  # type: ignore[no-untyped-def]
    events = [
        completion(
            instance="w0",
            incarnation=inc,
            step=s,
            steps_total=3,
            outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED,
            finished_at=NOW + timedelta(seconds=t + (100 if inc == "incB" else 0)),
        )
        for inc, s, ok, t in raw
    ]
    base = run_of(RunMode.BASELINE, [])
    once = fold_all(base, events)
    again = events + events
    rnd.shuffle(again)
    assert fold_all(base, again) == once


def test_a_reimaged_instance_starts_its_baseline_over() -> None:
    run = run_of(RunMode.BASELINE, [])
    old = [
        completion(
            instance="w0",
            incarnation="A",
            step=i,
            steps_total=2,
            finished_at=NOW + timedelta(seconds=i),
        )
        for i in range(2)
    ]
    run = fold_all(run, old)
    assert run.targets["w0"].state is TargetState.SUCCEEDED
    new = completion(
        instance="w0",
        incarnation="B",
        step=0,
        steps_total=2,
        finished_at=NOW + timedelta(seconds=10),
    )
    run = fold_completion(run, new)
    assert run.targets["w0"].state is TargetState.QUEUED, "1 of 2 steps in the new incarnation"
    assert fold_all(run, old) == run, "late reports of the old incarnation are ignored"


def test_rate_control_plans_within_concurrency_and_stops_after_errors() -> None:
    run = run_of(RunMode.EACH, [], max_concurrency=2, max_errors=1, template=job())
    run = run.model_copy(
        update={"targets": {f"w{i}": TargetResult(target=f"w{i}") for i in range(5)}}
    )
    keys, stop = plan(run)
    assert (keys, stop) == (["w0", "w1"], None)
    run = dispatched(run, keys)
    assert plan(run) == ([], None)
    run = fold_completion(run, completion(instance="w0", outcome=Outcome.FAILED))
    keys, stop = plan(run)
    assert keys == ["w2"], "one error is within max errors 1"
    run = dispatched(run, keys)
    run = fold_completion(run, completion(instance="w1", outcome=Outcome.FAILED))
    keys, stop = plan(run)
    assert keys == [] and stop is not None
    run = dispatched(run, keys, stop)
    assert [run.targets[f"w{i}"].state for i in (3, 4)] == [TargetState.NOT_DISPATCHED] * 2


def started(instance: str, attempt: int, at: int) -> Started:
    return Started(job_id=f"r1.{instance}", run_id="r1", instance=instance, incarnation="i",
                   attempt=attempt, started_at=NOW + timedelta(seconds=at))  # fmt: skip


@settings(max_examples=300)
@given(attempt_events, st.lists(st.tuples(st.sampled_from(["w0", "w1", "w2"]),
                                          st.integers(1, 3)), max_size=6),
       st.randoms(), st.integers(1, 4))  # fmt: skip
def test_results_fold_the_same_however_they_are_split_into_documents(
    raw,
    notes,
    rnd,
    parts,  # type: ignore[no-untyped-def]
) -> None:
    """Result documents may be written per round, compacted, overlap or be read twice: the
    view of the run is the same (controller/results.py relies on it)."""
    events = to_completions(raw)
    starts = [started(i, a, a - 1) for i, a in notes]
    base = run_of(RunMode.EACH, ["w0", "w1", "w2"])
    one = assemble(base, base.targets, [ResultsDelta(run_id="r1", completions=events,
                                                     started=starts)])  # fmt: skip
    shuffled = events + events[: len(events) // 2]
    rnd.shuffle(shuffled)
    deltas = [
        ResultsDelta(run_id="r1", completions=shuffled[k::parts], started=starts[k::parts])
        for k in range(parts)
    ]
    rnd.shuffle(deltas)
    assert assemble(base, base.targets, deltas) == one


def test_a_started_note_shows_running_until_the_report_of_that_attempt() -> None:
    run = run_of(RunMode.EACH, ["w0"])
    run = fold_completion(run, started("w0", 1, 0))
    assert run.targets["w0"].state is TargetState.RUNNING and run.targets["w0"].instance == "w0"
    retry = completion(instance="w0", attempt=1, outcome=Outcome.FAILED, will_retry=True,
                       finished_at=NOW + timedelta(seconds=5))  # fmt: skip
    assert fold_completion(run, retry).targets["w0"].state is TargetState.RETRYING
    late = fold_completion(fold_completion(run, retry), started("w0", 1, 0))
    assert late.targets["w0"].state is TargetState.RETRYING, "a late note changes nothing"
    again = fold_completion(fold_completion(run, retry), started("w0", 2, 6))
    assert again.targets["w0"].state is TargetState.RUNNING, "the next attempt started"


def test_limits_parse_numbers_and_percentages() -> None:
    assert parse_limit("3", 10) == 3
    assert parse_limit("25%", 10) == 2
    assert parse_limit("1%", 10) == 1
    assert parse_limit(None, 10) is None
