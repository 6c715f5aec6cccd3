"""The README's quickstart and the user guide's tutorial run as written: their blocks are
extracted (each marked ``<!-- quickstart: FILE -->`` in README.md, ``<!-- tutorial: FILE -->``
in docs/user-guide.md), written to a fresh folder and run there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def blocks(kind: str, path: Path) -> dict[str, str]:
    block = re.compile(rf"<!-- {kind}: ([\w.]+) -->\n```python\n(.*?)```", re.DOTALL)
    return dict(block.findall(path.read_text(encoding="utf-8")))


def tutorial_files() -> dict[str, str]:
    return blocks("tutorial", ROOT / "docs" / "user-guide.md")


def code_lines(code: str) -> list[str]:
    return [line for line in code.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def run_here(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    return subprocess.run([sys.executable, script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_readme_quickstart_runs_as_written(tmp_path):
    files = blocks("quickstart", ROOT / "README.md")
    assert list(files) == ["quickstart.py"]
    assert len(code_lines(files["quickstart.py"])) <= 20  # the front page promises it short
    (tmp_path / "quickstart.py").write_text(files["quickstart.py"], encoding="utf-8")
    done = run_here(tmp_path, "quickstart.py")
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"val accuracy [01]\.\d{3} after 3 epochs", done.stdout), done.stdout
    assert (tmp_path / "runs" / "quickstart" / "logs" / "metrics.csv").is_file()


def test_the_readme_tutorial_runs_as_written(tmp_path):
    files = tutorial_files()
    assert list(files) == ["my_models.py", "distill.py"]
    assert len(code_lines(files["distill.py"])) <= 30  # a short example; keep it so
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    done = run_here(tmp_path, "distill.py")
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"val accuracy 0\.\d{3} after \d+ epochs", done.stdout), done.stdout
    assert re.search(r"tensor\(\[[0-2](, [0-2]){4}\]\)", done.stdout), done.stdout
    assert (tmp_path / "served" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "tutorial" / "logs" / "metrics.csv").is_file()
