"""The layering law: the spec stands alone; the implementation never leans on it.

`verity_spec` (folder spec/) imports nothing of ours; `verity` never imports
`verity_spec` or `verity_conformance`. Only `verity_conformance` and the tests
see both. Read from the source with `ast`, so a lazy import inside a function
is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = {"verity", "verity_spec", "verity_conformance"}


def imported_top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def python_files(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


@pytest.mark.parametrize("path", python_files("spec"), ids=lambda p: p.name)
def test_spec_imports_nothing_of_ours(path: Path) -> None:
    forbidden = imported_top_level_names(path) & OUR_PACKAGES - {"verity_spec"}
    assert not forbidden, f"{path} imports {sorted(forbidden)}"


@pytest.mark.parametrize("path", python_files("verity"), ids=lambda p: p.name)
def test_verity_never_imports_spec_or_conformance(path: Path) -> None:
    forbidden = imported_top_level_names(path) & {"verity_spec", "verity_conformance"}
    assert not forbidden, f"{path} imports {sorted(forbidden)}"


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    # Guard against a checker that silently finds nothing.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from verity_spec import log\n    return log\n")
    assert "verity_spec" in imported_top_level_names(bad)
