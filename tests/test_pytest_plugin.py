"""The pytest plugin, run for real: pytester starts pytest in a subprocess on small test projects.

Each run checks at once (a run costs 1-2 s) that the fixtures pass, are isolated, restore the previous default
(also after a failing test), that the S3 one talks HTTP to moto, no client session is left open, and the README's
example passes on every fixture.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from statestore import MemoryBackend, StateStoreError, Store, set_default_store
from statestore.api import get_default_store
from statestore.testing import MotoServer, close_store, install_default_store, memory_store

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The project's conftest: a sentinel default store that every fixture must restore, and a
# recorder of asyncio's error log, where aiohttp reports an "Unclosed client session".
CONFTEST = """
from __future__ import annotations

import gc
import logging
from pathlib import Path

from statestore import set_default_store
from statestore.testing import memory_store

set_default_store(memory_store(app_name="sentinel"))

ASYNCIO_LOG = Path(__file__).with_name("asyncio-errors.log")


class _Recorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        with ASYNCIO_LOG.open("a") as f:
            f.write(record.getMessage() + "\\n")


logging.getLogger("asyncio").addHandler(_Recorder(logging.ERROR))


def pytest_unconfigure(config: object) -> None:
    gc.collect()
"""

# Runs in file order. Each "fails" test fails on purpose; the test after it checks the restore.
INNER_TESTS = """
from __future__ import annotations

import asyncio
import json
import os
import re

import aiohttp
import pytest

from statestore import LocalBackend, MemoryBackend, StateStore, StateType, build_store
from statestore.api import get_default_store

WF = StateType.WORKFLOWS
SEEN = []  # (server, bucket) of each s3 test


def assert_sentinel_default():
    assert get_default_store().app_name == "sentinel"


def test_sentinel_before_any_fixture():
    assert_sentinel_default()


# -- memory ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_writes(statestore_memory):
    assert get_default_store() is statestore_memory
    assert isinstance(statestore_memory.backend, MemoryBackend)
    await StateStore.save_state("k", "memory", "wf-1", WF)
    assert await statestore_memory.get_state("wf-1", WF) == {"k": "memory"}
    assert os.environ["STATESTORE_BACKEND"] == "memory"


@pytest.mark.asyncio
async def test_memory_isolated(statestore_memory):
    assert await StateStore.get_state("wf-1", WF) == {}


@pytest.mark.asyncio
async def test_memory_fails(statestore_memory):
    await StateStore.save_state("k", "lost", "wf-1", WF)
    raise AssertionError("deliberate failure in a memory test")


def test_memory_restored_after_failure():
    assert_sentinel_default()


def test_memory_sync_test(statestore_memory):
    asyncio.run(StateStore.save_state("k", 1, "wf-1", WF))
    assert asyncio.run(StateStore.get_state("wf-1", WF)) == {"k": 1}


# -- local ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_local_writes(statestore_local, tmp_path):
    assert get_default_store() is statestore_local
    assert isinstance(statestore_local.backend, LocalBackend)
    assert statestore_local.backend.root == tmp_path / "statestore"
    await StateStore.save_state("k", "local", "wf-1", WF)
    path = tmp_path / "statestore/persistent-artifacts/apps/default/workflows/wf-1/config.json"
    assert json.loads(path.read_bytes()) == {"k": "local"}
    from_env = build_store()  # code that builds its own store from the environment sees the same state
    assert await from_env.get_state("wf-1", WF) == {"k": "local"}


@pytest.mark.asyncio
async def test_local_isolated(statestore_local):
    assert await StateStore.get_state("wf-1", WF) == {}
    assert await statestore_local.list_states(WF) == []


@pytest.mark.asyncio
async def test_local_fails(statestore_local):
    await StateStore.save_state("k", "lost", "wf-1", WF)
    raise AssertionError("deliberate failure in a local test")


def test_local_restored_after_failure():
    assert_sentinel_default()


# -- s3 -------------------------------------------------------------------------


def raw_object(server, bucket, key):
    client = server.client()
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    finally:
        client.close()


@pytest.mark.asyncio
async def test_s3_writes_over_http(statestore_s3, statestore_moto_server):
    assert get_default_store() is statestore_s3
    backend = statestore_s3.backend
    assert type(backend).__name__ == "S3Backend"
    assert re.fullmatch(r"http://127\\.0\\.0\\.1:[1-9][0-9]*", backend.endpoint_url)
    assert backend.endpoint_url == statestore_moto_server.endpoint_url
    SEEN.append((statestore_moto_server.endpoint_url, backend.bucket))
    await StateStore.save_state("k", "s3", "wf-1", WF)
    key = "persistent-artifacts/apps/default/workflows/wf-1/config.json"
    assert json.loads(raw_object(statestore_moto_server, backend.bucket, key)) == {"k": "s3"}
    from_env = build_store()  # code that builds its own store from the environment sees the same state
    try:
        assert await from_env.get_state("wf-1", WF) == {"k": "s3"}
    finally:
        await from_env.aclose()


