# Ported from atlanhq/application-sdk, tests/unit/services/test_statestore_path_traversal.py at commit
# 58e1c22c643b04770a01642edb60555df5c9e0bc (the last commit with application_sdk/services/statestore.py).
# atlan-application-sdk, Copyright 2025 Atlan, Inc. Licensed under the Apache License, Version 2.0
# (http://www.apache.org/licenses/LICENSE-2.0); distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR
# CONDITIONS OF ANY KIND.
# Changed for statestore: the imports name statestore; the patches of that service's internals
# (ObjectStore.get_content / upload_file, TEMPORARY_PATH) are replaced by the statestore_local fixture, whose
# root (a fresh directory) stands for TEMPORARY_PATH and whose app name for "default". Each test keeps its
# name and its claim; two that our stricter ids refuse on purpose are marked xfail (decision 0002).
"""Security tests for path traversal protection in StateStore."""

import os

import pytest

from statestore import (
    PathTraversalError,
    StateStore,
    StateType,
    Store,
    build_state_store_path,
)

pytestmark = pytest.mark.sdk_port

STRICTER_IDS = "decision 0002: an id is one path segment; '/' and '\\' are refused even where the path stays inside"


class TestPathTraversalPrevention:
    """Tests verifying path traversal attacks are blocked."""

    def test_build_state_store_path_blocks_basic_traversal(self) -> None:
        malicious_id = "../../../../../../../tmp/pwned"

        with pytest.raises(PathTraversalError, match="path traversal detected"):
            build_state_store_path(malicious_id, StateType.WORKFLOWS)

    def test_build_state_store_path_blocks_deep_traversal(self) -> None:
        malicious_id = "../" * 50 + "etc/passwd"

        with pytest.raises(PathTraversalError, match="path traversal detected"):
            build_state_store_path(malicious_id, StateType.WORKFLOWS)

    def test_build_state_store_path_blocks_escape_to_tmp(self) -> None:
        malicious_id = "../../../../../../../../../../tmp/malicious"

        with pytest.raises(PathTraversalError, match="path traversal detected"):
            build_state_store_path(malicious_id, StateType.WORKFLOWS)

    def test_build_state_store_path_blocks_escape_to_etc(self) -> None:
        malicious_id = "../../../../../../../../../../etc/passwd"

        with pytest.raises(PathTraversalError, match="path traversal detected"):
            build_state_store_path(malicious_id, StateType.WORKFLOWS)

    @pytest.mark.parametrize(
        "malicious_id",
        [
            "../" * 10 + "tmp/pwned",
            "../" * 20 + "etc/passwd",
            "../../../../../../../../../../var/www/shell.php",
            "../" * 15 + "home/user/.ssh/authorized_keys",
        ],
    )
    def test_various_escaping_payloads_blocked(self, malicious_id: str) -> None:
        with pytest.raises(PathTraversalError):
            build_state_store_path(malicious_id, StateType.WORKFLOWS)


class TestTraversalWithinBoundsAllowed:
    """Tests for traversal sequences that stay within the base directory."""

    @pytest.mark.xfail(raises=PathTraversalError, strict=True, reason=STRICTER_IDS)
    def test_shallow_traversal_stays_in_bounds(self, statestore_local: Store) -> None:
        shallow_id = "foo/../bar"
        path = build_state_store_path(shallow_id, StateType.WORKFLOWS)

        abs_path = os.path.abspath(path)
        base_path = os.path.abspath(statestore_local.backend.root)  # type: ignore[attr-defined]
        assert abs_path.startswith(base_path)

    @pytest.mark.xfail(raises=PathTraversalError, strict=True, reason=STRICTER_IDS)
    def test_windows_backslash_on_unix_is_literal(self) -> None:
        windows_style = "..\\..\\..\\test"
        path = build_state_store_path(windows_style, StateType.WORKFLOWS)

        assert "\\" in path or "test" in path


