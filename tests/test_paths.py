"""Ids never leave their ``<type>/<id>/`` slot; StateType and build_state_store_path behave as documented."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statestore import InvalidInputError, PathTraversalError, StateType, build_state_store_path
from statestore.errors import InvalidStateTypeError
from statestore.keys.paths import is_default_ignorable, validate_app_name, validate_id
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
    """Every store call refuses them too, touching nothing: test_bad_input.py."""
    with pytest.raises(PathTraversalError) as info:
        validate_id(bad)
    assert isinstance(info.value, ValueError)
    with pytest.raises(PathTraversalError):
        build_state_store_path(bad, StateType.WORKFLOWS, root=str(tmp_path))


@pytest.mark.parametrize("bad", CLASSIC_TRAVERSALS)
def test_traversal_messages_keep_the_previous_services_phrase(bad: str) -> None:
    """Alerts and tests written against the previous service match ``path traversal detected`` (decision 0060)."""
    for check, what in ((validate_id, "id"), (validate_app_name, "app name")):
        with pytest.raises(PathTraversalError) as info:
            check(bad)
        message = str(info.value)
        assert message.startswith(f"{what} ") and message.endswith(": path traversal detected")


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


# -- names that render as nothing ----------------------------------------------------------------

INVISIBLE = [
    *["admin\u3164", "admin\u115f", "admin\uffa0", "admin\u034f", "admin\ufe0f", "admin\U000e0100", "admin\u2800"],
    *["ad\u00a0min", "ad\u2009min", "ad\u3000min", "ad\u202fmin", "ad\u1160min", "ad\u17b4min", "ad\u180bmin"],
    *["ad\U0001d159min", "ad\u2065min", "ad\U000e01f0min", "ad\U0001bca0min"],
]


@pytest.mark.parametrize("bad", INVISIBLE)
async def test_ids_with_characters_that_render_as_nothing_are_refused(bad: str, tmp_path: Path) -> None:
    for check in (validate_id, validate_app_name):
        with pytest.raises(InvalidInputError, match=f"U\\+{ord(next(c for c in bad if not c.isascii())):04X}"):
            check(bad)
    store = local_store(tmp_path)
    with pytest.raises(InvalidInputError):
        await store.save_state("k", 1, bad, StateType.WORKFLOWS)
    assert not (tmp_path / "persistent-artifacts").exists()


# DerivedCoreProperties.txt of Unicode 14.0 (Python 3.11's unicodedata), Default_Ignorable_Code_Point, verbatim.
DERIVED_DEFAULT_IGNORABLE = """
00AD 034F 061C 115F..1160 17B4..17B5 180B..180D 180E 180F 200B..200F 202A..202E 2060..2064 2065 2066..206F 3164
FE00..FE0F FEFF FFA0 FFF0..FFF8 1BCA0..1BCA3 1D173..1D17A E0000 E0001 E0002..E001F E0020..E007F E0080..E00FF
E0100..E01EF E01F0..E0FFF
"""


@pytest.fixture(scope="module")
def invisible_code_points() -> tuple[set[int], set[int]]:
    """(what ``is_default_ignorable`` says yes to, the non-ASCII Zs and Cf code points), from one pass over Unicode."""
    derived, spaces_and_formats = set(), set()
    for cp in range(0x80, 0x110000):
        ch = chr(cp)
        if is_default_ignorable(ch):
            derived.add(cp)
        if unicodedata.category(ch) in ("Zs", "Cf"):
            spaces_and_formats.add(cp)
    return derived, spaces_and_formats


def test_default_ignorable_is_derived_as_unicode_derives_it(invisible_code_points: tuple[set[int], set[int]]) -> None:
    """Cf from unicodedata plus the embedded contributory lists, minus the exceptions, is the derived table."""
    table: set[int] = set()
    for item in DERIVED_DEFAULT_IGNORABLE.split():
        start, _, end = item.partition("..")
        table.update(range(int(start, 16), int(end or start, 16) + 1))
    assert len(table) == 4174
    derived = invisible_code_points[0]
    assert derived == table, (
        f"Unicode {unicodedata.unidata_version}: update statestore/paths.py and this table from its "
        f"DerivedCoreProperties.txt; differing: {sorted(f'U+{cp:04X}' for cp in derived ^ table)[:20]}"
    )


def test_every_default_ignorable_and_non_ascii_space_is_refused(
    invisible_code_points: tuple[set[int], set[int]],
) -> None:
    derived, spaces_and_formats = invisible_code_points
    for cp in sorted(derived | spaces_and_formats):
        with pytest.raises(InvalidInputError, match=f"U\\+{cp:04X}"):
            validate_id(f"a{chr(cp)}b")
    assert validate_id("a b") == "a b"  # the ASCII space shows
