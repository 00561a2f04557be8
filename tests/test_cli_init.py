"""``statestore init``: creates the configured bucket (or local root) if it is missing, then checks it."""

from __future__ import annotations

import stat
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

from statestore.testing import MotoServer


def s3_env(server: MotoServer, bucket: str) -> dict[str, str]:
    return {
        **server.fake_credentials(),
        "STATESTORE_BACKEND": "s3",
        "STATESTORE_BUCKET": bucket,
        "STATESTORE_S3_ENDPOINT_URL": server.endpoint_url,
    }


def test_init_creates_a_missing_bucket_once_and_checks_it(moto_server: MotoServer, cli_run: Any) -> None:
    bucket = f"init-{uuid.uuid4().hex[:12]}"
    env = s3_env(moto_server, bucket)
    missing = cli_run("get", "wf-1", env=env)
    assert missing.code == 7 and f"the bucket {bucket!r} does not exist" in missing.err
    assert "statestore init" in missing.err
    checked = cli_run("check", env=env)
    assert checked.code == 2 and "statestore init" in checked.out + checked.err
    first = cli_run("init", env=env)
    assert first.code == 0, first
    assert f"bucket {bucket!r} created" in first.out and "verdict: SAFE" in first.out
    again = cli_run("init", env=env)
    assert again.code == 0 and f"bucket {bucket!r} exists" in again.out
    assert cli_run("merge", "wf-1", '{"n": 1}', env=env).code == 0
    history = cli_run("history", "wf-1", env=env)
    assert history.code == 7 and "statestore init --versioning" in history.err
    assert "put-bucket-versioning" in history.err


def test_init_with_versioning_makes_history_work(moto_server: MotoServer, cli_run: Any) -> None:
    bucket = f"init-{uuid.uuid4().hex[:12]}"
    env = s3_env(moto_server, bucket)
    done = cli_run("init", "--versioning", env=env)
    assert done.code == 0, done
    assert "versioning turned on" in done.out
    with closing(moto_server.client()) as s3:
        assert s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    for n in (1, 2):
        assert cli_run("merge", "wf-1", f'{{"n": {n}}}', env=env).code == 0
    history = cli_run("history", "wf-1", env=env)
    assert history.code == 0, history
    assert len([line for line in history.out.splitlines() if line.strip()]) >= 2
    again = cli_run("init", "--versioning", env=env)
    assert again.code == 0 and "versioning is on" in again.out


def test_init_on_obstore_and_json(moto_server: MotoServer, cli_run: Any) -> None:
    bucket = f"init-{uuid.uuid4().hex[:12]}"
    env = {**s3_env(moto_server, bucket), "STATESTORE_S3_CLIENT": "obstore"}
    done = cli_run("--json", "init", env=env)
    assert done.code == 0, done
    assert f"bucket {bucket!r} created" in done.out and '"verdict"' in done.out


def test_init_creates_a_local_root_0700(cli_run: Any, tmp_path: Path) -> None:
    root = tmp_path / "new" / "root"
    done = cli_run("--root", str(root), "init")
    assert done.code == 0, done
    assert "created (mode 0700)" in done.out and "verdict: SAFE" in done.out
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert cli_run("--root", str(root), "init").code == 0
    refused = cli_run("--root", str(root), "init", "--versioning")
    assert refused.code == 7 and "--versioning is for S3 buckets" in refused.err