class TestLegitimatePathsAllowed:
    """Tests verifying legitimate IDs still work correctly."""

    def test_simple_id_allowed(self) -> None:
        path = build_state_store_path("workflow-123", StateType.WORKFLOWS)
        assert "workflow-123" in path
        assert path.endswith("config.json")

    def test_uuid_style_id_allowed(self) -> None:
        path = build_state_store_path("550e8400-e29b-41d4-a716-446655440000", StateType.WORKFLOWS)
        assert "550e8400-e29b-41d4-a716-446655440000" in path

    def test_underscore_id_allowed(self) -> None:
        path = build_state_store_path("my_workflow_id", StateType.WORKFLOWS)
        assert "my_workflow_id" in path

    def test_credentials_type_allowed(self) -> None:
        path = build_state_store_path("db-cred-456", StateType.CREDENTIALS)
        assert "credentials" in path
        assert "db-cred-456" in path

    def test_path_stays_within_base_directory(self, statestore_local: Store) -> None:
        path = build_state_store_path("legitimate-workflow-id", StateType.WORKFLOWS)
        abs_path = os.path.abspath(path)
        base_path = os.path.abspath(statestore_local.backend.root)  # type: ignore[attr-defined]

        assert abs_path.startswith(base_path)


class TestStateStoreMethodsProtected:
    """Tests verifying StateStore methods are protected from path traversal."""

    @pytest.mark.asyncio
    async def test_save_state_object_blocks_traversal(self, statestore_local: Store) -> None:
        malicious_id = "../../../../../../../tmp/pwned"

        with pytest.raises(PathTraversalError, match="path traversal detected"):
            await StateStore.save_state_object(
                id=malicious_id,
                value={"pwned": True},
                type=StateType.WORKFLOWS,
            )

    @pytest.mark.asyncio
    async def test_save_state_blocks_traversal(self, statestore_local: Store) -> None:
        malicious_id = "../../../../../../../tmp/pwned"

        with pytest.raises(PathTraversalError, match="path traversal detected"):
            await StateStore.save_state(
                key="test_key",
                value="test_value",
                id=malicious_id,
                type=StateType.WORKFLOWS,
            )

    @pytest.mark.asyncio
    async def test_get_state_blocks_traversal(self, statestore_local: Store) -> None:
        malicious_id = "../../../../../../../etc/passwd"

        with pytest.raises(PathTraversalError, match="path traversal detected"):
            await StateStore.get_state(malicious_id, StateType.WORKFLOWS)

    @pytest.mark.asyncio
    async def test_save_state_object_allows_legitimate_id(self, statestore_local: Store) -> None:
        legitimate_id = "workflow-test-123"

        result = await StateStore.save_state_object(
            id=legitimate_id,
            value={"status": "running"},
            type=StateType.WORKFLOWS,
        )

        assert result == {"status": "running"}


class TestNoFileCreatedOutsideBase:
    """Tests verifying no files are created outside the base directory."""

    @pytest.mark.asyncio
    async def test_traversal_does_not_create_external_files(self, statestore_local: Store) -> None:
        root = statestore_local.backend.root  # type: ignore[attr-defined]
        malicious_id = "../../../../../../../tmp/should_not_exist_test"

        vulnerable_path = os.path.join(
            root,
            f"persistent-artifacts/apps/{statestore_local.app_name}/workflows/{malicious_id}/config.json",
        )
        potentially_pwned_path = os.path.abspath(vulnerable_path)
        potentially_pwned_dir = os.path.dirname(potentially_pwned_path)

        if os.path.exists(potentially_pwned_dir):
            os.rmdir(potentially_pwned_dir)

        with pytest.raises(PathTraversalError):
            await StateStore.save_state_object(
                id=malicious_id,
                value={"pwned": True},
                type=StateType.WORKFLOWS,
            )

        assert not os.path.exists(potentially_pwned_path)
        assert not os.path.exists(potentially_pwned_dir)
