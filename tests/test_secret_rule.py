"""One secret rule: the policy refuses, redaction hides and the CLI never prints the same names and values."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import CliResult

from statestore import MemoryBackend, SecretPolicyError, Settings, StateType, Store
from statestore.cli import effective_config
from statestore.cli.render import _setting
from statestore.codec.secrets import REDACTED, find_raw_secrets, is_secret_key, is_secret_text, redact

C = StateType.CREDENTIALS
SECRET = "Sentinel-Secret-Zq81x"

SECRET_NAMES = [
    *["passphrase", "ssh_passphrase", "pwd", "PWD", "db_pwd", "oldPwd", "bearer", "bearerAuth", "cookie"],
    *["Set-Cookie", "session_cookie", "session_key", "sessionKey", "session_token", "private_key", "client_secret"],
    *["credentials", "aws_credentials", "Authorization", "encryption_key", "encryption_old_keys", "ssh_key"],
    "db_pass",
    # the names the rule caught before
    *["password", "PASSWORD", "dbPassword", "db-passwd", "clientSecret", "secret_access_key", "X-Api-Key", "apikey"],
    *["APIKey", "apiKey", "privateKey", "private key", "access_key", "refresh_token", "tokens", "Client-Secret"],
    "db_passwd",
    # names the rule missed in the second review
    *["jwt", "id_jwt", "signedJwt", "passcode", "user_passcode", "otp_seed", "totpSeed", "mfa_key", "ssh_private"],
    *["private", "AccountKey", "SharedAccessKey", "aws_secret_access_key", "SharedAccessSignature", "sig"],
]
NOT_SECRET_NAMES = [
    *["forward", "pwd_ref", "password_ref", "passwordRef", "client_secret_ref", "credentials_ref", "credential_id"],
    *["credential_type", "secret_name", "token_url", "token_type", "token_endpoint", "bearer_format"],
    *["cookie_domain", "session_key_id", "public_key", "ssh_public_key", "primary_key", "partition_key", "key"],
    *["pass_rate", "passenger", "username", "host", "access_key_id"],
    # ordinary names next to the new ones
    *["jwt_issuer", "jwt_audience", "jwt_algorithm", "random_seed", "seed", "private_ip", "private_subnet"],
    *["SharedAccessKeyName", "AccountName", "aws_access_key_id", "signature_version", "design"],
]
# (value, what redaction must hide)
SECRET_TEXTS = [
    ("postgres://app:pa55@db.example.com:5432/main", "pa55"),
    ("postgresql://app:pa55@db/main?sslmode=require", "pa55"),
    ("mysql://root:pa55@127.0.0.1:3306/app", "pa55"),
    ("mongodb+srv://app:pa%40ss@cluster0.example.net/db?retryWrites=true", "pa%40ss"),
    ("redis://:pa55@cache:6379/0", "pa55"),
    ("rediss://default:pa55@cache:6380", "pa55"),
    ("amqp://guest:pa55@rabbit:5672/vhost", "pa55"),
    ("https://deploy:pa55@git.example.com/repo.git", "pa55"),
    ("postgres://app:p@55@db/main", "p@55"),  # an unescaped "@" in the password
    ("jdbc:postgresql://db:5432/main?user=app&password=pa55", "pa55"),
    ("host=db user=app password=pa55 dbname=main", "pa55"),
    ("Server=db;Database=main;User Id=app;Password=pa55;", "pa55"),
    ("Driver={ODBC};Server=db;PWD={pa 55;x};", "pa 55;x"),
    ("https://api.example.com/v1?api_key=pa55", "pa55"),
    ("https://example.com/cb?access_token=pa55&x=1", "pa55"),
    # formats the rule missed in the second review
    ("postgres://app:ab/cd+ef@db/main", "ab/cd+ef"),  # a "/" in the password
    ("mysql://root:a/b@127.0.0.1:3306/app", "a/b"),
    ("pass=hunter2", "hunter2"),
    ("host=db user=app pass=hunter2", "hunter2"),
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=pa55+K3y/x==;EndpointSuffix=core.windows.net",
        "pa55+K3y/x==",
    ),
    (
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=pa55=",
        "pa55=",
    ),
    ("BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig=pa55%3D", "pa55%3D"),
    (
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = pa55/K7MDENG+bPxRfiCY\n",
        "pa55/K7MDENG+bPxRfiCY",
    ),
    ("aws_session_token=pa55Session//Token", "pa55Session//Token"),
    ("spring.datasource.password=pa55", "pa55"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpa55AIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n", "MIIEpa55AIBAAKCAQEA"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEpa55\n-----END OPENSSH PRIVATE KEY-----", "pa55"),
    ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwYTU1In0.pa55SignatureXyz", "eyJzdWIiOiJwYTU1In0"),
]
NOT_SECRET_TEXTS = [
    *["postgres://app@db/main", "postgres://app:@db/main", "https://db.example.com:5432/main", "forward=1"],
    *["https://registry.example.com:443/@scope/pkg", "password=", "a sentence about passwords"],
    "user:pass@host",  # not a URL
    # ordinary data next to the new formats
    *["https://example.com:8080/users/@me", "http://[::1]:8080/@x", "ssh://git@github.com:org/repo.git"],
    *["AccountName=acct;EndpointSuffix=core.windows.net", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE"],
    *["SharedAccessKeyName=RootManageSharedAccessKey", "password=''", "x = 5", "?page=2&sort=name&pass_rate=3"],
    *["-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----\nMIIB"],
    *["see https://a:b/c and mail me@x", "eyJhbGciOi is only the start of a token"],
]


@pytest.mark.parametrize("name", SECRET_NAMES)
async def test_secret_names_are_refused_by_the_policy_and_redacted(name: str) -> None:
    assert is_secret_key(name)
    store = Store(MemoryBackend(), app_name="app")  # no key: the default policy refuses raw secrets
    await store.save_state_object("c", {"host": "db"}, C)
    for call, path in (
        (store.save_state(name, SECRET, "c", C), name),
        (store.save_state_object("c", {"auth": {name: SECRET}}, C), f"auth.{name}"),
        (store.replace_state("c", C, {"list": [{name: [SECRET]}]}), f"list[0].{name}[0]"),
        (store.update_state("c", C, lambda s: {**s, name: SECRET}), name),
    ):
        with pytest.raises(SecretPolicyError, match=re.escape(f"credentials state 'c': {path!r} would")) as info:
            await call
        assert SECRET not in str(info.value)
    assert await store.get_state("c", C) == {"host": "db"}
    shown = redact({name: SECRET, "nested": {name: {"value": SECRET, "n": 1234}}, "host": "db"})
    assert shown == {name: REDACTED, "nested": {name: {"value": REDACTED, "n": REDACTED}}, "host": "db"}


@pytest.mark.parametrize("name", NOT_SECRET_NAMES)
async def test_references_and_ordinary_names_are_not_secrets(name: str) -> None:
    assert not is_secret_key(name)
    store = Store(MemoryBackend(), app_name="app")
    assert await store.save_state_object("c", {name: "vault:db-password"}, C) == {name: "vault:db-password"}
    assert redact({name: "vault:db-password"}) == {name: "vault:db-password"}


@pytest.mark.parametrize(("text", "hidden"), SECRET_TEXTS)
async def test_connection_strings_with_a_password_are_secrets_whatever_their_key(text: str, hidden: str) -> None:
    assert is_secret_text(text)
    state: dict[str, Any] = {"dsn": text, "database_url": [text], "notes": {"x": text}}
    assert find_raw_secrets(state) == ["dsn", "database_url[0]", "notes.x"]
    store = Store(MemoryBackend(), app_name="app")
    with pytest.raises(SecretPolicyError) as info:
        await store.save_state_object("c", state, C)
    assert hidden not in str(info.value)
    assert await store.get_state("c", C) == {}
    shown = redact(state)
    assert hidden not in orjson.dumps(shown).decode()
    assert REDACTED in shown["dsn"]


@pytest.mark.parametrize("text", NOT_SECRET_TEXTS)
def test_urls_and_texts_without_a_password_are_not_secrets(text: str) -> None:
    assert not is_secret_text(text)
    assert find_raw_secrets({"url": text, "note": text}) == []
    assert redact({"url": text}) == {"url": text}


def test_urls_keep_their_host_when_redacted() -> None:
    assert redact({"dsn": "postgres://app:pa55@db.example.com/main"}) == {
        "dsn": f"postgres://app:{REDACTED}@db.example.com/main"
    }


def test_reference_keys_no_longer_hide_secrets_below_them() -> None:
    state = {"password_ref": {"password": SECRET}, "secret_store": {"dsn": "redis://:pa55@cache"}}
    assert find_raw_secrets(state) == ["password_ref.password", "secret_store.dsn"]
    assert find_raw_secrets({"password": {"ref": "vault:db"}}) == []


def test_config_settings_use_the_same_rule() -> None:
    assert _setting("encryption_key", b"\x01" * 32) == "<set>"
    assert _setting("encryption_old_keys", ("a",)) == "<1 set>"
    assert _setting("secret_policy", "refuse") == "refuse"
    assert _setting("require_encryption", True) is True
    assert _setting("s3_sse_kms_key_id", "alias/statestore") == "alias/statestore"  # an id, not a key
    assert _setting("s3_prefix", "tenants/x?token=pa55") == f"tenants/x?token={REDACTED}"
    shown = effective_config(Settings(backend="memory", s3_prefix="postgres://u:pa55@h/db"), Store(MemoryBackend()), {})
    assert "pa55" not in orjson.dumps(shown).decode()


# -- the command, in this process ----------------------------------------------------------


def test_cli_get_and_config_print_no_secret(tmp_path: Path, cli_run: Callable[..., CliResult]) -> None:
    path = tmp_path / "root/persistent-artifacts/apps/default/credentials/db/config.json"
    path.parent.mkdir(parents=True)
    stored = {name: f"{SECRET}-{i}" for i, name in enumerate(SECRET_NAMES)}
    stored.update({f"dsn{i}": text for i, (text, _) in enumerate(SECRET_TEXTS)})
    stored["password_ref"] = "vault:db"
    path.write_bytes(orjson.dumps(stored))
    env = {"STATESTORE_S3_PREFIX": "x?password=pa55-prefix"}

    def run_ok(*args: str) -> str:
        done = cli_run("--root", "root", *args, env=env)
        assert done.code == 0, done.err
        return done.out

    for args in (["get", "db", "--type", "credentials"], ["--json", "get", "db", "--type", "credentials"]):
        out = run_ok(*args)
        assert SECRET not in out
        for _, hidden in SECRET_TEXTS:
            assert hidden not in out
        assert orjson.loads(out)["password_ref"] == "vault:db"
    assert orjson.loads(run_ok("get", "db", "--type", "credentials", "--show-secrets")) == stored

    config = run_ok("config")
    assert "pa55-prefix" not in config and f"settings.s3_prefix: x?password={REDACTED}" in config
