"""Ids never leave their ``<type>/<id>/`` slot; StateType and build_state_store_path behave as documented."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statestore import (
    InvalidInputError,
    InvalidStateTypeError,
    PathTraversalError,
    StateType,
    build_state_store_path,
    validate_id,
)
from statestore.testing import local_store

CLASSIC_TRAVERSALS = [
    "../../../etc/passwd",
    "../" * 50,
    "/etc/passwd",
    "..\\..\\x",
    "foo/../bar",
    "..",
    ".",
    "../credentials/x",
    "../../other-app/workflows/x",
    "a/b",
    "a\\b",
    "a\x00b",
    "line\nbreak",
    "tab\there",
    "bell\x07",
    "del\x7f",
    "sep\u2028x",
]
ACCEPTED = [
    "workflow-abc-123",
    "wf-123",
    "cred-database-123",
    "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "a.b.c",
    "under_score",
    "colon:ns:1",
    "ünïcødé-名前",
    "...",
    ".hidden",
    "x" * 255,
]


@pytest.mark.parametrize("bad", CLASSIC_TRAVERSALS)
async def test_traversal_ids_are_refused_before_any_io(bad: str, tmp_path: Path) -> None:
    with pytest.raises(PathTraversalError) as info:
        validate_id(bad)
    assert isinstance(info.value, ValueError)
    with pytest.raises(PathTraversalError):
        build_state_store_path(bad, StateType.WORKFLOWS, root=str(tmp_path))
    store = local_store(tmp_path / "root")
    for call in (
        store.get_state(bad, StateType.WORKFLOWS),
        store.save_state("k", 1, bad, StateType.WORKFLOWS),
        store.save_state_object(bad, {"k": 1}, StateType.CREDENTIALS),
        store.update_state(bad, StateType.WORKFLOWS, lambda s: s),
        store.delete_state(bad, StateType.WORKFLOWS),
    ):
        with pytest.raises(PathTraversalError):
            await call
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [("", "empty"), ("x" * 256, "at most 255"), ("é" * 128, "at most 255"), (123, "string"), (None, "string")],
)
def test_empty_long_and_non_string_ids(bad: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_id(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ACCEPTED)
def test_accepted_ids(good: str, tmp_path: Path) -> None:
    assert validate_id(good) == good
    path = build_state_store_path(good, StateType.CREDENTIALS, root=str(tmp_path), app_name="app")
    assert path == os.path.join(str(tmp_path), "persistent-artifacts/apps/app/credentials", good, "config.json")


def _slot(root: Path, type_: StateType) -> Path:
    return (root / "persistent-artifacts" / "apps" / "app" / type_.value).resolve()


@settings(max_examples=400, deadline=None)
@given(st.text(min_size=0, max_size=80), st.sampled_from(list(StateType)))
def test_no_accepted_id_leaves_its_slot(candidate: str, type_: StateType) -> None:
    root = Path("/srv/statestore-root")
    try:
        path = build_state_store_path(candidate, type_, root=str(root), app_name="app")
    except InvalidInputError:
        return
    resolved = Path(os.path.normpath(path))
    assert resolved.parent.parent == _slot(root, type_)
    assert resolved.parent.name == candidate
    assert resolved.name == "config.json"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("./\\\x00a."), max_size=12))
def test_dot_and_separator_soup(candidate: str) -> None:
    try:
        validate_id(candidate)
    except InvalidInputError:
        return
    assert "/" not in candidate and "\\" not in candidate and "\x00" not in candidate
    assert candidate not in ("", ".", "..")


def test_state_type_values_and_membership() -> None:
    assert StateType.WORKFLOWS.value == "workflows"
    assert StateType.CREDENTIALS.value == "credentials"
    assert StateType.is_member("workflows") is True
    assert StateType.is_member("credentials") is True
    for bad in ("WORKFLOWS", "", "invalid", "Workflows", " workflows"):
        assert StateType.is_member(bad) is False
    assert StateType.is_member(None) is False  # type: ignore[arg-type]


async def test_api_accepts_string_types_and_refuses_others(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    await store.save_state("k", 1, "wf", "workflows")
    assert await store.get_state("wf", StateType.WORKFLOWS) == {"k": 1}
    for bad in ("WORKFLOWS", "invalid", "", 3, None):
        with pytest.raises(InvalidStateTypeError, match="unknown state type") as info:
            await store.get_state("wf", bad)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidStateTypeError):
        build_state_store_path("wf", "nope")


def test_path_root_and_app_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STATESTORE_APP_NAME", "ATLAN_APPLICATION_NAME", "STATESTORE_LOCAL_ROOT", "ATLAN_TEMPORARY_PATH"):
        monkeypatch.delenv(name, raising=False)
    key = "workflows/workflow-123/config.json"
    assert build_state_store_path("workflow-123", StateType.WORKFLOWS) == (
        f"./local/tmp/persistent-artifacts/apps/default/{key}"
    )
    monkeypatch.setenv("ATLAN_APPLICATION_NAME", "atlan-app")
    monkeypatch.setenv("ATLAN_TEMPORARY_PATH", "/var/atlan/")
    assert (
        build_state_store_path("workflow-123", "workflows") == f"/var/atlan/persistent-artifacts/apps/atlan-app/{key}"
    )
    monkeypatch.setenv("STATESTORE_APP_NAME", "mine")
    monkeypatch.setenv("STATESTORE_LOCAL_ROOT", "/data/s")
    assert build_state_store_path("workflow-123", "workflows") == f"/data/s/persistent-artifacts/apps/mine/{key}"
    monkeypatch.setenv("STATESTORE_APP_NAME", "../evil")
    with pytest.raises(PathTraversalError):
        build_state_store_path("workflow-123", "workflows")
