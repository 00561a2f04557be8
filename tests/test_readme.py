"""The README as a newcomer meets it: the set-up commands first, then examples that really run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from test_cli import KEY, clean_env

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = README.parent / "examples"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


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
