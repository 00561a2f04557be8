"""Ids never leave their ``<type>/<id>/`` slot; StateType and build_state_store_path behave as documented."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statestore import InvalidInputError, PathTraversalError, StateType, build_state_store_path
from statestore.core.paths import validate_id
from statestore.errors import InvalidStateTypeError
from statestore.testing import local_store

CLASSIC_TRAVERSALS = [
    *["../../../etc/passwd", "../" * 50, "/etc/passwd", "..\\..\\x", "foo/../bar", "..", ".", "../credentials/x"],
    *["../../other-app/workflows/x", "a/b", "a\\b", "a\x00b", "line\nbreak", "tab\there", "bell\x07", "del\x7f"],
    "sep\u2028x",
]
ACCEPTED = [
    *["workflow-abc-123", "wf-123", "cred-database-123", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "a.b.c"],
    *["under_score", "colon:ns:1", "ünïcødé-名前", "...", ".hidden", "x" * 255],
]


@pytest.mark.parametrize("bad", CLASSIC_TRAVERSALS)
def test_traversal_ids_are_refused(bad: str, tmp_path: Path) -> None:
    """Every store call refuses them too, touching nothing: test_reliability_input.py."""
    with pytest.raises(PathTraversalError) as info:
        validate_id(bad)
    assert isinstance(info.value, ValueError)
    with pytest.raises(PathTraversalError):
        build_state_store_path(bad, StateType.WORKFLOWS, root=str(tmp_path))


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


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(st.text(max_size=80), st.text(alphabet=st.sampled_from("./\\\x00a."), max_size=12)),
    st.sampled_from(list(StateType)),
)
def test_no_accepted_id_leaves_its_slot(candidate: str, type_: StateType) -> None:
    """Any text, and a soup of dots and separators: an accepted id is exactly one directory in its slot."""
    root = Path("/srv/statestore-root")
    try:
        path = build_state_store_path(candidate, type_, root=str(root), app_name="app")
    except InvalidInputError:
        return
    resolved = Path(os.path.normpath(path))
    assert resolved.parent.parent == _slot(root, type_)
    assert resolved.parent.name == candidate and "\\" not in candidate and "\x00" not in candidate
    assert resolved.name == "config.json"


def test_state_type_values_and_membership() -> None:
    assert (StateType.WORKFLOWS.value, StateType.CREDENTIALS.value) == ("workflows", "credentials")
    values = ("workflows", "credentials", "WORKFLOWS", "", "invalid", "Workflows", " workflows", None)
    assert [StateType.is_member(v) for v in values] == [True, True] + [False] * 6  # type: ignore[arg-type]


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
