"""Mutation testing of `verity/` (issue 11 §5): `benchmarks/mutation.py [--quick] [--out DIR]`.

Each mutant is one small wrong change to one file of `verity/`, made in a
temporary copy of the package, never in the working tree. It is run against
two killers:

1. the certifier's run alone, `python -m verity_conformance run`
   (`--conformance-args="--budget 30 --seed 1"` passes more arguments;
   when the runner offers them and they are not given, `--shrink-seconds 0`
   is added, and `--budget 15` in `--quick`);
2. the whole suite, `python -m pytest -q -x -p no:cacheprovider tests/`
   (`--suite-args` adds to it, or narrows it by naming test files), by
   default only for the mutants that survive the conformance run
   (`--no-suite-only-survivors` runs it on every mutant; `--suite-max N`
   bounds how many survivors it runs on).

A mutant is *killed* when the run exits non-zero; a run that overruns its
time box is killed too and counted apart as a *timeout*. The report gives,
per package (kernel, storage, store, query, SDK, other), the conformance kill
rate, the suite kill rate among conformance survivors and the combined rate,
and lists every survivor with its place, operator, original and mutated line
and a reason read from `benchmarks/mutation_survivors.json` (`equivalent`, or
`gap` with where it will be closed; a survivor not in that file is
`unclassified`). JSON goes to `--out DIR` (`mutation.json`,
`mutation-quick.json`).

Isolation. The runs import the mutant copy instead of the installed
`verity`: its folder is put first on `PYTHONPATH`, and the killers run as
`python -P` (the current directory stays off `sys.path`) in the copy's
folder, pytest with `--rootdir` and `-c` naming the repository, whose own
`verity/` must not shadow the copy; `verity_spec` and `verity_conformance`
stay the installed ones. The copy carries a `sitecustomize.py` probe:
every Python process of a run records, at exit,
the file of each `verity` module it imported. A run whose main process
imported `verity` from anywhere but the copy, or that passed without a
record showing the copy was imported, is a harness error (exit status 2),
never a survivor. Child processes that import another `verity` are
reported as leaks, not errors: the mutant is not exercised there. Two tests
start such children today: `tests/test_query_bounds.py` runs `python -c`
with the repository as its folder (its `verity/` comes first; the probe
reports it), and `tests/test_sql_fuzz.py` sets `PYTHONPATH` to the
repository (the probe is then off that path and cannot report it).
`PYTHONSAFEPATH` is not set for the children: scripts the tests run
(`tests/test_storage_enospc.py`) import modules beside them. Before any
mutant, both killers run on the unmutated copy and must pass, which also
proves the isolation.

Operators (an AST mutator of our own; the change is made on the source text
at the operator's exact position, so every other line and the line numbers
stay as they were): comparison swaps (`<`/`<=`, `>`/`>=`, `==`/`!=`,
`is`/`is not`, `in`/`not in`), `and`/`or`, `+`/`-` (and `+=`/`-=`),
integer constants off by one (n+1, n-1), `max`/`min`, `return X` ->
`return None`, a raise guard switched off (`if cond: raise` ->
`if False: raise`) and a negated `if`. Never mutated: docstrings and other
bare strings, f-strings (error messages), logging calls, `assert`
statements, type annotations and aliases, `cast()` types, decorators,
`__repr__`/`__str__`, `if TYPE_CHECKING:` blocks. A mutant's id is
`path:line:col:operator` (line and column 1-based, of the changed text).

Why our own mutator (measured on this tree, 2 shared cores):
- mutmut 3.8 generated 21,281 mutants for `verity/` in 3.5 minutes before
  running any; it runs pytest only, in-process, through trampolines it
  writes into every function (so module-level constants, the limits, are
  never mutated and every call pays an extra hop), reads its configuration
  from `pyproject.toml` and writes `mutants/` into the project. The certifier's
  run is not a pytest run, and there is no seeded, stratified sample.
- cosmic-ray 8.7 found 27,986 mutation sites in 79 s: every binary operator
  replaced by every other (433 sites of `+` times 11), and the `X | None`
  of type annotations mutated as a bitwise or (316 sites times 11). It runs
  any command, but mutates the module in place (one working copy per
  worker) and has no stratified sample.
- This mutator enumerates every site of `verity/` in a few seconds, skips
  what cannot be a behaviour (annotations, messages, logging), and samples
  per package with a printed seed.

Run: `python benchmarks/mutation.py --sample 80 --seed 1 --jobs 2`;
`--full` runs every site; `--package storage` restricts; `--mutant ID`
runs named mutants; `--list` prints the sites without running anything.
`--quick` (CI) runs a bounded random slice against the conformance run only
and prints its kill rate; it exits non-zero only on a harness error.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import compileall
import contextlib
import importlib.util
import io
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SURVIVORS_FILE = HERE / "mutation_survivors.json"
PROBE_ENV = "VERITY_MUTATION_PROBE"

PACKAGES = ("kernel", "storage", "store", "query", "sdk", "other")
SUBPACKAGES = frozenset({"storage", "store", "query"})
SDK_MODULES = frozenset(
    {
        "_database.py",
        "_tenant.py",
        "_keyring.py",
        "_snapshot.py",
        "_layout.py",
        "_witness.py",
        "crypto.py",
        "proofs.py",
        "dbapi.py",
    }
)
REASONS = frozenset({"equivalent", "gap"})

# Operator name -> family (the families are what `--operators` selects).
OPERATORS: dict[str, str] = {
    "lt_to_le": "compare",
    "le_to_lt": "compare",
    "gt_to_ge": "compare",
    "ge_to_gt": "compare",
    "eq_to_ne": "compare",
    "ne_to_eq": "compare",
    "is_to_isnot": "compare",
    "isnot_to_is": "compare",
    "in_to_notin": "compare",
    "notin_to_in": "compare",
    "and_to_or": "boolean",
    "or_to_and": "boolean",
    "add_to_sub": "arith",
    "sub_to_add": "arith",
    "iadd_to_isub": "arith",
    "isub_to_iadd": "arith",
    "num_plus1": "number",
    "num_minus1": "number",
    "max_to_min": "minmax",
    "min_to_max": "minmax",
    "return_none": "return",
    "raise_guard_off": "raise_guard",
    "negate_if": "negate_if",
}
FAMILIES = tuple(dict.fromkeys(OPERATORS.values()))

_COMPARE_SWAPS: dict[type[ast.cmpop], tuple[str, str, str]] = {
    # op type: (operator name, source text of the op, replacement)
    ast.Lt: ("lt_to_le", "<", "<="),
    ast.LtE: ("le_to_lt", "<=", "<"),
    ast.Gt: ("gt_to_ge", ">", ">="),
    ast.GtE: ("ge_to_gt", ">=", ">"),
    ast.Eq: ("eq_to_ne", "==", "!="),
    ast.NotEq: ("ne_to_eq", "!=", "=="),
    ast.Is: ("is_to_isnot", "is", "is not"),
    ast.IsNot: ("isnot_to_is", "is not", "is"),
    ast.In: ("in_to_notin", "in", "not in"),
    ast.NotIn: ("notin_to_in", "not in", "in"),
}
_LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical"})
_LOG_OBJECTS = frozenset({"log", "logger", "_log", "_logger", "LOG", "LOGGER", "logging"})
_SKIPPED_FUNCTIONS = frozenset({"__repr__", "__str__"})
_SKIPPED_ASSIGNMENTS = frozenset({"__all__", "__slots__", "__match_args__"})
_TYPING_CALLS = frozenset({"TypeVar", "NewType", "ParamSpec", "TypeVarTuple"})


def package_of(path: str) -> str:
    """The package a file of `verity/` counts under (`verity/storage/_log.py` -> storage)."""
    parts = PurePosixPath(path).parts
    if len(parts) > 2 and parts[1] in SUBPACKAGES:
        return parts[1]
    if len(parts) == 2 and parts[1] == "kernel.py":
        return "kernel"
    if len(parts) == 2 and parts[1] in SDK_MODULES:
        return "sdk"
    return "other"


# --- the mutator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """One change to one file: the text between char offsets `start` and `end` replaced."""

    path: str  # relative to the repository, posix: verity/storage/_log.py
    line: int  # 1-based, of the replaced text
    col: int  # 1-based, in characters
    operator: str
    start: int
    end: int
    replacement: str
    original: str  # the source line, stripped
    mutated: str  # the same line after the change, stripped
    scope: str  # the enclosing function or class, dotted, or "<module>"

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}:{self.col}:{self.operator}"

    @property
    def package(self) -> str:
        return package_of(self.path)

    @property
    def family(self) -> str:
        return OPERATORS[self.operator]

    def apply(self, source: str) -> str:
        return source[: self.start] + self.replacement + source[self.end :]


class _Text:
    """Positions in one source text: ast's (line, utf-8 byte column) to char offsets."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = io.StringIO(source).readlines()
        self.line_starts = [0]
        for line in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.tokens: list[tuple[int, int, str]] = []  # (start, end, string) of OP/NAME tokens
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.OP, tokenize.NAME):
                start = self.line_starts[token.start[0] - 1] + token.start[1]
                end = self.line_starts[token.end[0] - 1] + token.end[1]
                self.tokens.append((start, end, token.string))
        self.token_starts = [start for start, _, _ in self.tokens]

    def offset(self, lineno: int, byte_col: int) -> int:
        line = self.lines[lineno - 1]
        chars = len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))
        return self.line_starts[lineno - 1] + chars

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def line_col(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.line_starts, offset) - 1
        return index + 1, offset - self.line_starts[index] + 1

    def operator_tokens(self, start: int, end: int, words: Sequence[str]) -> tuple[int, int] | None:
        """The span of the token sequence `words` between offsets `start` and `end`."""
        first = bisect.bisect_left(self.token_starts, start)
        found: list[tuple[int, int, str]] = []
        for index in range(first, len(self.tokens)):
            token = self.tokens[index]
            if token[1] > end:
                break
            if token[2] in ("(", ")"):
                continue
            found.append(token)
        if [token[2] for token in found] != list(words):
            return None
        return found[0][0], found[-1][1]

    def line_text(self, lineno: int) -> str:
        return self.lines[lineno - 1].strip() if lineno <= len(self.lines) else ""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
    )


