"""The mutation harness (`benchmarks/mutation.py`): mutator, ids, sampling, isolation, survivors.

No mutation run here (that takes minutes): the mutator is checked on a small
snippet that holds each operator and each construct it must leave alone, and
on a few real modules; the isolation check is checked with tiny stand-in
packages, never by touching `verity/`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import mutation  # noqa: E402

SNIPPET = '''\
"""Docstring with 7 in it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, TypeAlias, cast

if TYPE_CHECKING:
    from os import PathLike

logger = logging.getLogger(__name__)
__all__ = ["f", "g"]
LIMIT: Final = 8
Alias: TypeAlias = "dict[str, int]"


def f(a: int, b: list[int] | None = None) -> int | None:
    """Docstring 3."""
    assert a < 100
    logger.warning("a is %d", a + 1)
    if a > 2 and b is not None:
        raise ValueError(f"bad {a + 1}")
    total = max(a, LIMIT) - min(a, cast("int", 0))
    total += a
    return total


def g(x: int, items: set[int]) -> bool:
    if x == 5 or x != 6:
        x -= a
    x = x + y
    return x <= y and x >= z and x < w and x in items and x not in items and x is None


class C:
    def __repr__(self) -> str:
        return str(1 + 2)
'''

EXPECTED = {
    (13, 16, "num_minus1", "LIMIT: Final = 7"),
    (13, 16, "num_plus1", "LIMIT: Final = 9"),
    (21, 8, "negate_if", "if not (a > 2 and b is not None):"),
    (21, 8, "raise_guard_off", "if False:"),
    (21, 10, "gt_to_ge", "if a >= 2 and b is not None:"),
    (21, 12, "num_minus1", "if a > 1 and b is not None:"),
    (21, 12, "num_plus1", "if a > 3 and b is not None:"),
    (21, 14, "and_to_or", "if a > 2 or b is not None:"),
    (21, 20, "isnot_to_is", "if a > 2 and b is None:"),
    (23, 13, "max_to_min", 'total = min(a, LIMIT) - min(a, cast("int", 0))'),
    (23, 27, "sub_to_add", 'total = max(a, LIMIT) + min(a, cast("int", 0))'),
    (23, 29, "min_to_max", 'total = max(a, LIMIT) - max(a, cast("int", 0))'),
    (23, 48, "num_minus1", 'total = max(a, LIMIT) - min(a, cast("int", -1))'),
    (23, 48, "num_plus1", 'total = max(a, LIMIT) - min(a, cast("int", 1))'),
    (24, 11, "iadd_to_isub", "total -= a"),
    (25, 12, "return_none", "return None"),
    (29, 8, "negate_if", "if not (x == 5 or x != 6):"),
    (29, 10, "eq_to_ne", "if x != 5 or x != 6:"),
    (29, 13, "num_minus1", "if x == 4 or x != 6:"),
    (29, 13, "num_plus1", "if x == 6 or x != 6:"),
    (29, 15, "or_to_and", "if x == 5 and x != 6:"),
    (29, 20, "ne_to_eq", "if x == 5 or x == 6:"),
    (29, 23, "num_minus1", "if x == 5 or x != 5:"),
    (29, 23, "num_plus1", "if x == 5 or x != 7:"),
    (30, 11, "isub_to_iadd", "x += a"),
    (31, 11, "add_to_sub", "x = x - y"),
    (32, 12, "return_none", "return None"),
    (32, 14, "le_to_lt", "return x < y and x >= z and x < w and x in items and x not in items"),
    (32, 19, "and_to_or", "return x <= y or x >= z and x < w and x in items and x not in items"),
    (32, 25, "ge_to_gt", "return x <= y and x > z and x < w and x in items and x not in items"),
    (32, 30, "and_to_or", "return x <= y and x >= z or x < w and x in items and x not in items"),
    (32, 36, "lt_to_le", "return x <= y and x >= z and x <= w and x in items and x not in items"),
    (32, 40, "and_to_or", "return x <= y and x >= z and x < w or x in items and x not in items"),
    (
        32,
        46,
        "in_to_notin",
        "return x <= y and x >= z and x < w and x not in items and x not in items",
    ),
    (32, 55, "and_to_or", "return x <= y and x >= z and x < w and x in items or x not in items"),
    (32, 61, "notin_to_in", "return x <= y and x >= z and x < w and x in items and x in items"),
    (32, 74, "and_to_or", "return x <= y and x >= z and x < w and x in items and x not in items"),
    (32, 80, "is_to_isnot", "return x <= y and x >= z and x < w and x in items and x not in items"),
}


def snippet_mutants() -> list[mutation.Mutant]:
    return mutation.mutants_of_source("verity/snippet.py", SNIPPET)


def test_each_operator_makes_the_expected_mutants() -> None:
    # The long `return` line is compared by its start: the tail is the same in each.
    found = set()
    for m in snippet_mutants():
        mutated = m.mutated.removesuffix(" and x is None").removesuffix(" or x is None")
        mutated = mutated.removesuffix(" and x is not None")
        found.add((m.line, m.col, m.operator, mutated))
    assert found == EXPECTED
    assert {m.operator for m in snippet_mutants()} == set(mutation.OPERATORS)


def test_what_is_not_behaviour_is_never_mutated() -> None:
    lines = SNIPPET.splitlines()
    untouched = {
        number
        for number, text in enumerate(lines, start=1)
        if text.lstrip().startswith(
            ('"""', "assert", "logger.", "raise", "if TYPE", "from", "__all")
        )
        or "TypeAlias =" in text
        or "return str(1 + 2)" in text
        or text.startswith("def ")
    }
    assert untouched
    assert not [m.id for m in snippet_mutants() if m.line in untouched]


def test_mutants_compile_and_keep_every_line_in_place() -> None:
    sources = {"verity/snippet.py": SNIPPET}
    for relative in ("verity/_layout.py", "verity/storage/_recovery.py", "verity/store/_api.py"):
        sources[relative] = (ROOT / relative).read_text(encoding="utf-8")
    for path, source in sources.items():
        mutants = mutation.mutants_of_source(path, source)
        assert mutants, path
        for m in mutants:
            assert mutation.compiles(m, source) is None, m.id
            mutated = m.apply(source)
            assert mutated != source, m.id
            assert mutated.count("\n") == source.count("\n"), m.id
            changed = source[m.start : m.end].split("\n")[0]
            assert source.splitlines()[m.line - 1][m.col - 1 :].startswith(changed), m.id


def test_a_multi_line_expression_keeps_the_lines_after_it() -> None:
    source = textwrap.dedent(
        """\
        def h(a, b):
            if (a
                    and b):
                raise ValueError("no")
            return (a +
                    b)
        after = 1
        """
    )
    mutants = {m.operator: m for m in mutation.mutants_of_source("verity/h.py", source)}
    for operator in ("raise_guard_off", "return_none", "negate_if"):
        mutated = mutants[operator].apply(source)
        compile(mutated, "h.py", "exec")
        assert mutated.splitlines()[6] == "after = 1", operator
    assert mutants["raise_guard_off"].mutated == "if ((False"
    assert mutants["add_to_sub"].mutated == "return (a -"


def test_ids_are_stable_unique_and_name_the_place() -> None:
    first = [m.id for m in snippet_mutants()]
    assert first == [m.id for m in snippet_mutants()]
    assert len(set(first)) == len(first)
    assert "verity/snippet.py:21:10:gt_to_ge" in first
    source = (ROOT / "verity/_layout.py").read_text(encoding="utf-8")
    ids = [m.id for m in mutation.mutants_of_source("verity/_layout.py", source)]
    assert ids == [m.id for m in mutation.mutants_of_source("verity/_layout.py", source)]
    path, line, col, operator = ids[0].split(":")
    assert path == "verity/_layout.py" and int(line) > 0 and int(col) > 0
    assert operator in mutation.OPERATORS


@pytest.mark.parametrize(
    ("path", "package"),
    [
        ("verity/kernel.py", "kernel"),
        ("verity/storage/_log.py", "storage"),
        ("verity/store/_store.py", "store"),
        ("verity/query/_engine.py", "query"),
        ("verity/_database.py", "sdk"),
        ("verity/_tenant.py", "sdk"),
        ("verity/crypto.py", "sdk"),
        ("verity/dbapi.py", "sdk"),
        ("verity/types.py", "other"),
        ("verity/_cli.py", "other"),
    ],
)
def test_package_of(path: str, package: str) -> None:
    assert mutation.package_of(path) == package


def fake_mutant(path: str, line: int) -> mutation.Mutant:
    return mutation.Mutant(path, line, 1, "num_plus1", 0, 1, "2", "1", "2", "<module>")


def test_the_sample_is_seeded_and_stratified_per_package() -> None:
    mutants = [fake_mutant(f"verity/{name}.py", n) for name in ("kernel",) for n in range(1, 3)]
    for folder in ("storage", "store", "query"):
        mutants += [fake_mutant(f"verity/{folder}/_x.py", n) for n in range(1, 40)]
    mutants += [fake_mutant("verity/_database.py", n) for n in range(1, 40)]
    mutants += [fake_mutant("verity/types.py", n) for n in range(1, 40)]
    chosen = mutation.select(mutants, 12, seed=7)
    assert chosen == mutation.select(mutants, 12, seed=7)
    assert chosen != mutation.select(mutants, 12, seed=8)
    counts = {name: sum(m.package == name for m in chosen) for name in mutation.PACKAGES}
    assert counts["kernel"] == 2  # all it has; the other five share the rest evenly
    assert sorted(counts.values()) == [2, 2, 2, 2, 2, 2]
    big = mutation.select(mutants, 40, seed=1)
    assert len(big) == 40 and sum(m.package == "kernel" for m in big) == 2
    only = mutation.select(mutants, 5, seed=1, packages=["store"])
    assert len(only) == 5 and {m.package for m in only} == {"store"}
    assert len(mutation.select(mutants, None, seed=1)) == len(mutants)


@pytest.fixture(autouse=True)
def no_inherited_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the harness itself this suite runs with a mutant copy on PYTHONPATH: the runs
    made here must not inherit it, so that "installed" means site-packages."""
    monkeypatch.delenv("PYTHONPATH", raising=False)


def stand_in_root(tmp_path: Path, with_verity: bool) -> Path:
    root = tmp_path / ("copy" if with_verity else "empty")
    root.mkdir()
    (root / "sitecustomize.py").write_text(mutation.SITECUSTOMIZE, encoding="utf-8")
    if with_verity:
        (root / "verity").mkdir()
        (root / "verity" / "__init__.py").write_text("STAND_IN = True\n", encoding="utf-8")
    return root


def test_the_isolation_check_catches_a_run_that_imports_the_installed_package(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-P", "-c", "import verity; print(verity.__file__)"]
    root = stand_in_root(tmp_path, with_verity=False)  # so the installed verity is found
    result = mutation.run_killer("probe", command, root, ROOT, timeout=60)
    assert result.outcome == "passed"
    assert result.error is not None and "not from the mutant copy" in result.error
    assert "site-packages" in result.error


def test_the_isolation_check_passes_a_run_of_the_copy_even_from_the_repository(
    tmp_path: Path,
) -> None:
    root = stand_in_root(tmp_path, with_verity=True)
    command = [sys.executable, "-P", "-c", "import verity; assert verity.STAND_IN"]
    result = mutation.run_killer("probe", command, root, ROOT, timeout=60)  # cwd holds verity/
    assert (result.outcome, result.error, result.leaks) == ("passed", None, [])
    # Without -P the repository's own verity/ (the cwd) comes first: caught.
    command = [sys.executable, "-c", "import verity"]
    result = mutation.run_killer("probe", command, root, ROOT, timeout=60)
    assert result.error is not None and str(ROOT / "verity") in result.error


def test_a_passing_run_that_never_imported_verity_proves_nothing(tmp_path: Path) -> None:
    root = stand_in_root(tmp_path, with_verity=True)
    result = mutation.run_killer("probe", [sys.executable, "-c", "pass"], root, ROOT, timeout=60)
    assert result.error is not None and "without a probe record" in result.error
    failed = mutation.run_killer(
        "probe", [sys.executable, "-c", "raise SystemExit(3)"], root, ROOT, 60
    )
    assert (failed.outcome, failed.returncode, failed.error) == ("failed", 3, None)


def test_a_run_over_its_time_box_is_a_timeout(tmp_path: Path) -> None:
    root = stand_in_root(tmp_path, with_verity=True)
    command = [sys.executable, "-c", "import time; time.sleep(30)"]
    result = mutation.run_killer("probe", command, root, ROOT, timeout=1)
    assert result.outcome == "timeout" and result.killed


def test_a_child_that_imports_another_verity_is_a_leak_not_an_error(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    records = [
        {"pid": 10, "argv": ["-m", "pytest"], "modules": {"verity": f"{root}/verity/__init__.py"}},
        {"pid": 11, "argv": ["-c"], "modules": {"verity": "/elsewhere/verity/__init__.py"}},
    ]
    error, leaks = mutation.check_isolation(records, root, main_pid=10, passed=True)
    assert error is None
    assert leaks == ["-c imported verity from /elsewhere/verity/__init__.py"]
    error, _ = mutation.check_isolation(records, root, main_pid=11, passed=False)
    assert error is not None


def test_a_mutant_copy_changes_only_the_copy(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "verity").mkdir(parents=True)
    (source / "verity" / "__init__.py").write_text("", encoding="utf-8")
    (source / "verity" / "kernel.py").write_text("LIMIT = 8\n", encoding="utf-8")
    workspace = mutation.Workspace(tmp_path / "scratch", source, None)
    mutants, files = mutation.mutants_of_tree(workspace.base)
    assert files == 2 and [m.id for m in mutants] == [
        "verity/kernel.py:1:9:num_minus1",
        "verity/kernel.py:1:9:num_plus1",
    ]
    root = workspace.copy(mutants[1])
    assert (root / "verity" / "kernel.py").read_text(encoding="utf-8") == "LIMIT = 9\n"
    assert (workspace.base / "verity" / "kernel.py").read_text(encoding="utf-8") == "LIMIT = 8\n"
    assert (source / "verity" / "kernel.py").read_text(encoding="utf-8") == "LIMIT = 8\n"
    command = [sys.executable, "-P", "-c", "import verity.kernel as k; raise SystemExit(k.LIMIT)"]
    result = mutation.run_killer("probe", command, root, ROOT, timeout=60)
    assert (result.returncode, result.error) == (9, None)


def test_the_survivors_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "survivors.json"
    m = snippet_mutants()[0]
    path.write_text(
        json.dumps(
            {
                "_about": "notes",
                m.id: {"reason": "gap", "note": "the log machine", "original": m.original},
            }
        ),
        encoding="utf-8",
    )
    annotations = mutation.load_annotations(path)
    assert mutation.classify(m, annotations) == ("gap", "the log machine")
    assert mutation.classify(snippet_mutants()[1], annotations) == ("unclassified", "")
    stale = {m.id: mutation.Annotation("equivalent", "x", original="something else")}
    assert mutation.classify(m, stale)[0] == "unclassified"
    assert mutation.load_annotations(tmp_path / "absent.json") == {}
    path.write_text(json.dumps({m.id: {"reason": "maybe"}}), encoding="utf-8")
    with pytest.raises(ValueError, match="reason"):
        mutation.load_annotations(path)


def test_the_committed_survivors_file_loads() -> None:
    annotations = mutation.load_annotations(mutation.SURVIVORS_FILE)
    for key, annotation in annotations.items():
        path, line, col, operator = key.split(":")
        assert path.startswith("verity/") and operator in mutation.OPERATORS, key
        assert int(line) > 0 and int(col) > 0
        assert annotation.note, key


def test_list_runs_nothing_and_prints_the_seed() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "mutation.py"), "--list", "--sample", "6", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert "seed 3" in lines[0] and "6 mutants chosen" in lines[0]
    assert len(lines) == 7


def test_the_harness_adds_no_shrinking_and_a_quick_budget_only_when_offered() -> None:
    offered = "--budget SECONDS ... --shrink-seconds SHRINK_SECONDS"
    assert mutation.conformance_defaults([], False, offered) == ["--shrink-seconds", "0"]
    assert mutation.conformance_defaults([], True, offered) == [
        "--shrink-seconds",
        "0",
        "--budget",
        "15",
    ]
    given = ["--budget", "40", "--shrink-seconds", "5"]
    assert mutation.conformance_defaults(given, True, offered) == given
    assert mutation.conformance_defaults([], True, "--vectors DIR") == []


def test_the_suite_runs_from_the_copy_with_repository_paths() -> None:
    whole = mutation.suite_command([])
    assert whole[-1] == str(ROOT / "tests")
    assert whole[whole.index("--rootdir") + 1] == str(ROOT)
    assert whole[whole.index("-c") + 1] == str(ROOT / "pyproject.toml")
    narrowed = mutation.suite_command(["-k", "crc", "tests/test_types.py::test_x"])
    assert narrowed[-3:] == ["-k", "crc", f"{ROOT / 'tests/test_types.py'}::test_x"]
