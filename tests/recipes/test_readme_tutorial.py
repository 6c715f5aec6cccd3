"""The README's Python tutorial runs as written: its blocks are extracted from README.md
(each marked ``<!-- tutorial: FILE -->``), written to a fresh folder and run there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- tutorial: ([\w.]+) -->\n```python\n(.*?)```", re.DOTALL)


def tutorial_files() -> dict[str, str]:
    return dict(BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8")))


def test_the_readme_tutorial_runs_as_written(tmp_path):
    files = tutorial_files()
    assert list(files) == ["my_models.py", "distill.py"]
    library_lines = [line for line in files["distill.py"].splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]
    assert len(library_lines) <= 30  # the README promises a short example; keep it so
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    done = subprocess.run([sys.executable, "distill.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"val accuracy 0\.\d{3} after \d+ epochs", done.stdout), done.stdout
    assert re.search(r"tensor\(\[[0-2](, [0-2]){4}\]\)", done.stdout), done.stdout
    assert (tmp_path / "served" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "tutorial" / "logs" / "metrics.csv").is_file()