def _is_logging_call(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value
    owner_name = (
        owner.id
        if isinstance(owner, ast.Name)
        else owner.attr
        if isinstance(owner, ast.Attribute)
        else None
    )
    if func.attr in _LOG_METHODS and owner_name in _LOG_OBJECTS:
        return True
    return func.attr == "warn" and owner_name == "warnings"


def _is_string(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)
    )


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _is_type_alias(annotation: ast.expr) -> bool:
    return (isinstance(annotation, ast.Name) and annotation.id == "TypeAlias") or (
        isinstance(annotation, ast.Attribute) and annotation.attr == "TypeAlias"
    )


class _Collector:
    """Walks one module's AST, skipping what is not behaviour, and records the mutants."""

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.text = _Text(source)
        self.mutants: list[Mutant] = []

    # -- recording

    def add(self, operator: str, start: int, end: int, replacement: str, scope: str) -> None:
        source = self.text.source
        if start >= end and not replacement:
            return
        span_lines = source.count("\n", start, end)
        if span_lines and "\n" not in replacement:
            # A multi-line expression replaced by one line: the padding inside the
            # parentheses keeps every later line where it was.
            replacement = "(" + replacement + "\n" * span_lines + ")"
        line, col = self.text.line_col(start)
        line_end = source.find("\n", end)
        tail = source[end:] if line_end < 0 else source[end:line_end]
        changed = source[self.text.line_starts[line - 1] : start] + replacement + tail
        mutated_line = changed.split("\n", 1)[0].strip()
        self.mutants.append(
            Mutant(
                path=self.path,
                line=line,
                col=col,
                operator=operator,
                start=start,
                end=end,
                replacement=replacement,
                original=self.text.line_text(line),
                mutated=mutated_line,
                scope=scope,
            )
        )

    def add_operator(
        self, operator: str, left: ast.AST, right: ast.AST, words: str, new: str, scope: str
    ) -> None:
        """Replace the operator token(s) `words` found between `left` and `right`."""
        _, gap_start = self.text.span(left)
        gap_end, _ = self.text.span(right)
        found = self.text.operator_tokens(gap_start, gap_end, words.split())
        if found is not None:
            self.add(operator, found[0], found[1], new, scope)

    # -- walking

    def visit(self, node: ast.AST, scope: str) -> None:
        method: Callable[[Any, str], None] | None = getattr(
            self, "visit_" + type(node).__name__, None
        )
        if method is not None:
            method(node, scope)
        else:
            self.generic(node, scope)

    def visit_all(self, nodes: Iterable[ast.AST | None], scope: str) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node, scope)

    def body(self, statements: list[ast.stmt], scope: str) -> None:
        if statements and _is_docstring(statements[0]):
            statements = statements[1:]
        self.visit_all(statements, scope)

    def generic(self, node: ast.AST, scope: str) -> None:
        self.sites(node, scope)
        for child in ast.iter_child_nodes(node):
            self.visit(child, scope)

    def visit_Module(self, node: ast.Module, scope: str) -> None:
        self.body(node.body, scope)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope: str) -> None:
        if node.name in _SKIPPED_FUNCTIONS:
            return
        inner = node.name if scope == "<module>" else f"{scope}.{node.name}"
        self.visit_all(node.args.defaults, scope)
        self.visit_all(node.args.kw_defaults, scope)
        self.body(node.body, inner)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef, scope: str) -> None:
        inner = node.name if scope == "<module>" else f"{scope}.{node.name}"
        self.body(node.body, inner)

    def visit_Lambda(self, node: ast.Lambda, scope: str) -> None:
        self.visit_all(node.args.defaults, scope)
        self.visit_all(node.args.kw_defaults, scope)
        self.visit(node.body, scope)

    def visit_AnnAssign(self, node: ast.AnnAssign, scope: str) -> None:
        if node.value is not None and not _is_type_alias(node.annotation):
            self.visit(node.value, scope)

    def visit_Assign(self, node: ast.Assign, scope: str) -> None:
        names = {target.id for target in node.targets if isinstance(target, ast.Name)}
        if names & _SKIPPED_ASSIGNMENTS:
            return
        self.generic(node, scope)

    def visit_Expr(self, node: ast.Expr, scope: str) -> None:
        if _is_string(node.value):
            return
        self.generic(node, scope)

    def visit_Assert(self, node: ast.Assert, scope: str) -> None:
        return

    def visit_JoinedStr(self, node: ast.JoinedStr, scope: str) -> None:
        return

    def visit_Import(self, node: ast.AST, scope: str) -> None:
        return

    visit_ImportFrom = visit_Import

    def visit_Call(self, node: ast.Call, scope: str) -> None:
        if _is_logging_call(node):
            return
        func = node.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else None
        )
        if name in _TYPING_CALLS:
            return
        if name == "cast":
            self.visit_all(node.args[1:], scope)
            return
        if isinstance(func, ast.Name) and func.id in ("max", "min"):
            start, end = self.text.span(func)
            operator, new = ("max_to_min", "min") if func.id == "max" else ("min_to_max", "max")
            self.add(operator, start, end, new, scope)
        self.generic(node, scope)

    def visit_If(self, node: ast.If, scope: str) -> None:
        if _is_type_checking(node.test):
            self.visit_all(node.orelse, scope)
            return
        if not _is_main_guard(node.test):
            start, end = self.text.span(node.test)
            if any(isinstance(statement, ast.Raise) for statement in node.body):
                self.add("raise_guard_off", start, end, "False", scope)
            self.add("negate_if", start, end, f"not ({self.text.source[start:end]})", scope)
            self.visit(node.test, scope)
        self.visit_all(node.body, scope)
        self.visit_all(node.orelse, scope)

    def visit_Return(self, node: ast.Return, scope: str) -> None:
        value = node.value
        if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            start, end = self.text.span(value)
            self.add("return_none", start, end, "None", scope)
        self.generic(node, scope)

    # -- expression sites (the walk continues into children in `generic`)

    def sites(self, node: ast.AST, scope: str) -> None:
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for index, op in enumerate(node.ops):
                operator, words, new = _COMPARE_SWAPS[type(op)]
                self.add_operator(operator, operands[index], operands[index + 1], words, new, scope)
        elif isinstance(node, ast.BoolOp):
            words, operator, new = (
                ("and", "and_to_or", "or")
                if isinstance(node.op, ast.And)
                else ("or", "or_to_and", "and")
            )
            for left, right in zip(node.values, node.values[1:], strict=False):
                self.add_operator(operator, left, right, words, new, scope)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            if _is_string(node.left) or _is_string(node.right):
                return
            if isinstance(node.op, ast.Add):
                self.add_operator("add_to_sub", node.left, node.right, "+", "-", scope)
            else:
                self.add_operator("sub_to_add", node.left, node.right, "-", "+", scope)
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add | ast.Sub):
            if _is_string(node.value):
                return
            if isinstance(node.op, ast.Add):
                self.add_operator("iadd_to_isub", node.target, node.value, "+=", "-=", scope)
            else:
                self.add_operator("isub_to_iadd", node.target, node.value, "-=", "+=", scope)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int)
            and not isinstance(node.value, bool)
        ):
            start, end = self.text.span(node)
            self.add("num_plus1", start, end, str(node.value + 1), scope)
            self.add("num_minus1", start, end, str(node.value - 1), scope)