@pytest.mark.asyncio
async def test_s3_isolated(statestore_s3, statestore_moto_server):
    assert await StateStore.get_state("wf-1", WF) == {}
    SEEN.append((statestore_moto_server.endpoint_url, statestore_s3.backend.bucket))


@pytest.mark.asyncio
async def test_s3_fails(statestore_s3):
    await StateStore.save_state("k", "lost", "wf-1", WF)
    raise AssertionError("deliberate failure in an s3 test")


def test_s3_restored_after_failure():
    assert_sentinel_default()


def test_s3_sync_test_with_two_event_loops(statestore_s3, statestore_moto_server):
    asyncio.run(StateStore.save_state("k", 1, "wf-1", WF))
    assert asyncio.run(StateStore.get_state("wf-1", WF)) == {"k": 1}
    SEEN.append((statestore_moto_server.endpoint_url, statestore_s3.backend.bucket))


@pytest.mark.asyncio(loop_scope="session")
async def test_s3_on_a_session_event_loop(statestore_s3):
    await StateStore.save_state("k", 2, "wf-1", WF)
    assert await StateStore.get_state("wf-1", WF) == {"k": 2}


def test_s3_one_server_fresh_buckets():
    servers, buckets = zip(*SEEN)
    assert len(SEEN) == 3 and len(set(servers)) == 1 and len(set(buckets)) == 3
    assert_sentinel_default()


# -- the leak detector works: this one session is left open on purpose --------


@pytest.mark.asyncio
async def test_control_leaks_one_client_session():
    aiohttp.ClientSession()
"""

# A module that overrides statestore_options.
INNER_OPTIONS = """
from __future__ import annotations

import os

import pytest

from statestore import StateStore, StateType


@pytest.fixture
def statestore_options():
    return {"app_name": "custom-app"}


@pytest.mark.asyncio
async def test_options_reach_the_store(statestore_local, tmp_path):
    assert statestore_local.app_name == "custom-app"
    assert os.environ["STATESTORE_APP_NAME"] == "custom-app"
    await StateStore.save_state("k", 1, "wf-1", StateType.WORKFLOWS)
    assert (tmp_path / "statestore/persistent-artifacts/apps/custom-app/workflows/wf-1/config.json").exists()
"""

# Loaded with -p before any plugin: moto cannot be imported in this run.
BLOCK_MOTO = """
import sys


class _BlockMoto:
    def find_spec(self, name, path=None, target=None):
        if name == "moto" or name.startswith("moto."):
            raise ImportError(f"No module named {name!r} (blocked for this test)")
        return None


sys.meta_path.insert(0, _BlockMoto())
for name in [n for n in sys.modules if n == "moto" or n.startswith("moto.")]:
    del sys.modules[name]
"""

INNER_NO_MOTO = """
import sys

import pytest

from statestore import StateStore, StateType


@pytest.mark.asyncio
async def test_memory_works_without_moto(statestore_memory):
    await StateStore.save_state("k", 1, "wf-1", StateType.WORKFLOWS)
    assert "moto" not in sys.modules and "statestore.testing.plugin" in sys.modules


def test_s3_needs_moto(statestore_s3):
    raise AssertionError("must not run without moto")
"""

TESTING_MD = EXAMPLES.parent / "docs" / "testing.md"


def documented_ini() -> str:
    """The pytest configuration docs/testing.md gives a project, with ``{mode}`` for its asyncio mode."""
    blocks = re.findall(r"```ini\n(.*?)```", TESTING_MD.read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if "asyncio_mode = auto" in b]
    return block.replace("asyncio_mode = auto", "asyncio_mode = {mode}")


INI = documented_ini()


def _unclosed(pytester: pytest.Pytester, result: pytest.RunResult) -> list[str]:
    """Every "Unclosed ..." report of the run: asyncio's error log and the process output."""
    log = pytester.path / "asyncio-errors.log"
    lines = log.read_text().splitlines() if log.exists() else []
    lines += [line for line in result.outlines + result.errlines if "Unclosed" in line]
    return [line for line in lines if "Unclosed" in line]


