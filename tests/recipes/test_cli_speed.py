"""The command line answers --help and --version without the heavy libraries."""

import subprocess
import sys


def test_help_and_version_import_neither_torch_nor_lightning_nor_transformers():
    # not a timing (those live in benchmarks): what makes --help slow is importing these
    code = ("import sys; from diversedistill_recipes.cli import main\n"
            "for argv in (['--help'], ['--version'], ['reproduce', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'lightning', 'transformers') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
    assert "diversedistill 0." in out.stdout and "examples:" in out.stdout