def mutants_of_source(path: str, source: str) -> list[Mutant]:
    """Every mutant of one module, in source order (`compiles` checks one)."""
    collector = _Collector(path, source)
    collector.visit(ast.parse(source, filename=path), "<module>")
    seen: set[str] = set()
    mutants: list[Mutant] = []
    for mutant in sorted(collector.mutants, key=lambda m: (m.start, m.end, m.operator)):
        if mutant.id not in seen:
            seen.add(mutant.id)
            mutants.append(mutant)
    return mutants


def compiles(mutant: Mutant, source: str) -> str | None:
    """None when the mutated module compiles, else why not (a mutator bug)."""
    try:
        compile(mutant.apply(source), mutant.path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def mutants_of_tree(root: Path) -> tuple[list[Mutant], int]:
    """Every mutant of the `verity` package under `root`, and how many files it read."""
    files = sorted((root / "verity").rglob("*.py"))
    mutants: list[Mutant] = []
    for file in files:
        relative = file.relative_to(root).as_posix()
        mutants.extend(mutants_of_source(relative, file.read_text(encoding="utf-8")))
    return mutants, len(files)


def select(
    mutants: Sequence[Mutant],
    sample: int | None,
    seed: int,
    packages: Sequence[str] | None = None,
) -> list[Mutant]:
    """A seeded sample, stratified: each package gets an equal share where it has the sites."""
    pool: dict[str, list[Mutant]] = {}
    for mutant in mutants:
        if packages is None or mutant.package in packages:
            pool.setdefault(mutant.package, []).append(mutant)
    if sample is None:
        return [mutant for name in PACKAGES for mutant in pool.get(name, [])]
    rng = random.Random(seed)
    quota = dict.fromkeys(pool, 0)
    remaining = sample
    while remaining > 0:
        open_packages = [
            name for name in PACKAGES if name in pool and quota[name] < len(pool[name])
        ]
        if not open_packages:
            break
        share = max(1, remaining // len(open_packages))
        # Packages with the most sites left take the remainder first, ties by name.
        open_packages.sort(key=lambda name: (-(len(pool[name]) - quota[name]), name))
        for name in open_packages:
            take = min(share, len(pool[name]) - quota[name], remaining)
            quota[name] += take
            remaining -= take
            if remaining == 0:
                break
    chosen: list[Mutant] = []
    for name in PACKAGES:
        if name in pool:
            chosen.extend(sorted(rng.sample(pool[name], quota[name]), key=_order))
    return chosen


def _order(mutant: Mutant) -> tuple[str, int, int, str]:
    return (mutant.path, mutant.line, mutant.col, mutant.operator)


# --- the survivors file ----------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    reason: str  # equivalent | gap
    note: str
    original: str = ""  # the source line the annotation was written for, when given


def load_annotations(path: Path) -> dict[str, Annotation]:
    """`{mutant id: {"reason": "equivalent" | "gap", "note": ...}}`; keys starting `_` are notes."""
    if not path.exists():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object of mutant id -> annotation")
    annotations: dict[str, Annotation] = {}
    for key, value in document.items():
        if key.startswith("_"):
            continue
        if not isinstance(value, dict) or value.get("reason") not in REASONS:
            raise ValueError(f"{path}: {key}: reason must be one of {sorted(REASONS)}")
        annotations[key] = Annotation(
            reason=str(value["reason"]),
            note=str(value.get("note", "")),
            original=str(value.get("original", "")),
        )
    return annotations


def classify(mutant: Mutant, annotations: dict[str, Annotation]) -> tuple[str, str]:
    """A survivor's (reason, note): from the file, else `unclassified`."""
    annotation = annotations.get(mutant.id)
    if annotation is None:
        return "unclassified", ""
    if annotation.original and annotation.original != mutant.original:
        return "unclassified", f"stale annotation (written for: {annotation.original})"
    return annotation.reason, annotation.note


# --- isolation and runs ----------------------------------------------------------------------

SITECUSTOMIZE = f'''"""Mutation-harness probe: at exit, record where `verity` was imported from."""
import atexit
import os
import sys


def _verity_mutation_probe():
    path = os.environ.get("{PROBE_ENV}")
    if not path:
        return
    try:
        import json

        modules = {{
            name: getattr(module, "__file__", None)
            for name, module in list(sys.modules.items())
            if name == "verity" or name.startswith("verity.")
        }}
        line = json.dumps({{"pid": os.getpid(), "argv": sys.argv[:4], "modules": modules}})
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\\n")
    except Exception:
        pass


atexit.register(_verity_mutation_probe)
'''


class HarnessError(Exception):
    """The harness itself went wrong: the figures it would print cannot be trusted."""


@dataclass
class RunResult:
    outcome: str  # passed | failed | timeout | not_run
    seconds: float = 0.0
    returncode: int | None = None
    summary: str = ""  # the last non-empty line of output
    tail: str = ""
    leaks: list[str] = field(default_factory=list)
    error: str | None = None  # a harness error: isolation broken or unproven

    @property
    def killed(self) -> bool:
        return self.outcome in ("failed", "timeout")


def _under(path: str | None, root: Path) -> bool:
    if not path:
        return False
    resolved = os.path.realpath(path)
    return resolved.startswith(os.path.realpath(root) + os.sep)


def check_isolation(
    records: Iterable[dict[str, Any]], root: Path, main_pid: int, passed: bool
) -> tuple[str | None, list[str]]:
    """(harness error or None, leaks) from the probe records of one run."""
    error: str | None = None
    leaks: list[str] = []
    main_seen = False
    for record in records:
        modules: dict[str, str | None] = record.get("modules", {})
        outside = {name: file for name, file in modules.items() if not _under(file, root)}
        if record.get("pid") == main_pid:
            main_seen = main_seen or "verity" in modules
            if outside:
                name, file = sorted(outside.items())[0]
                error = f"the run imported {name} from {file}, not from the mutant copy in {root}"
        elif outside:
            name, file = sorted(outside.items())[0]
            leaks.append(
                f"{' '.join(map(str, record.get('argv', [])))} imported {name} from {file}"
            )
    if error is None and passed and not main_seen:
        error = f"the run passed without a probe record showing it imported verity from {root}"
    return error, leaks


def read_probe(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def run_env(root: Path, probe: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(root / ".hypothesis")  # not the repo's database
    env[PROBE_ENV] = str(probe)
    env.pop("PYTHONOPTIMIZE", None)
    return env


def run_killer(
    name: str, command: Sequence[str], root: Path, cwd: Path, timeout: float
) -> RunResult:
    """Run `command` against the copy in `root`; kill its process group at `timeout`."""
    probe = root / f"probe-{name}.jsonl"
    log_path = root / f"{name}.log"
    probe.unlink(missing_ok=True)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=run_env(root, probe),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its children too
        if returncode is None:
            process.wait()
    seconds = time.monotonic() - started
    output = log_path.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    outcome = "timeout" if returncode is None else "passed" if returncode == 0 else "failed"
    error, leaks = check_isolation(read_probe(probe), root, process.pid, outcome == "passed")
    return RunResult(
        outcome=outcome,
        seconds=round(seconds, 2),
        returncode=returncode,
        summary=lines[-1][:200] if lines else "",
        tail="\n".join(lines[-15:]),
        leaks=leaks,
        error=error,
    )


class Workspace:
    """A pristine copy of `verity/` (compiled once) and per-mutant copies of it."""

    def __init__(
        self, scratch: Path, source: Path | None, rev: str | None, compile_base: bool = True
    ) -> None:
        self.scratch = scratch
        self.base = scratch / "base"
        self.base.mkdir(parents=True)
        if rev is not None:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", "--format=tar", rev, "verity"],
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", str(self.base)], input=archive.stdout, check=True)
        else:
            assert source is not None
            shutil.copytree(
                source / "verity",
                self.base / "verity",
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        if compile_base:
            compileall.compile_dir(str(self.base / "verity"), quiet=1, workers=1)
        self._count = 0

    def copy(self, mutant: Mutant | None) -> Path:
        """A fresh folder holding `verity/` (with `mutant` applied) and the probe."""
        self._count += 1
        root = Path(tempfile.mkdtemp(prefix="m-", dir=self.scratch))

        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(self.base / "verity", root / "verity", copy_function=link)
        if mutant is not None:
            target = root / mutant.path
            original = target.read_text(encoding="utf-8")
            target.unlink()  # a new file: the base's inode stays as it was
            target.write_text(mutant.apply(original), encoding="utf-8")
            Path(importlib.util.cache_from_source(str(target))).unlink(missing_ok=True)
        (root / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        return root


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    mutant: Mutant
    conformance: RunResult | None = None
    suite: RunResult | None = None

    @property
    def status(self) -> str:
        if self.conformance is None or self.conformance.outcome == "not_run":
            return "not_run"
        if self.conformance.error or (self.suite is not None and self.suite.error):
            return "harness_error"
        if self.conformance.killed:
            return "killed_conformance"
        if self.suite is None or self.suite.outcome == "not_run":
            return "survived_conformance"
        if self.suite.killed:
            return "killed_suite"
        return "survived"


@dataclass
class Settings:
    conformance: list[str]
    suite: list[str]
    conformance_timeout: float
    suite_timeout: float
    keep: bool


class Progress:
    """A rich progress bar when rich is installed, else a line per mutant."""

    def __init__(self, total: int, label: str) -> None:
        self.done = 0
        self.total = total
        self.label = label
        self._bar: Any = None
        self._task: Any = None
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress
        except ImportError:
            return
        if not sys.stdout.isatty():
            return
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def advance(self, text: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
            self._bar.advance(self._task)
        else:
            print(f"[{self.label} {self.done}/{self.total}] {text}", flush=True)


def conformance_command(extra: Sequence[str]) -> list[str]:
    return [sys.executable, "-P", "-m", "verity_conformance", "run", *extra]


def suite_command(extra: Sequence[str]) -> list[str]:
    """pytest on the repository's tests, runnable from any folder: it runs in the mutant's
    copy, so that a child a test starts with `python -c` (whose current folder comes first
    on its path) imports the mutant too. Paths in `extra` are taken relative to the
    repository; when `extra` names none, the whole of tests/ runs."""
    command = [sys.executable, "-P", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    command += ["--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml")]
    named_paths = False
    for argument in extra:
        head, sep, tail = argument.partition("::")
        if not argument.startswith("-") and head and (REPO / head).exists():
            argument = str(REPO / head) + sep + tail
            named_paths = True
        command.append(argument)
    return command if named_paths else [*command, str(REPO / "tests")]


def baseline(workspace: Workspace, settings: Settings, with_suite: bool) -> dict[str, Any]:
    """Both killers on the unmutated copy: they must pass, importing the copy."""
    root = workspace.copy(None)
    check = run_killer(
        "import-check",
        [sys.executable, "-P", "-c", "import verity; print(verity.__file__)"],
        root,
        REPO,  # the repository's own verity/ must not shadow the copy
        60,
    )
    printed = check.summary
    if check.outcome != "passed" or not _under(printed, root) or check.error:
        raise HarnessError(
            f"the copy is not what `import verity` finds from {REPO}: it printed {printed!r}"
            f" (expected a file under {root}); {check.error or check.tail}"
        )
    results: dict[str, Any] = {"import_check": printed}
    killers = [("conformance", settings.conformance, root, settings.conformance_timeout)]
    if with_suite:
        killers.append(("suite", settings.suite, root, settings.suite_timeout))
    for name, command, cwd, timeout in killers:
        print(f"baseline: {shlex.join(command)}", flush=True)
        result = run_killer(f"baseline-{name}", command, root, cwd, timeout)
        if result.outcome != "passed" or result.error:
            raise HarnessError(
                f"the unmutated copy fails the {name} run ({result.outcome}, exit"
                f" {result.returncode}); mutants would be killed by whatever breaks it:\n"
                f"{result.error or ''}\n{result.tail}"
            )
        print(f"baseline {name}: passed in {result.seconds:.1f} s ({result.summary})", flush=True)
        for leak in result.leaks:
            print(f"baseline {name}: leak (a child process not under test): {leak}", flush=True)
        results[name] = asdict(result)
    if not settings.keep:
        shutil.rmtree(root, ignore_errors=True)
    return results


def run_mutants(
    workspace: Workspace,
    jobs: int,
    work: Sequence[Mutant],
    killer: str,
    settings: Settings,
    deadline: float | None,
) -> Iterator[tuple[Mutant, RunResult]]:
    """Each mutant in its own copy against one killer; results as they finish."""

    def one(mutant: Mutant) -> tuple[Mutant, RunResult]:
        if deadline is not None and time.monotonic() > deadline:
            return mutant, RunResult(outcome="not_run")
        root = workspace.copy(mutant)
        try:
            if killer == "conformance":
                result = run_killer(
                    killer, settings.conformance, root, root, settings.conformance_timeout
                )
            else:
                result = run_killer(killer, settings.suite, root, root, settings.suite_timeout)
        finally:
            if not settings.keep:
                shutil.rmtree(root, ignore_errors=True)
        return mutant, result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(one, work)


def _rate(killed: int, total: int) -> str:
    return f"{killed}/{total} ({100.0 * killed / total:.0f}%)" if total else "-"


def tally(outcomes: Sequence[Outcome], annotations: dict[str, Annotation]) -> dict[str, Any]:
    """Per package and overall: counts and kill rates."""
    table: dict[str, Any] = {}
    for name in (*PACKAGES, "all"):
        rows = [o for o in outcomes if name == "all" or o.mutant.package == name]
        if not rows:
            continue
        ran = [o for o in rows if o.status not in ("not_run", "harness_error")]
        conf_killed = [o for o in ran if o.status == "killed_conformance"]
        conf_timeouts = [
            o for o in conf_killed if o.conformance and o.conformance.outcome == "timeout"
        ]
        suite_ran = [o for o in ran if o.suite is not None and o.suite.outcome != "not_run"]
        suite_ran_survivors = [o for o in suite_ran if o.status != "killed_conformance"]
        suite_killed = [o for o in suite_ran_survivors if o.status == "killed_suite"]
        suite_timeouts = [o for o in suite_killed if o.suite and o.suite.outcome == "timeout"]
        suite_killed_any = [o for o in suite_ran if o.suite is not None and o.suite.killed]
        survived = [o for o in ran if o.status in ("survived", "survived_conformance")]
        equivalent = [o for o in survived if classify(o.mutant, annotations)[0] == "equivalent"]
        not_equivalent = len(ran) - len(equivalent)
        table[name] = {
            "mutants": len(rows),
            "ran": len(ran),
            "killed_conformance": len(conf_killed),
            "conformance_timeouts": len(conf_timeouts),
            "suite_runs_on_survivors": len(suite_ran_survivors),
            "killed_suite": len(suite_killed),
            "suite_timeouts": len(suite_timeouts),
            "survived": len(survived),
            "survived_suite_not_run": sum(o.status == "survived_conformance" for o in ran),
            "equivalent": len(equivalent),
            "not_run": sum(o.status == "not_run" for o in rows),
            "harness_errors": sum(o.status == "harness_error" for o in rows),
            "conformance_kill_rate": len(conf_killed) / len(ran) if ran else None,
            "conformance_kill_rate_non_equivalent": (
                len(conf_killed) / not_equivalent if not_equivalent else None
            ),
            "suite_kill_rate_among_survivors": (
                len(suite_killed) / len(suite_ran_survivors) if suite_ran_survivors else None
            ),
            "suite_runs": len(suite_ran),
            "suite_kill_rate": len(suite_killed_any) / len(suite_ran) if suite_ran else None,
            "combined_kill_rate": (len(conf_killed) + len(suite_killed)) / len(ran)
            if ran
            else None,
        }
    return table


def print_report(
    outcomes: Sequence[Outcome], table: dict[str, Any], annotations: dict[str, Annotation]
) -> None:
    header = (
        f"{'package':<8} {'mutants':>7} {'conformance killed':>22} {'suite killed':>20}"
        f" {'survived':>8} {'timeouts c/s':>12} {'not run':>7} {'combined':>14}"
    )
    print()
    print(header)
    print("-" * len(header))
    for name, row in table.items():
        conformance = _rate(row["killed_conformance"], row["ran"])
        suite = _rate(row["killed_suite"], row["suite_runs_on_survivors"])
        combined = _rate(row["killed_conformance"] + row["killed_suite"], row["ran"])
        timeouts = f"{row['conformance_timeouts']}/{row['suite_timeouts']}"
        print(
            f"{name:<8} {row['mutants']:>7} {conformance:>22} {suite:>20}"
            f" {row['survived']:>8} {timeouts:>12} {row['not_run']:>7} {combined:>14}"
        )
    print(
        "conformance killed: of the mutants run; suite killed: of the conformance survivors the"
        " suite ran on; a timeout counts as killed"
    )
    survivors = [o for o in outcomes if o.status in ("survived", "survived_conformance")]
    if survivors:
        print(f"\nsurvivors ({len(survivors)}):")
    for outcome in survivors:
        reason, note = classify(outcome.mutant, annotations)
        suite = "suite survived" if outcome.status == "survived" else "suite not run"
        print(f"  {outcome.mutant.id}  [{reason}; {suite}] in {outcome.mutant.scope}")
        print(f"      - {outcome.mutant.original}")
        print(f"      + {outcome.mutant.mutated}")
        if note:
            print(f"      {note}")
    leaks = sorted(
        {leak for o in outcomes for r in (o.conformance, o.suite) if r for leak in r.leaks}
    )
    if leaks:
        print(f"\nchild processes that did not run the mutant ({len(leaks)} distinct):")
        for leak in leaks[:10]:
            print(f"  {leak}")


def outcome_json(outcome: Outcome, annotations: dict[str, Annotation]) -> dict[str, Any]:
    mutant = outcome.mutant
    entry: dict[str, Any] = {
        "id": mutant.id,
        "package": mutant.package,
        "path": mutant.path,
        "line": mutant.line,
        "col": mutant.col,
        "operator": mutant.operator,
        "scope": mutant.scope,
        "original": mutant.original,
        "mutated": mutant.mutated,
        "status": outcome.status,
    }
    for name in ("conformance", "suite"):
        result: RunResult | None = getattr(outcome, name)
        if result is not None:
            entry[name] = {
                "outcome": result.outcome,
                "seconds": result.seconds,
                "returncode": result.returncode,
                "summary": result.summary,
                "leaks": result.leaks,
                "error": result.error,
            }
    if outcome.status in ("survived", "survived_conformance"):
        entry["reason"], entry["note"] = classify(mutant, annotations)
    return entry


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return completed.stdout.strip()

    return {
        "head": git("rev-parse", "HEAD"),
        "last_verity_commit": git("log", "-1", "--format=%H", "--", "verity"),
        "verity_changes": git("status", "--porcelain", "verity"),
    }


def conformance_options() -> str:
    """The installed conformance runner's `run --help` (which options it offers)."""
    completed = subprocess.run(
        [sys.executable, "-P", "-m", "verity_conformance", "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout


def conformance_defaults(extra: list[str], quick: bool, offered: str) -> list[str]:
    """What the harness adds to the run's arguments when the runner offers it and they don't
    say: no time spent shrinking a failure (a mutant is killed by the failure, not its
    reproduction), and in `--quick` a 15 s budget."""
    added: list[str] = []
    if "--shrink-seconds" in offered and not any(a.startswith("--shrink-seconds") for a in extra):
        added += ["--shrink-seconds", "0"]
    if quick and "--budget" in offered and not any(a.startswith("--budget") for a in extra):
        added += ["--budget", "15"]
    return [*extra, *added]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI: a bounded random slice")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--sample", type=int, default=None, help="mutants, stratified")
    parser.add_argument("--full", action="store_true", help="every site")
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    parser.add_argument("--package", action="append", choices=PACKAGES, default=None)
    parser.add_argument("--operators", action="append", choices=FAMILIES, default=None)
    parser.add_argument("--mutant", action="append", default=None, help="a mutant id (repeat)")
    parser.add_argument("--list", action="store_true", help="print the selected sites and stop")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--conformance-args", default="", help="more arguments for the run")
    parser.add_argument("--suite-args", default="", help="more arguments for pytest")
    parser.add_argument("--no-suite", action="store_true", help="the conformance killer only")
    parser.add_argument(
        "--suite-only-survivors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the suite only on conformance survivors (default)",
    )
    parser.add_argument("--suite-max", type=int, default=None, help="at most N suite runs")
    parser.add_argument("--conformance-timeout", type=float, default=None)
    parser.add_argument("--suite-timeout", type=float, default=None)
    parser.add_argument(
        "--timeout-factor", type=float, default=3.0, help="time box = factor x baseline"
    )
    parser.add_argument("--timeout-min", type=float, default=30.0, help="seconds, at least")
    parser.add_argument("--deadline", type=float, default=None, help="start no mutant after S s")
    parser.add_argument("--rev", default=None, help="mutate verity/ at this git revision")
    parser.add_argument("--source", type=Path, default=REPO, help="folder holding verity/")
    parser.add_argument("--survivors", type=Path, default=SURVIVORS_FILE)
    parser.add_argument("--keep", action="store_true", help="keep the copies (debugging)")
    args = parser.parse_args(argv)
    if args.quick:
        if args.sample is None and not args.full and not args.mutant:
            args.sample = 12
        args.no_suite = True
        if args.deadline is None:
            args.deadline = 210.0
    if args.sample is None and not args.full and not args.mutant:
        args.sample = 80
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    annotations = load_annotations(args.survivors)
    conformance_extra = conformance_defaults(
        shlex.split(args.conformance_args), args.quick, conformance_options()
    )
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="verity-mutation-"))
    try:
        workspace = Workspace(scratch, args.source, args.rev, compile_base=not args.list)
        source_state = git_state() if args.rev is None else {"rev": args.rev}  # the copy's
        everything, files = mutants_of_tree(workspace.base)
        per_package = {name: sum(m.package == name for m in everything) for name in PACKAGES}
        if args.operators:
            everything = [m for m in everything if m.family in args.operators]
        if args.mutant:
            by_id = {m.id: m for m in everything}
            missing = [i for i in args.mutant if i not in by_id]
            if missing:
                print(f"no such mutant: {', '.join(missing)}", file=sys.stderr)
                return 2
            chosen = [by_id[i] for i in args.mutant]
        else:
            chosen = select(everything, None if args.full else args.sample, seed, args.package)
        where = source_state.get("rev") or (
            f"HEAD {str(source_state['head'])[:12]}"
            + (" with changes" if source_state.get("verity_changes") else "")
        )
        print(
            f"mutation: seed {seed}; verity/ at {where}; {len(everything)} sites in {files} files"
            f" ({', '.join(f'{k} {v}' for k, v in per_package.items())});"
            f" {len(chosen)} mutants chosen; jobs {args.jobs}",
            flush=True,
        )
        invalid = []
        for mutant in chosen:
            why = compiles(mutant, (workspace.base / mutant.path).read_text(encoding="utf-8"))
            if why is not None:
                invalid.append(f"{mutant.id} does not compile (a mutator bug): {why}")
        if invalid:
            print("harness error:\n  " + "\n  ".join(invalid), file=sys.stderr)
            return 2
        if args.list:
            for mutant in chosen:
                print(f"{mutant.id}  {mutant.original}  ->  {mutant.mutated}")
            return 0
        settings = Settings(
            conformance=conformance_command(conformance_extra),
            suite=suite_command(shlex.split(args.suite_args)),
            conformance_timeout=0.0,
            suite_timeout=0.0,
            keep=args.keep,
        )
        settings.conformance_timeout = settings.suite_timeout = 3600.0  # the baseline's own box
        with_suite = not args.no_suite
        try:
            base = baseline(workspace, settings, with_suite)
        except HarnessError as error:
            print(f"harness error (baseline): {error}", file=sys.stderr)
            return 2
        settings.conformance_timeout = args.conformance_timeout or max(
            args.timeout_min, args.timeout_factor * base["conformance"]["seconds"]
        )
        if with_suite:
            settings.suite_timeout = args.suite_timeout or max(
                args.timeout_min, args.timeout_factor * base["suite"]["seconds"]
            )
        deadline = started + args.deadline if args.deadline is not None else None
        outcomes = {m.id: Outcome(m) for m in chosen}
        errors: list[str] = []

        def record(mutant: Mutant, result: RunResult, killer: str) -> str:
            if result.error:
                errors.append(f"{mutant.id} ({killer}): {result.error}")
            word = {"passed": "SURVIVED", "failed": "killed", "timeout": "killed (timeout)"}
            verdict = word.get(result.outcome, result.outcome)
            return f"{killer}: {verdict} {mutant.id} ({result.seconds:.1f} s)"

        print(
            f"conformance: {shlex.join(settings.conformance)}; time box"
            f" {settings.conformance_timeout:.0f} s",
            flush=True,
        )
        with Progress(len(chosen), "conformance") as progress:
            for mutant, result in run_mutants(
                workspace, args.jobs, chosen, "conformance", settings, deadline
            ):
                outcomes[mutant.id].conformance = result
                progress.advance(record(mutant, result, "conformance"))
        if with_suite:
            if args.suite_only_survivors:
                suite_work = [m for m in chosen if outcomes[m.id].status == "survived_conformance"]
            else:
                suite_work = [m for m in chosen if outcomes[m.id].status != "not_run"]
            if args.suite_max is not None and len(suite_work) > args.suite_max:
                suite_work = sorted(
                    random.Random(seed).sample(suite_work, args.suite_max), key=_order
                )
            print(
                f"suite: {shlex.join(settings.suite)}; {len(suite_work)} mutants; time box"
                f" {settings.suite_timeout:.0f} s",
                flush=True,
            )
            with Progress(len(suite_work), "suite") as progress:
                for mutant, result in run_mutants(
                    workspace, args.jobs, suite_work, "suite", settings, deadline
                ):
                    outcomes[mutant.id].suite = result
                    progress.advance(record(mutant, result, "suite"))
        results = list(outcomes.values())
        table = tally(results, annotations)
        print_report(results, table, annotations)
        overall = table.get("all", {})
        rate = _rate(overall.get("killed_conformance", 0), overall.get("ran", 0))
        not_run = overall.get("not_run", 0)
        late = f" ({not_run} not run: deadline)" if not_run else ""
        print(
            f"\nconformance kill rate: {rate}{late}; seed {seed};"
            f" {time.monotonic() - started:.0f} s",
            flush=True,
        )
        document = {
            "suite": "mutation",
            "quick": args.quick,
            "machine": _machine_info(),
            "command": ["benchmarks/mutation.py", *(sys.argv[1:] if argv is None else argv)],
            "seed": seed,
            "git": source_state,
            "sites": len(everything),
            "sites_per_package": per_package,
            "conformance_command": settings.conformance,
            "suite_command": settings.suite if with_suite else None,
            "timeouts_s": {
                "conformance": settings.conformance_timeout,
                "suite": settings.suite_timeout if with_suite else None,
            },
            "baseline": base,
            "packages": table,
            "mutants": [outcome_json(o, annotations) for o in results],
            "harness_errors": errors,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"mutation{'-quick' if args.quick else ''}.json"
        out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
        if errors:
            print(f"\nharness errors ({len(errors)}):", file=sys.stderr)
            for line in errors:
                print(f"  {line}", file=sys.stderr)
            return 2
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _machine_info() -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    try:
        from _harness import machine_info

        return machine_info()
    except ImportError:
        return {"python": sys.version.split()[0], "cpus": os.cpu_count()}


if __name__ == "__main__":
    raise SystemExit(main())
