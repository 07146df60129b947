"""The TLA+ models in tla/ parse and stay tied to the executable spec.

CI also model-checks every model with TLC (the "TLC (small configs)" step of
.ci/run, on tla/X.small.cfg when present, else tla/X.cfg; see tla/README.md).
These checks need no TLC and cover what can go stale without TLC noticing:

- every `tla/*.tla` parses (PyPI `tla`) and its module is named after its file;
- every `\\* spec: verity_spec.<module>.<function>` comment sits right above a
  definition of the module and names a function that exists in the spec;
- every action that the next-state relation names directly (an operator whose
  definition primes a variable or says UNCHANGED) carries such a comment;
- every model has a `.cfg` beside it that assigns exactly the declared
  constants and lists at least one invariant, and every operator it names
  (SPECIFICATION, INVARIANTS, PROPERTIES, CONSTRAINT, ...) is defined.

A new model (tla/Kernel.tla, tla/VSR.tla) is picked up with no change here.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# This repository's tla/ folder (the models) looks like a namespace package
# named `tla` to mypy and ruff, hiding the PyPI parser of the same name; at run
# time the installed regular package wins. Importing it by name keeps both
# tools honest about which one is used.
TLA_PARSER = importlib.import_module("tla")

ROOT = Path(__file__).resolve().parent.parent
TLA_FOLDER = ROOT / "tla"

SPEC_COMMENT_LOOSE = re.compile(r"^\s*\\\*\s*spec\s*:")
SPEC_COMMENT = re.compile(r"^\\\* spec: (?P<module>verity_spec(?:\.\w+)+)\.(?P<function>\w+)$")
DEFINITION_HEAD = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*(?:\(|==)")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
LINE_COMMENT = re.compile(r"\\\*.*$", re.MULTILINE)
BLOCK_COMMENT = re.compile(r"\(\*.*?\*\)", re.DOTALL)
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
CFG_TOKEN = re.compile(r"<-|[A-Za-z_]\w*|\S")

# TLC config keywords whose arguments are operator names defined in the model.
CFG_OPERATOR_SECTIONS = {
    "INIT": "INIT",
    "NEXT": "NEXT",
    "SPECIFICATION": "SPECIFICATION",
    "INVARIANT": "INVARIANTS",
    "INVARIANTS": "INVARIANTS",
    "PROPERTY": "PROPERTIES",
    "PROPERTIES": "PROPERTIES",
    "CONSTRAINT": "CONSTRAINTS",
    "CONSTRAINTS": "CONSTRAINTS",
    "ACTION_CONSTRAINT": "ACTION_CONSTRAINTS",
    "ACTION_CONSTRAINTS": "ACTION_CONSTRAINTS",
    "SYMMETRY": "SYMMETRY",
    "VIEW": "VIEW",
    "ALIAS": "ALIAS",
    "POSTCONDITION": "POSTCONDITION",
}
CFG_CONSTANT_SECTIONS = {"CONSTANT", "CONSTANTS"}
CFG_OTHER_SECTIONS = {"CHECK_DEADLOCK"}


def model_paths() -> list[Path]:
    return sorted(TLA_FOLDER.glob("*.tla"))


def parse(module_text: str) -> Any:
    """The syntax tree of a TLA+ module; raises ValueError when it does not parse."""
    assert hasattr(TLA_PARSER, "parse"), (
        f"`tla` resolved to {TLA_PARSER.__path__}, not the PyPI parser: install the dev extra"
    )
    return TLA_PARSER.parse(module_text)


@dataclass(frozen=True)
class SpecLink:
    """One `\\* spec:` comment and the definition right below it."""

    line_number: int
    module: str
    function: str
    operator: str


@dataclass(frozen=True)
class Model:
    """A parsed .tla file with the facts the tests compare."""

    path: Path
    module_name: str
    constants: frozenset[str]
    definitions: dict[str, str]  # operator name -> its source text
    links: tuple[SpecLink, ...]


@dataclass(frozen=True)
class Config:
    """The names a TLC .cfg file uses, by section."""

    constants: frozenset[str]
    operators: dict[str, list[str]]  # section (plural form) -> operator names


def without_comments_and_strings(text: str) -> str:
    text = BLOCK_COMMENT.sub(" ", text)
    text = LINE_COMMENT.sub("", text)
    return STRING_LITERAL.sub('""', text)


def declared_name(node: Any) -> str:
    """The name in a CONSTANTS entry: `C` parses as an application, `C(_)` as a declaration."""
    name = getattr(node, "operator", None) or getattr(node, "name", None)
    assert isinstance(name, str), f"unexpected CONSTANTS entry {node!r}"
    return name


def spec_links(path: Path, lines: list[str]) -> tuple[SpecLink, ...]:
    links: list[SpecLink] = []
    for index, line in enumerate(lines):
        if not SPEC_COMMENT_LOOSE.match(line):
            continue
        line_number = index + 1
        match = SPEC_COMMENT.match(line.rstrip())
        assert match, (
            f"{path.name}:{line_number}: {line.strip()!r} is not of the form "
            "'\\* spec: verity_spec.<module>.<function>' at the start of a line"
        )
        following = [
            later
            for later in lines[index + 1 :]
            if later.strip() and not later.lstrip().startswith("\\*")
        ]
        head = DEFINITION_HEAD.match(following[0]) if following else None
        assert head, f"{path.name}:{line_number}: no operator definition follows the spec comment"
        links.append(
            SpecLink(line_number, match["module"], match["function"], head["name"]),
        )
    return tuple(links)


@functools.cache
def load_model(path: Path) -> Model:
    text = path.read_text(encoding="utf-8")
    try:
        tree = parse(text)
    except ValueError as error:
        pytest.fail(f"{path.name} does not parse: {error}")
    assert tree is not None, f"{path.name} parsed to nothing"
    lines = text.splitlines()
    constants: set[str] = set()
    definitions: dict[str, str] = {}
    for unit in tree.units:
        kind = type(unit).__name__
        if kind == "Constants":
            constants.update(declared_name(node) for node in unit.names)
        elif kind == "OperatorDefinition" and isinstance(unit.name, str):
            # Positions count lines from 0; take whole lines of the definition.
            source = "\n".join(lines[unit.start.line : unit.end.line + 1])
            definitions[unit.name] = source
    return Model(
        path=path,
        module_name=str(tree.name),
        constants=frozenset(constants),
        definitions=definitions,
        links=spec_links(path, lines),
    )


def load_config(path: Path) -> Config:
    tokens = CFG_TOKEN.findall(without_comments_and_strings(path.read_text(encoding="utf-8")))
    constants: set[str] = set()
    operators: dict[str, list[str]] = {}
    section: str | None = None
    for position, token in enumerate(tokens):
        following = tokens[position + 1] if position + 1 < len(tokens) else ""
        if token in CFG_OPERATOR_SECTIONS or token in CFG_CONSTANT_SECTIONS:
            section = token
        elif token in CFG_OTHER_SECTIONS:
            section = None
        elif section in CFG_CONSTANT_SECTIONS:
            # `Name = value` or `Name <- Operator`; names inside values are model values.
            if IDENTIFIER.fullmatch(token) and following in {"=", "<-"}:
                constants.add(token)
        elif section is not None and IDENTIFIER.fullmatch(token):
            operators.setdefault(CFG_OPERATOR_SECTIONS[section], []).append(token)
    return Config(constants=frozenset(constants), operators=operators)


def is_action(definition: str) -> bool:
    """Whether a definition is an action: it primes a variable or says UNCHANGED."""
    body = without_comments_and_strings(definition.split("==", 1)[1])
    return "'" in body or re.search(r"\bUNCHANGED\b", body) is not None


def test_tla_folder_has_models() -> None:
    names = [path.name for path in model_paths()]
    assert "HashChain.tla" in names, f"tla/ holds {names}"


def test_parser_rejects_a_broken_module() -> None:
    # Without this, "it parsed" would prove nothing about a model with a typo.
    broken = "---- MODULE Broken ----\nFoo == (1 +\n====\n"
    with pytest.raises(ValueError):
        parse(broken)


@pytest.mark.parametrize("path", model_paths(), ids=lambda path: path.name)
def test_model_parses_and_is_named_after_its_file(path: Path) -> None:
    model = load_model(path)
    assert model.module_name == path.stem
    assert "Spec" in model.definitions or "Next" in model.definitions, (
        f"{path.name} defines neither Spec nor Next"
    )


@pytest.mark.parametrize("path", model_paths(), ids=lambda path: path.name)
def test_spec_comments_name_defined_operators_and_existing_functions(path: Path) -> None:
    model = load_model(path)
    assert model.links, f"{path.name} has no '\\* spec:' comments"
    for link in model.links:
        where = f"{path.name}:{link.line_number}"
        assert link.operator in model.definitions, f"{where}: {link.operator} is not defined"
        module = importlib.import_module(link.module)
        function = getattr(module, link.function, None)
        assert callable(function), f"{where}: {link.module} has no function {link.function}"


@pytest.mark.parametrize("path", model_paths(), ids=lambda path: path.name)
def test_every_action_in_next_names_its_spec_function(path: Path) -> None:
    model = load_model(path)
    next_name = load_config(path.with_suffix(".cfg")).operators.get("NEXT", ["Next"])[0]
    assert next_name in model.definitions, f"{path.name} defines no {next_name}"
    body = without_comments_and_strings(model.definitions[next_name].split("==", 1)[1])
    referenced = set(IDENTIFIER.findall(body)) & model.definitions.keys()
    actions = {name for name in referenced if is_action(model.definitions[name])}
    assert actions, f"{next_name} in {path.name} names no action"
    annotated = {link.operator for link in model.links}
    missing = sorted(actions - annotated)
    assert not missing, f"{path.name}: actions without a '\\* spec:' comment: {missing}"


def config_paths() -> list[tuple[Path, Path]]:
    """Every (model, config): its `.cfg`, and the `.small.cfg` CI checks when there is one."""
    pairs = [(path, path.with_suffix(".cfg")) for path in model_paths()]
    pairs += [
        (path, path.with_suffix(".small.cfg"))
        for path in model_paths()
        if path.with_suffix(".small.cfg").exists()
    ]
    return pairs


@pytest.mark.parametrize(("path", "config_path"), config_paths(), ids=lambda item: item.name)
def test_config_matches_model(path: Path, config_path: Path) -> None:
    assert config_path.is_file(), f"{path.name} has no {config_path.name}"
    model = load_model(path)
    config = load_config(config_path)
    assert config.constants == model.constants, (
        f"{config_path.name} assigns {sorted(config.constants)}, "
        f"{path.name} declares {sorted(model.constants)}"
    )
    assert config.operators.get("INVARIANTS"), f"{config_path.name} lists no invariant"
    for section, names in config.operators.items():
        undefined = sorted(set(names) - model.definitions.keys())
        assert not undefined, f"{config_path.name} {section} names undefined {undefined}"


def test_hash_chain_models_each_log_operation() -> None:
    model = load_model(TLA_FOLDER / "HashChain.tla")
    modelled = {(link.module, link.function) for link in model.links}
    expected = {
        ("verity_spec.log", name)
        for name in (
            "append",
            "append_batch",
            "append_checkpoint",
            "shutdown",
            "recover_torn_tail",
            "corrupt",
        )
    }
    assert expected <= modelled, f"HashChain.tla does not model {sorted(expected - modelled)}"