@pytest.mark.parametrize("mode", ["strict", "auto"])
@pytest.mark.slow  # pytester: a pytest run in a subprocess
def test_fixtures_in_pytest_asyncio_mode(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(INI.format(mode=mode))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_inner=INNER_TESTS,
        test_options=INNER_OPTIONS,
        checkpoint_activity=(EXAMPLES / "checkpoint_activity.py").read_text(),
        test_checkpoint_activity=(EXAMPLES / "test_checkpoint_activity.py").read_text(),
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rfE")
    out = result.stdout.str()
    # the plugin came through the pytest11 entry point of the installed package
    assert re.search(r"^plugins:.*\bstatestore-", out, re.MULTILINE), out
    result.assert_outcomes(passed=22, failed=3)
    assert "is unset" not in out + result.stderr.str(), out  # the documented configuration is complete
    failed = sorted(re.findall(r"^FAILED \S+::(\w+)", out, re.MULTILINE))
    assert failed == ["test_local_fails", "test_memory_fails", "test_s3_fails"], out
    # the control test leaked one aiohttp session; the fixtures none
    unclosed = _unclosed(pytester, result)
    assert len([line for line in unclosed if "Unclosed client session" in line]) == 1, unclosed
    assert all("Unclosed client session" in line for line in unclosed), unclosed


@pytest.mark.parametrize(
    ("ini", "outcome"),
    [("", {"passed": 1, "skipped": 1}), ("statestore_missing_moto = error\n", {"passed": 1, "errors": 1})],
)
@pytest.mark.slow  # pytester: a pytest run in a subprocess
def test_s3_fixture_without_moto_names_the_extra(pytester: pytest.Pytester, ini: str, outcome: dict[str, int]) -> None:
    pytester.makeini(INI.format(mode="strict") + ini)
    pytester.makepyfile(block_moto=BLOCK_MOTO, test_no_moto=INNER_NO_MOTO)
    result = pytester.runpytest_subprocess("-p", "block_moto", "-p", "no:cacheprovider", "-rsE")
    result.assert_outcomes(**outcome)
    out = result.stdout.str()
    assert "statestore_s3 needs moto[server]: pip install 'moto[server]' (statestore's test extra has it)" in out, out
    assert "ImportError" not in out and "Traceback" not in out, out


def test_plugin_module_imports_without_moto(tmp_path: Path) -> None:
    (tmp_path / "block_moto.py").write_text(BLOCK_MOTO)
    code = "import block_moto, sys, statestore.testing.plugin, statestore.testing; assert 'moto' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)


class _ClosingBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def test_install_default_store_restores_and_closes_also_on_error() -> None:
    sentinel = memory_store(app_name="sentinel")
    backend = _ClosingBackend()
    store = Store(backend)
    previous = set_default_store(sentinel)
    try:
        with pytest.raises(KeyError), install_default_store(store) as installed:
            assert installed is store and get_default_store() is store
            raise KeyError("test failed")
        assert get_default_store() is sentinel
        assert backend.closed == 1
        with install_default_store(store, close=False):
            pass
        assert backend.closed == 1 and get_default_store() is sentinel
    finally:
        set_default_store(previous)


async def test_close_store_inside_a_running_loop_is_a_typed_error() -> None:
    backend = _ClosingBackend()
    with pytest.raises(StateStoreError, match=r"await store\.aclose\(\)"):
        close_store(Store(backend))
    assert backend.closed == 0


def test_moto_server_conditional_writes_are_atomic(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers holding one ETag race: exactly one wins each round, even with a wide gap between check and store.

    moto checks If-Match in its request handler and stores in its backend; without the server's write lock two
    writers would both win in the gap the sleep widens.
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    from botocore.exceptions import ClientError
    from moto.s3.models import S3Backend as MotoS3Backend

    store_object = MotoS3Backend.put_object

    def slow_store(self: object, *args: object, **kwargs: object) -> object:
        time.sleep(0.02)
        return store_object(self, *args, **kwargs)

    monkeypatch.setattr(MotoS3Backend, "put_object", slow_store)
    bucket = moto_server.create_bucket()
    client = moto_server.client()
    try:
        etag = client.put_object(Bucket=bucket, Key="k", Body=b"start")["ETag"]
        for round_ in range(5):

            def attempt(i: int, etag: str = etag, round_: int = round_) -> str | None:
                body = f"{round_}-{i}".encode()
                try:
                    return str(client.put_object(Bucket=bucket, Key="k", Body=body, IfMatch=etag)["ETag"])
                except ClientError as exc:
                    assert exc.response["Error"]["Code"] == "PreconditionFailed"
                    return None

            with ThreadPoolExecutor(8) as pool:
                winners = [tag for tag in pool.map(attempt, range(8)) if tag is not None]
            assert len(winners) == 1, f"round {round_}: {len(winners)} writers won with the same ETag"
            etag = winners[0]
    finally:
        client.close()
