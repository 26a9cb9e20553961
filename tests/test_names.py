"""Storage names: valid for every input, and two different names never share a queue."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolecall.schemas.errors import InvalidName
from rolecall.schemas.names import MAX_NAMESPACE, Names, name_key

QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")

names = st.text(min_size=1, max_size=120)
realistic = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\- ]{0,40}", fullmatch=True)


@given(st.one_of(names, realistic))
def test_every_name_maps_to_legal_queue_names(raw: str) -> None:
    n = Names("a" * MAX_NAMESPACE)
    for q in (n.role_queue(raw), n.instance_queue(raw)):
        assert QUEUE_NAME.match(q), q
        assert QUEUE_NAME.match(n.poison_queue(q)), q


@settings(max_examples=300)
@given(st.lists(st.one_of(names, realistic), min_size=2, max_size=30, unique=True))
def test_mapping_is_injective(raws: list[str]) -> None:
    keys = [name_key(r) for r in raws]
    assert len(set(keys)) == len(keys)


@given(realistic)
def test_mapping_is_stable(raw: str) -> None:
    assert name_key(raw) == name_key(raw)


def test_clean_names_are_kept_and_others_are_hashed() -> None:
    assert name_key("web-0") == "web-0"
    assert name_key("WebRole_IN_0").startswith("webrole-in-0-h")
    # names that look like a hashed key are hashed again, so the two branches cannot meet
    looks_hashed = name_key("WebRole_IN_0")
    assert name_key(looks_hashed) != looks_hashed


def test_adversarial_near_collisions_differ() -> None:
    raws = ["web_0", "web-0", "WEB-0", "web.0", "web 0", "web--0", "-web-0", "web-0-"]
    assert len({name_key(r) for r in raws}) == len(raws)


def test_role_and_instance_queues_never_meet() -> None:
    n = Names()
    assert n.role_queue("x1") != n.instance_queue("x1")


@pytest.mark.parametrize("bad", ["", "UPPER", "a" * (MAX_NAMESPACE + 1), "a--b", "-a"])
def test_bad_namespace_is_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        Names(bad)


def test_empty_name_is_refused() -> None:
    with pytest.raises(InvalidName):
        name_key("")


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(names, realistic, st.just("a-poison"), st.just("a")),
        min_size=1,
        max_size=20,
        unique=True,
    )
)
def test_every_queue_name_is_distinct_across_kinds(raws: list[str]) -> None:
    """Role, instance, events and all their poison queues never share a name, even when
    a role is called 'x-poison' next to one called 'x'."""
    n = Names()
    queues = [n.events_queue]
    for r in raws:
        queues += [n.role_queue(r), n.instance_queue(r)]
    queues += [n.poison_queue(q) for q in list(queues)]
    assert len(set(queues)) == len(queues)


@given(realistic)
def test_blob_paths_read_back_to_what_built_them(raw: str) -> None:
    """Listings are parsed with the same module that names the blobs."""
    run_id = Names.baseline_run_id(raw, 3)
    assert Names.run_id_of_blob(Names.run_blob(run_id)) == run_id
    assert Names.run_blob(run_id).startswith(Names.runs_prefix())
    assert Names.run_lock_blob(run_id).startswith(Names.runs_prefix())
    assert Names.run_id_of_blob(Names.run_lock_blob(run_id)) is None, "a lock is not a run"
    assert Names.role_key_of_instance_blob(Names.instance_blob(raw, "web-0")) == name_key(raw)
    n = Names()
    for token in (None, "0123456789abcdef" * 2):
        path = Names.log_blob(run_id, "j", raw, 1, token)
        address = Names.blob_address(n.logs_container, path)
        assert Names.split_blob_address(address) == (n.logs_container, path)
        assert Names.is_log_blob(path, run_id, "j", raw, 1)
        assert not Names.is_log_blob(path, run_id, "j", raw, 2), "another attempt's"
    for bad in ("0123456789ABCDEF" * 2, "../x", "a" * 31):
        with pytest.raises(InvalidName):
            Names.log_blob(run_id, "j", raw, 1, bad)
        assert not Names.is_log_blob(f"{run_id}/j/{name_key(raw)}/1.{bad}.log", run_id, "j",
                                     raw, 1)  # fmt: skip
