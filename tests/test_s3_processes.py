"""S3 against real processes: a counter configured from the environment alone, and a server that checks credentials.

Mixed writers contending on one S3 state live in test_s3_contention_and_faults.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import S3Target

from statestore import BackendError, StateType, Store
from statestore.testing import MotoServer

COUNTER_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from statestore import StateStore, StateType

    async def main(increments):
        # configured by STATESTORE_* variables alone, as a user would
        await StateStore.get_state("counter", StateType.WORKFLOWS)  # client open before the start line
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(increments):
            await StateStore.update_state("counter", StateType.WORKFLOWS, lambda s: {"n": s.get("n", 0) + 1})
        print("done", flush=True)

    asyncio.run(main(int(sys.argv[1])))
    """
)


@pytest.mark.s3_server
def test_processes_incrementing_one_counter_end_at_exactly_the_sum(
    s3_target: S3Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """4 processes x 25 ``update_state`` increments of one counter, started together: exactly 100."""
    workers, increments = 4, 25
    location = s3_target.new_location()
    env = {**os.environ, **s3_target.env(location)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTER_WORKER, str(increments)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(workers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        started = time.monotonic()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=240) for p in procs]
        seconds = time.monotonic() - started
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]

    async def read() -> dict[str, Any]:
        async with Store(s3_target.backend(location), app_name="default") as store:
            return await store.get_state("counter", StateType.WORKFLOWS)

    state = asyncio.run(read())
    with capsys.disabled():
        print(f"\n{s3_target.name}: {workers} processes x {increments} increments -> {state} in {seconds:.1f} s")
    assert state == {"n": workers * increments}


AUTH_SERVER = textwrap.dedent(
    """
    import json, logging, sys
    import botocore.session
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    session = botocore.session.get_session()
    kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    iam = session.create_client("iam", **kw)
    iam.create_user(UserName="app")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="app", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="app")["AccessKey"]
    session.create_client("s3", **kw).create_bucket(Bucket="secured")
    # from now on every request must be signed by a known IAM key
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    print(json.dumps({"endpoint": url, "id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}), flush=True)
    sys.stdin.readline()
    server.stop()
    """
)


@pytest.fixture(scope="module")
def auth_server() -> Iterator[dict[str, str]]:
    """A moto server in its own process with IAM authentication switched on (moto's INITIAL_NO_AUTH_ACTION_COUNT)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", AUTH_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **MotoServer.fake_credentials()},
    )
    try:
        assert proc.stdout is not None
        info: dict[str, str] = json.loads(proc.stdout.readline())
        yield info
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _auth_store(info: dict[str, str], key_id: str, secret: str) -> Store:
    from statestore import S3Backend

    options: dict[str, Any] = {"endpoint_url": info["endpoint"], "region": "us-east-1"}
    return Store(S3Backend("secured", aws_access_key_id=key_id, aws_secret_access_key=secret, **options))


@pytest.mark.parametrize(
    ("which", "code"),
    [("secret", "SignatureDoesNotMatch"), ("id", "InvalidAccessKeyId")],
)
async def test_wrong_credentials_are_a_backend_error_and_change_nothing(
    auth_server: dict[str, str], which: str, code: str
) -> None:
    right = _auth_store(auth_server, auth_server["id"], auth_server["secret"])
    wrong_id = "AKIAWRONGWRONGWRONG1" if which == "id" else auth_server["id"]
    wrong_secret = "wrong-secret-" + "x" * 27
    wrong = _auth_store(auth_server, wrong_id, wrong_secret)
    try:
        await right.replace_state(f"w-{which}", StateType.WORKFLOWS, {"a": 1})
        with pytest.raises(BackendError, match=rf"{code} \(HTTP 403\)") as info:
            await wrong.get_state(f"w-{which}", StateType.WORKFLOWS)
        with pytest.raises(BackendError, match=code):
            await wrong.save_state("b", 2, f"w-{which}", StateType.WORKFLOWS)
        with pytest.raises(BackendError, match=code):
            await wrong.list_states(StateType.WORKFLOWS)
        for text in (str(info.value), repr(info.value)):
            assert wrong_secret not in text and auth_server["secret"] not in text and wrong_id not in text
        assert await right.get_state(f"w-{which}", StateType.WORKFLOWS) == {"a": 1}
    finally:
        await right.aclose()
        await wrong.aclose()
