"""The README's Python snippets run as written, each pasted into a fresh interpreter.

A snippet that stops with a ``NameError`` when a reader pastes it is a false promise, so
every ```` ```python ```` block of README.md runs here on its own, from the repository's
root (where the sample images are), in a fresh namespace.
"""

import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_python_snippets():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_snippet_runs_on_its_own(index, monkeypatch, tmp_path):
    matplotlib.use("Agg")
    monkeypatch.chdir(ROOT)
    code = compile(BLOCKS[index], f"README.md, python block {index + 1}", "exec")
    exec(code, {"__name__": "__readme__", "OUT": tmp_path})
