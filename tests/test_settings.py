"""``Settings`` cannot be made invalid: every field is checked on construction, however the object is made."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from statestore import InvalidInputError, PathTraversalError, Settings
from statestore.cli.options import Options

RAW_KEY = bytes(range(32))
KEY = base64.b64encode(RAW_KEY).decode()


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"backend": "ftp"}, "STATESTORE_BACKEND='ftp' is not one of local, memory, s3"),
        ({"backend": "s3"}, "needs a bucket"),
        ({"app_name": "../x"}, "path separator"),
        ({"max_state_bytes": 0}, "STATESTORE_MAX_STATE_BYTES must be positive"),
        ({"cache_size": -1}, "STATESTORE_CACHE_SIZE must be 0 or more"),
        ({"encryption_key": "not-a-key"}, "STATESTORE_ENCRYPTION_KEY is not valid base64"),
        ({"encryption_key": RAW_KEY[:31]}, "STATESTORE_ENCRYPTION_KEY must be 32 bytes"),
        ({"encryption_old_keys": (KEY,)}, "STATESTORE_ENCRYPTION_OLD_KEYS is set but STATESTORE_ENCRYPTION_KEY is not"),
        ({"encryption_key": KEY, "encryption_old_keys": KEY}, "a list of keys"),
        ({"encryption_key": KEY, "encryption_old_keys": (KEY, "x")}, "OLD_KEYS entry #2"),
        ({"secret_policy": "warn"}, "STATESTORE_SECRET_POLICY='warn' is not one of refuse, allow"),
        ({"require_encryption": True}, "STATESTORE_REQUIRE_ENCRYPTION is on but STATESTORE_ENCRYPTION_KEY"),
        ({"s3_sse": "des"}, "STATESTORE_S3_SSE must be AES256 or aws:kms"),
        ({"s3_sse": "AES256", "s3_sse_kms_key_id": "k"}, "needs STATESTORE_S3_SSE=aws:kms"),
        ({"s3_connect_timeout": 0}, "STATESTORE_S3_CONNECT_TIMEOUT must be positive"),
        ({"s3_read_timeout": -1.0}, "STATESTORE_S3_READ_TIMEOUT must be positive"),
        ({"s3_if_match": "single"}, "STATESTORE_S3_IF_MATCH must be one of auto, quoted, unquoted"),
        ({"s3_conditional_delete": "maybe"}, "STATESTORE_S3_CONDITIONAL_DELETE must be auto, true or false"),
        ({"s3_max_attempts": 0}, "STATESTORE_S3_MAX_ATTEMPTS must be at least 1"),
    ],
)
def test_an_invalid_field_is_refused_on_construction(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        Settings(**fields)
    assert KEY not in str(info.value)
    with pytest.raises(InvalidInputError, match=match):
        dataclasses.replace(Settings(), **fields)


def test_keys_are_kept_parsed_and_never_shown() -> None:
    settings = Settings(encryption_key=KEY, encryption_old_keys=[RAW_KEY])
    assert settings.encryption_key == RAW_KEY and settings.encryption_old_keys == (RAW_KEY,)
    assert settings == Settings(encryption_key=RAW_KEY, encryption_old_keys=(KEY,))
    assert KEY not in repr(settings) and repr(RAW_KEY) not in repr(settings)


def test_options_complete_the_environment_before_the_check() -> None:
    """``--bucket`` completes ``STATESTORE_BACKEND=s3``; a bad name is refused whichever side gave it."""
    env = {"STATESTORE_BACKEND": "s3"}
    with pytest.raises(InvalidInputError, match="needs a bucket"):
        Settings.from_env(env)
    assert Settings.from_env(env, bucket="b").bucket == "b"
    assert Settings.from_env({"STATESTORE_BACKEND": "nope"}, backend="memory").backend == "memory"
    with pytest.raises(PathTraversalError):
        Settings.from_env({}, app_name="a/b")


def test_cli_options_are_laid_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE_BACKEND", "s3")
    monkeypatch.delenv("STATESTORE_BUCKET", raising=False)
    settings = Options(overrides={"bucket": "from-option"}).settings()
    assert (settings.backend, settings.bucket) == ("s3", "from-option")


def test_statestore_url_decides_the_backend_and_its_settings() -> None:
    env = {"STATESTORE_BACKEND": "local", "STATESTORE_LOCAL_ROOT": "/srv/x", "STATESTORE_BUCKET": "other"}
    settings = Settings.from_env({**env, "STATESTORE_URL": "s3://b/p?endpoint_url=http://127.0.0.1:9&region=eu-west-1"})
    assert (settings.backend, settings.bucket, settings.s3_prefix) == ("s3", "b", "p")
    assert (settings.s3_endpoint_url, settings.s3_region) == ("http://127.0.0.1:9", "eu-west-1")
    assert Settings.from_env({**env, "STATESTORE_URL": "memory://"}).backend == "memory"
    assert Settings.from_env({"STATESTORE_URL": "file:rel/dir"}).local_root == "rel/dir"
    with pytest.raises(InvalidInputError, match="unknown store URL scheme"):
        Settings.from_env({"STATESTORE_URL": "gs://bucket"})


def test_cache_bytes_comes_from_the_environment_and_is_checked() -> None:
    assert Settings().cache_bytes == 64 * 2**20
    assert Settings.from_env({"STATESTORE_CACHE_BYTES": "1000"}).cache_bytes == 1000
    with pytest.raises(InvalidInputError, match="STATESTORE_CACHE_BYTES must be 0 or more"):
        Settings.from_env({"STATESTORE_CACHE_BYTES": "-1"})
    with pytest.raises(InvalidInputError, match="STATESTORE_CACHE_BYTES must be an integer"):
        Settings.from_env({"STATESTORE_CACHE_BYTES": "64M"})
