"""The README is true: every Python block runs as written, and its first two commands are the
ones CI runs.

Each ```python block runs in a fresh interpreter in an empty folder where `rectify demo` (a
small city) has written `rectify-demo/`, as the README's first command does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.devtools.demo import generate_city, write_jsonl

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "rectify-demo").mkdir()
    write_jsonl(generate_city(enterprises=40, days=1, seed=3).events, folder / "rectify-demo" / "events.jsonl")
    return folder


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_every_python_block_runs_as_written(number, folder):
    result = subprocess.run([sys.executable, "-c", BLOCKS[number]], cwd=folder, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"README python block {number + 1}:\n{BLOCKS[number]}\n{result.stderr}"


def test_the_first_lines_give_the_two_commands_and_ci_runs_the_second():
    block = re.search(r"```bash\n(.*?)```", README, re.DOTALL)
    assert block is not None and README.index(block.group(0)) < 200
    setup, tests = block.group(1).strip().splitlines()
    assert "pip install -e '.[test]'" in setup and "rectify demo" in setup
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == tests
