"""The layout's rules (docs/design.md): the library never imports the recipes, no two modules
share a name, and every package says what it holds."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
LIBRARY, RECIPES = SRC / "diversedistill", SRC / "diversedistill_recipes"
# `python -m diversedistill` is the command line's shell, run as a script, never imported
ENTRY_POINT = LIBRARY / "__main__.py"


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement (at any depth, lazy ones included) or an
    ``importlib.import_module("...")`` call with a literal name in ``path`` names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return names


def library_files() -> list[Path]:
    return [p for p in sorted(LIBRARY.rglob("*.py")) if p != ENTRY_POINT]


def test_the_library_never_imports_the_recipes():
    offenders = {str(p.relative_to(SRC)): sorted(n for n in imported_modules(p)
                                                 if n.split(".")[0] == "diversedistill_recipes")
                 for p in library_files()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scan_sees_lazy_imports(tmp_path):
    """The rule above must be able to fail: an import inside a function counts."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from diversedistill_recipes.cli import main\n"
                      "    import importlib\n"
                      "    importlib.import_module('diversedistill_recipes.report')\n")
    assert imported_modules(sample) == {"diversedistill_recipes.cli", "importlib",
                                        "diversedistill_recipes.report"}


def test_importing_every_library_module_loads_no_recipe():
    modules = [".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
               for p in library_files()]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m.startswith('diversedistill_recipes')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_two_modules_share_a_name():
    seen: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.name, []).append(str(path.relative_to(SRC)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_every_package_says_what_it_holds():
    for init in [*LIBRARY.rglob("__init__.py"), *RECIPES.rglob("__init__.py")]:
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert docstring and len(docstring.split()) >= 5, f"{init}: no package docstring"


def test_every_registered_method_is_importable_from_the_package():
    import diversedistill
    from diversedistill.methods import METHODS

    assert sorted(diversedistill.__all__) == sorted(diversedistill._WHERE)
    for cls in METHODS.values():
        assert getattr(diversedistill, cls.__name__) is cls  # e.g. from diversedistill import LD
