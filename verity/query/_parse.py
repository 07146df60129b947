"""SQL text to statement objects: sqlglot parses, this module admits only the dialect.

sqlglot (Postgres grammar, NULLs sorting first ascending as the dialect says) turns
the text into a syntax tree; this module walks it and builds frozen statement
objects, refusing every node and every option it does not know. The refusal is a
whitelist: an option a later sqlglot adds is refused too, never ignored, so a
statement either means what the dialect says or raises `SqlError`.

The checks come in the order the spec model (`verity_spec.tables`) makes them, so
that a statement with several faults fails with the same kind here and there:

1. the text: its length (`SQL_TEXT_BYTES_MAX`, "limit"), valid Unicode ("syntax"),
   tokens ("syntax"), nesting (`EXPRESSION_DEPTH_MAX`) and the number of `?`
   (`PARAMETERS_MAX`) ("limit": sqlglot's parser recurses about twenty frames per
   level, and nothing is parsed before these are known); the parse, and exactly one
   statement ("syntax"); `0x..` literals and NULLS FIRST/LAST, which the tree cannot
   tell apart from accepted forms ("unsupported");
2. the statement's shape, in the order the walk meets its parts ("unsupported";
   "limit" for a name, a numeric literal, a `$n`, an IN list or a column list over its
   bound; "syntax" for a malformed list: a name twice, an empty IN, two primary keys);
3. parameters (`Parsed.parameter_fault`, raised when the statement runs).

Names are lower-cased (identifiers are case-insensitive, quoted or not). The k-th
`?` in the text is read as `$k` before parsing, so both styles number parameters
the same way (from 1 in the text, from 0 in `Param.index`). Nothing here looks at
the store: whether a table or column exists and whether a value fits its column
is decided later, against the table as of the query (`_plan`, `_engine`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, final

import sqlglot
import sqlglot.errors
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.expressions.datatypes import DType
from sqlglot.tokenizer_core import Token, TokenType

from verity.errors import SqlError, SqlLimitExceeded, SqlSyntaxError, UnsupportedSql
from verity.query._limits import (
    EXPRESSION_DEPTH_MAX,
    IN_LIST_MAX,
    NAME_BYTES_MAX,
    NUMBER_CHARS_MAX,
    PARAMETERS_MAX,
    SQL_TEXT_BYTES_MAX,
    TABLE_COLUMNS_MAX,
    over_limit,
)
from verity.query._types import ColumnType, Value

__all__ = [
    "And",
    "ColumnSpec",
    "Comparison",
    "Const",
    "CreateIndex",
    "CreateTable",
    "Delete",
    "DropTable",
    "InList",
    "Insert",
    "IsNull",
    "Not",
    "Operand",
    "Or",
    "OrderKey",
    "Param",
    "Parsed",
    "Predicate",
    "Select",
    "Statement",
    "Update",
    "parse",
    "predicate_columns",
    "render_operand",
]


@final
class VeritySql(Postgres):
    """Postgres grammar; NULLs are smaller than every value (first ascending, last
    descending), as the dialect orders them."""

    NULL_ORDERING = "nulls_are_small"


# --- operands and predicates ----------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class Param:
    """A parameter: `index` counts from 0; `text` is how the SQL wrote it."""

    index: int
    text: str


@final
@dataclass(frozen=True, slots=True)
class Const:
    """A literal value written in the SQL."""

    value: Value


Operand: TypeAlias = Param | Const

ComparisonOp: TypeAlias = Literal["=", "<>", "<", "<=", ">", ">="]


@final
@dataclass(frozen=True, slots=True)
class Comparison:
    """`column op operand` (a comparison written `value op column` is turned around)."""

    column: str
    op: ComparisonOp
    operand: Operand


@final
@dataclass(frozen=True, slots=True)
class InList:
    """`column IN (operands...)`."""

    column: str
    operands: tuple[Operand, ...]


@final
@dataclass(frozen=True, slots=True)
class IsNull:
    """`column IS NULL`, or `IS NOT NULL` when `negated`."""

    column: str
    negated: bool


@final
@dataclass(frozen=True, slots=True)
class And:
    """All of `items` (nested ANDs are flattened)."""

    items: tuple[Predicate, ...]


@final
@dataclass(frozen=True, slots=True)
class Or:
    """Any of `items` (nested ORs are flattened)."""

    items: tuple[Predicate, ...]


@final
@dataclass(frozen=True, slots=True)
class Not:
    """The negation of `item` (three-valued: NOT unknown is unknown)."""

    item: Predicate


Predicate: TypeAlias = Comparison | InList | IsNull | And | Or | Not

# --- statements ------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """A column of CREATE TABLE."""

    name: str
    type: ColumnType
    not_null: bool


@final
@dataclass(frozen=True, slots=True)
class CreateTable:
    """CREATE TABLE; `primary_key` names columns of `columns`."""

    table: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]


@final
@dataclass(frozen=True, slots=True)
class CreateIndex:
    """CREATE INDEX `index` ON `table` (`column`)."""

    index: str
    table: str
    column: str


@final
@dataclass(frozen=True, slots=True)
class DropTable:
    """DROP TABLE `table`."""

    table: str


@final
@dataclass(frozen=True, slots=True)
class Insert:
    """INSERT; `columns` None means all columns in table order."""

    table: str
    columns: tuple[str, ...] | None
    rows: tuple[tuple[Operand, ...], ...]


@final
@dataclass(frozen=True, slots=True)
class Update:
    """UPDATE `table` SET column = operand, ... [WHERE]."""

    table: str
    assignments: tuple[tuple[str, Operand], ...]
    where: Predicate | None


@final
@dataclass(frozen=True, slots=True)
class Delete:
    """DELETE FROM `table` [WHERE]."""

    table: str
    where: Predicate | None


@final
@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ORDER BY key (NULLs first ascending, last descending)."""

    column: str
    descending: bool


@final
@dataclass(frozen=True, slots=True)
class Select:
    """SELECT; `columns` None means `*`; `count` means `COUNT(*)`."""

    table: str
    columns: tuple[str, ...] | None
    count: bool
    where: Predicate | None
    order_by: tuple[OrderKey, ...]
    limit: Operand | None
    offset: Operand | None


Statement: TypeAlias = CreateTable | CreateIndex | DropTable | Insert | Update | Delete | Select


@final
@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed statement and the parameters it needs.

    `parameter_count` is how many parameters a call must pass (the number of `?`,
    or the highest `$n`); `parameter_style` is "?", "$" or "" (none). When no list
    of parameters can fit the text (`?` mixed with `$n`, a gap in the numbers, `$0`,
    `:name`), `parameter_fault` says why; the statement still parses, and running it
    raises SqlError("parameter").
    """

    statement: Statement
    parameter_count: int
    parameter_style: Literal["?", "$", ""]
    parameter_fault: str | None


# --- reading the text -----------------------------------------------------------------

_INTEGER: Final = re.compile(r"[0-9]+\Z")
_DECIMAL: Final = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
_HEX_DIGITS: Final = re.compile(r"([0-9a-fA-F]{2})*\Z")
_CONSTRUCT_CHARS_MAX: Final = 80
# A `$n` with more digits (leading zeros aside) is not read: reported as 10**20.
_PARAMETER_DIGITS_READ: Final = 20
_COMPARISONS: Final[dict[type[exp.Expr], ComparisonOp]] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FLIPPED: Final[dict[ComparisonOp, ComparisonOp]] = {
    "=": "=",
    "<>": "<>",
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
}
_TYPES: Final[dict[DType, ColumnType]] = {
    DType.BIGINT: ColumnType.BIGINT,
    DType.INT: ColumnType.INTEGER,
    DType.TEXT: ColumnType.TEXT,
    DType.VARCHAR: ColumnType.TEXT,
    DType.BOOLEAN: ColumnType.BOOLEAN,
    DType.DOUBLE: ColumnType.DOUBLE,
    DType.FLOAT: ColumnType.DOUBLE,
    DType.TIMESTAMP: ColumnType.TIMESTAMP,
    DType.VARBINARY: ColumnType.BYTES,
}
_ARGUMENT_NAMES: Final = {
    "joins": "JOIN",
    "group": "GROUP BY",
    "having": "HAVING",
    "distinct": "DISTINCT",
    "with_": "WITH",
    "qualify": "QUALIFY",
    "windows": "WINDOW",
    "locks": "FOR UPDATE",
    "returning": "RETURNING",
    "conflict": "ON CONFLICT",
    "using": "USING",
    "from_": "FROM",
    "exists": "IF [NOT] EXISTS",
    "replace": "OR REPLACE",
    "unique": "UNIQUE",
    "properties": "table properties",
    "cascade": "CASCADE",
    "alias": "alias",
    "table": "qualified name",
    "db": "schema-qualified name",
    "catalog": "catalog-qualified name",
    "concurrently": "CONCURRENTLY",
    "temporary": "TEMPORARY",
    "default": "DEFAULT VALUES",
    "query": "subquery",
    "allow_null": "NULL constraint",
    "desc": "DESC",
}


def _construct(node: exp.Expr) -> str:
    """How an error message names a piece of SQL: its text, shortened."""
    try:
        text = node.sql(dialect=VeritySql)
    except sqlglot.errors.SqlglotError:
        text = ""
    if len(text) > _CONSTRUCT_CHARS_MAX:
        text = text[: _CONSTRUCT_CHARS_MAX - 3] + "..."
    return text or node.key.upper()


def _is_absent(value: object) -> bool:
    """sqlglot leaves an option the text did not use as None, False or []."""
    return value is None or value is False or (isinstance(value, list) and not value)


def _only(node: exp.Expr, allowed: frozenset[str], where: str) -> None:
    """Refuse every option of `node` outside `allowed` (the whitelist)."""
    for name, value in node.args.items():
        if name in allowed or _is_absent(value):
            continue
        construct = _ARGUMENT_NAMES.get(name, name.upper())
        raise UnsupportedSql(construct, f"{where} does not support {construct}")


def _expect(node: object, kind: type[exp.Expr], where: str) -> exp.Expr:
    """`node`, which must be exactly a `kind` node (not a subclass, not missing)."""
    if type(node) is not kind:
        if isinstance(node, exp.Expr):
            raise UnsupportedSql(_construct(node), f"{where} expects {kind.__name__}")
        raise UnsupportedSql(f"missing {kind.__name__}", f"{where} expects {kind.__name__}")
    assert isinstance(node, exp.Expr)
    return node


def _tokens(sql: str) -> list[Token]:
    try:
        return sqlglot.tokenize(sql, read=VeritySql)
    except sqlglot.errors.SqlglotError as error:
        raise SqlSyntaxError(sql[:_CONSTRUCT_CHARS_MAX], _first_line(error)) from None


def _first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


# `expression_depth` (the spec's): a bracket opens a level until its closing token; a
# prefix operator, which sqlglot reads by recursing into what follows, opens one until
# the next AND, OR or comma, or the end of its bracket.
_OPENING: Final = frozenset(
    {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
)
_CLOSING: Final = frozenset(
    {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
)
_PREFIX: Final = frozenset(
    {
        TokenType.NOT,
        TokenType.DASH,
        TokenType.PLUS,
        TokenType.TILDE,
        TokenType.RLIKE,  # `~` in the PostgreSQL tokenizer
        TokenType.PIPE_SLASH,
        TokenType.DPIPE_SLASH,
        TokenType.INTERVAL,
        TokenType.ANY,
        TokenType.ALL,
        TokenType.SOME,
        TokenType.EXISTS,
        TokenType.VARIADIC,
    }
)
_PREFIX_ENDS: Final = frozenset({TokenType.AND, TokenType.OR, TokenType.COMMA})


def _expression_depth(tokens: list[Token]) -> int:
    """The most levels of brackets and prefix operators open at once in `tokens`."""
    open_levels: list[TokenType] = []  # innermost last
    deepest = 0
    for token in tokens:
        kind = token.token_type
        if kind in _CLOSING or kind in _PREFIX_ENDS:
            while open_levels and open_levels[-1] in _PREFIX:
                open_levels.pop()
            if kind in _CLOSING and open_levels:
                open_levels.pop()
        elif kind in _OPENING or kind in _PREFIX:
            open_levels.append(kind)
            deepest = max(deepest, len(open_levels))
    return deepest


def _refused_by_tokens(sql: str, tokens: list[Token]) -> str | None:
    """`0x..` (an integer to PostgreSQL, bytes to sqlglot) and NULLS FIRST/LAST (whose
    absence sqlglot fills in), which the tree cannot tell apart from accepted forms."""
    for token, following in zip(tokens, [*tokens[1:], None], strict=True):
        text = sql[token.start : token.end + 1]
        if token.token_type == TokenType.HEX_STRING and text[:2].upper() != "X'":
            return text
        after = "" if following is None else following.text.upper()
        if token.text.upper() == "NULLS" and after in ("FIRST", "LAST"):
            return f"NULLS {after}"
    return None


def _numbered_question_marks(sql: str, tokens: list[Token]) -> str:
    """The text with its k-th `?` token (never one inside a string or comment) as `$k`."""
    pieces: list[str] = []
    copied_up_to = 0
    number = 0
    for token in tokens:
        if token.token_type == TokenType.PLACEHOLDER and token.text == "?":
            number += 1
            pieces.append(sql[copied_up_to : token.start])
            pieces.append(f" ${number} ")
            copied_up_to = token.end + 1
    pieces.append(sql[copied_up_to:])
    return "".join(pieces)


class _Parameters:
    """The parameters the walk meets; `text` is how EXPLAIN shows them."""

    def __init__(self, question_marks: bool) -> None:
        self.question_marks = question_marks
        self.numbers: set[int] = set()
        self.other_style: str | None = None

    def numbered(self, number: int) -> Param:
        self.numbers.add(number)
        return Param(number - 1, "?" if self.question_marks else f"${number}")

    def refused(self, text: str) -> Param:
        # `$0`, `:name`, `%s`: no parameter list fits; reported as "parameter" when run.
        if self.other_style is None:
            self.other_style = text
        return Param(-1, text)


def parse(sql: str) -> Parsed:
    """The statement `sql` holds; SqlError ("syntax", "unsupported" or "limit") if it is
    not one of the dialect. Parameter faults are kept in `Parsed.parameter_fault`."""
    _check_text(sql)
    try:
        return _parse_checked(sql)
    except RecursionError:
        pass
    return _parse_on_fresh_stack(sql)


def _parse_checked(sql: str) -> Parsed:
    """`parse(sql)` of a `_check_text`ed text, on the caller's stack."""
    many_rows = _parse_many_rows(sql)
    if many_rows is not None:
        return many_rows
    return _parse_text(sql)


def _parse_on_fresh_stack(sql: str) -> Parsed:
    """`_parse_checked(sql)` on a new thread's empty stack.

    Within `EXPRESSION_DEPTH_MAX`, sqlglot's parser needs up to about 800 of the 1,000
    Python frames a thread has; when the caller's own stack leaves fewer, the parse is
    done again here, so that the caller's depth never changes the answer. Out of stack
    here too (a construct that recurses more than its tokens show), the statement is
    over the bound.
    """
    outcome: list[Parsed | BaseException] = []

    def run() -> None:
        try:
            outcome.append(_parse_checked(sql))
        except BaseException as error:  # handed to the caller's thread below
            outcome.append(error)

    thread = threading.Thread(target=run, name="verity-sql-parse", daemon=True)
    thread.start()
    thread.join()
    assert len(outcome) == 1
    result = outcome[0]
    if isinstance(result, RecursionError):
        depth = _expression_depth(_tokens(sql))
        raise SqlLimitExceeded(
            "EXPRESSION_DEPTH_MAX",
            depth,
            EXPRESSION_DEPTH_MAX,
            "a statement that nests too deeply for sqlglot's parser",
        )
    if isinstance(result, BaseException):
        raise result
    return result


def _check_text(sql: str) -> None:
    """The text is at most `SQL_TEXT_BYTES_MAX` bytes of UTF-8 (measured before anything
    else is done with it), and valid Unicode."""
    if len(sql) > SQL_TEXT_BYTES_MAX:  # every character takes at least one byte
        raise over_limit("SQL_TEXT_BYTES_MAX", len(sql))
    if sql.isascii():
        return
    encoded = sql.encode("utf-8", "surrogatepass")  # at most 4 MiB
    if len(encoded) > SQL_TEXT_BYTES_MAX:
        raise over_limit("SQL_TEXT_BYTES_MAX", len(encoded))
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as error:
        raise SqlSyntaxError(
            f"character {error.start}", "the text is not valid Unicode (a lone surrogate)"
        ) from None


# `INSERT ... VALUES` up to its rows, when the text before them holds only names,
# blanks, parentheses and commas (no literal, comment, quote or parameter).
_MANY_ROWS_HEAD: Final = re.compile(
    r"[ \t\r\n]*INSERT[ \t\r\n][\w \t\r\n(),]*?(?<!\w)VALUES(?!\w)", re.IGNORECASE
)
_BLANKS: Final = re.compile(r"[ \t\r\n]+")
_MANY_ROWS_MIN: Final = 3


def _parse_many_rows(sql: str) -> Parsed | None:
    """`parse(sql)` for an INSERT whose rows are all `(?, ..., ?)` of one width, or None
    for any other text.

    sqlglot takes about 50 us per value, so a 2,000-parameter batch INSERT would take
    a tenth of a second to parse. Such a text is its head (`INSERT INTO t (...) VALUES`)
    and copies of one row, so sqlglot parses the head with two rows, and the other rows
    are the same row with the following parameter numbers. Anything unexpected
    (including a text sqlglot refuses) returns None, and the whole text is parsed.
    """
    head = _MANY_ROWS_HEAD.match(sql)
    if head is None:
        return None
    rows_text = _BLANKS.sub("", sql[head.end() :])
    row = rows_text[: rows_text.find(")") + 1]
    width = row.count("?")
    if width == 0 or row != "(" + ",".join("?" * width) + ")":
        return None
    count, remainder = divmod(len(rows_text) + 1, len(row) + 1)
    if remainder or count < _MANY_ROWS_MIN or count * width > PARAMETERS_MAX:
        return None  # (too many parameters: the whole text is read, to fail in order)
    if rows_text != ",".join([row] * count):
        return None
    try:
        two_rows = _parse_text(f"{sql[: head.end()]} {row},{row}")
    except SqlError:
        return None
    statement = two_rows.statement
    if (
        not isinstance(statement, Insert)
        or statement.rows != _question_mark_rows(2, width)
        or two_rows != Parsed(statement, 2 * width, "?", None)
    ):
        return None
    rows = _question_mark_rows(count, width)
    assert len(rows) == count
    return Parsed(Insert(statement.table, statement.columns, rows), count * width, "?", None)


def _question_mark_rows(count: int, width: int) -> tuple[tuple[Operand, ...], ...]:
    """`count` rows of `width` `?` parameters, numbered in text order."""
    return tuple(
        tuple(Param(first + column, "?") for column in range(width))
        for first in range(0, count * width, width)
    )


def _parse_text(sql: str) -> Parsed:
    """`parse(sql)`, by sqlglot's parse of the whole text (already `_check_text`ed)."""
    tokens = _tokens(sql)
    depth = _expression_depth(tokens)
    if depth > EXPRESSION_DEPTH_MAX:
        raise over_limit("EXPRESSION_DEPTH_MAX", depth)
    question_marks = sum(
        1 for token in tokens if token.token_type == TokenType.PLACEHOLDER and token.text == "?"
    )
    if question_marks > PARAMETERS_MAX:
        raise over_limit("PARAMETERS_MAX", question_marks, f"{question_marks} ? parameters")
    dollar_parameters = sum(1 for token in tokens if token.token_type == TokenType.PARAMETER)
    text = _numbered_question_marks(sql, tokens) if question_marks else sql
    try:
        trees = sqlglot.parse(text, read=VeritySql)
    except sqlglot.errors.ParseError as error:
        details = error.errors[0] if error.errors else {}
        near = str(details.get("highlight") or sql)[:_CONSTRUCT_CHARS_MAX]
        reason = str(details.get("description") or _first_line(error))
        raise SqlSyntaxError(near, reason) from None
    except sqlglot.errors.SqlglotError as error:
        raise SqlSyntaxError(sql[:_CONSTRUCT_CHARS_MAX], _first_line(error)) from None
    statements = [tree for tree in trees if tree is not None]
    if len(statements) != 1:
        raise SqlSyntaxError(
            sql[:_CONSTRUCT_CHARS_MAX], f"{len(statements)} statements; pass exactly one"
        )
    refused = _refused_by_tokens(sql, tokens)
    if refused is not None:
        raise UnsupportedSql(refused, "not part of the VerityDB dialect")
    parameters = _Parameters(question_marks > 0)
    statement = _statement(statements[0], parameters)
    numbers = parameters.numbers
    fault: str | None = None
    if question_marks and dollar_parameters:
        fault = "mixes ? with $n parameters"
    elif parameters.other_style is not None:
        fault = f"{parameters.other_style}: parameters are ? or $1, $2, ..."
    elif numbers and numbers != set(range(1, max(numbers) + 1)):
        used = ", ".join(f"${number}" for number in sorted(numbers))
        fault = f"parameters {used} leave a gap; number them $1, $2, ..."
    count = max(numbers) if numbers else 0
    style: Literal["?", "$", ""] = "?" if question_marks else ("$" if numbers else "")
    return Parsed(statement, count, style, fault)


def _statement(tree: exp.Expr, parameters: _Parameters) -> Statement:
    kind = type(tree)
    if kind is exp.Create:
        created = str(tree.args.get("kind") or "").upper()
        if created == "TABLE":
            return _create_table(tree)
        if created == "INDEX":
            return _create_index(tree)
        raise UnsupportedSql(f"CREATE {created}".strip(), "only CREATE TABLE and CREATE INDEX")
    if kind is exp.Drop:
        return _drop(tree)
    if kind is exp.Insert:
        return _insert(tree, parameters)
    if kind is exp.Update:
        return _update(tree, parameters)
    if kind is exp.Delete:
        return _delete(tree, parameters)
    if kind is exp.Select:
        return _select(tree, parameters)
    if isinstance(tree, exp.SetOperation):
        raise UnsupportedSql(kind.__name__.upper(), "set operations are not supported")
    if isinstance(tree, exp.Command):
        raise UnsupportedSql(str(tree.this).upper(), "not a statement of the VerityDB dialect")
    raise UnsupportedSql(_construct(tree), "not a statement of the VerityDB dialect")


# --- names and values ------------------------------------------------------------------


def _strip_parens(node: exp.Expr) -> exp.Expr:
    while type(node) is exp.Paren:
        _only(node, frozenset({"this"}), "parentheses")
        node = node.this
    return node


def _name(node: object, what: str) -> str:
    identifier = _expect(node, exp.Identifier, f"a {what} name")
    _only(identifier, frozenset({"this", "quoted"}), f"a {what} name")
    name = str(identifier.this).lower()
    if not name:
        raise SqlSyntaxError('""', f"an empty {what} name")
    if len(name) > NAME_BYTES_MAX or not name.isascii():
        size = len(name.encode("utf-8"))
        if size > NAME_BYTES_MAX:
            raise over_limit("NAME_BYTES_MAX", size, f"{what} name {name[:40]!r}...")
    return name


def _table_name(node: object, where: str) -> str:
    if isinstance(node, exp.Subquery | exp.Select):
        raise UnsupportedSql("subquery", f"{where} reads one table, not a subquery")
    table = _expect(node, exp.Table, where)
    _only(table, frozenset({"this"}), where)
    return _name(table.this, "table")


def _column_name(node: object, where: str) -> str:
    column = _expect(node, exp.Column, where)
    _only(column, frozenset({"this"}), where)
    return _name(column.this, "column")


def _no_duplicates(names: list[str], what: str) -> None:
    """No name twice in `names` (the first repeat is reported); linear in their number."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SqlSyntaxError(name, f"{what} {name!r} named twice")
        seen.add(name)


def _number(text: str) -> int | float:
    """A numeric literal: digits only is an int; with a point or exponent, a float."""
    if len(text) > NUMBER_CHARS_MAX:
        raise over_limit("NUMBER_CHARS_MAX", len(text), f"{text[:20]}...")
    if _INTEGER.match(text):
        return int(text)
    if _DECIMAL.match(text):
        return float(text)
    raise SqlSyntaxError(text, "not a number")


def _operand(node: exp.Expr, parameters: _Parameters) -> Operand:
    """A literal, a parameter, a value in parentheses, or minus a numeric literal."""
    node = _strip_parens(node)
    kind = type(node)
    if kind is exp.Null:
        return Const(None)
    if kind is exp.Boolean:
        _only(node, frozenset({"this"}), "TRUE/FALSE")
        return Const(bool(node.this))
    if kind is exp.Literal:
        _only(node, frozenset({"this", "is_string"}), "a literal")
        if node.args.get("is_string"):
            return Const(str(node.this))
        return Const(_number(str(node.this)))
    if kind is exp.Neg:
        _only(node, frozenset({"this"}), "minus")
        number = _strip_parens(node.this)
        if type(number) is not exp.Literal or number.args.get("is_string"):
            raise UnsupportedSql(_construct(node), "only a number may follow a minus")
        _only(number, frozenset({"this", "is_string"}), "a literal")
        return Const(-_number(str(number.this)))
    if kind is exp.HexString:
        _only(node, frozenset({"this"}), "X'...'")
        digits = str(node.this)
        if not _HEX_DIGITS.match(digits):
            raise SqlSyntaxError(f"X'{digits}'", "not an even number of hex digits")
        return Const(bytes.fromhex(digits))
    if kind is exp.Parameter:
        number = node.this
        if type(number) is exp.Literal and _INTEGER.match(str(number.this)):
            # The number is checked before it is read or used: `$99999999999` must not
            # make anything of that size.
            digits = str(number.this).lstrip("0") or "0"
            if len(digits) > _PARAMETER_DIGITS_READ:
                raise over_limit("PARAMETERS_MAX", 10**_PARAMETER_DIGITS_READ, f"${digits[:20]}...")
            value = int(digits)
            if value > PARAMETERS_MAX:
                raise over_limit("PARAMETERS_MAX", value, f"${value}")
            if value >= 1:
                return parameters.numbered(value)
        return parameters.refused(_construct(node))
    if kind is exp.Placeholder:
        return parameters.refused(_construct(node))
    raise UnsupportedSql(_construct(node), "expressions are not supported; only literals")


# --- conditions ------------------------------------------------------------------------


def _chain(node: exp.Expr, kind: type[exp.Expr]) -> list[exp.Expr]:
    """The operands of `a AND b AND c` (or OR), left to right (sqlglot nests leftwards)."""
    operands: list[exp.Expr] = []
    pending = [node]
    while pending:
        current = pending.pop()
        if type(current) is kind:
            _only(current, frozenset({"this", "expression"}), kind.__name__.upper())
            pending.append(current.expression)
            pending.append(current.this)
        else:
            operands.append(current)
    assert len(operands) >= 2
    return operands


def _predicate(node: exp.Expr, parameters: _Parameters) -> Predicate:
    node = _strip_parens(node)
    kind = type(node)
    if kind is exp.And:
        return And(tuple(_predicate(item, parameters) for item in _chain(node, exp.And)))
    if kind is exp.Or:
        return Or(tuple(_predicate(item, parameters) for item in _chain(node, exp.Or)))
    if kind is exp.Not:
        _only(node, frozenset({"this"}), "NOT")
        return Not(_predicate(node.this, parameters))
    op = _COMPARISONS.get(kind)
    if op is not None:
        _only(node, frozenset({"this", "expression"}), "a comparison")
        left, right = _strip_parens(node.this), _strip_parens(node.expression)
        if type(left) is exp.Column and type(right) is not exp.Column:
            return Comparison(_column_name(left, "a comparison"), op, _operand(right, parameters))
        if type(right) is exp.Column and type(left) is not exp.Column:
            column = _column_name(right, "a comparison")
            return Comparison(column, _FLIPPED[op], _operand(left, parameters))
        raise UnsupportedSql(_construct(node), "a comparison is of a column and a value")
    if kind is exp.In:
        _only(node, frozenset({"this", "expressions"}), "IN")
        column = _column_name(_strip_parens(node.this), "IN")
        if not node.expressions:
            raise SqlSyntaxError("IN ()", "IN needs at least one value")
        if len(node.expressions) > IN_LIST_MAX:
            raise over_limit("IN_LIST_MAX", len(node.expressions), f"{column} IN (...)")
        return InList(column, tuple(_operand(item, parameters) for item in node.expressions))
    if kind is exp.Is:
        _only(node, frozenset({"this", "expression", "negate"}), "IS")
        if type(node.expression) is not exp.Null:
            raise UnsupportedSql(_construct(node), "only IS NULL and IS NOT NULL")
        column = _column_name(_strip_parens(node.this), "IS NULL")
        return IsNull(column, bool(node.args.get("negate")))
    raise UnsupportedSql(_construct(node), "not a condition of the VerityDB dialect")


def _where(node: exp.Expr, parameters: _Parameters) -> Predicate | None:
    where = node.args.get("where")
    if where is None:
        return None
    _only(_expect(where, exp.Where, "WHERE"), frozenset({"this"}), "WHERE")
    return _predicate(where.this, parameters)


def predicate_columns(predicate: Predicate | None) -> list[str]:
    """The columns `predicate` names, in text order."""
    if predicate is None:
        return []
    if isinstance(predicate, Comparison | InList | IsNull):
        return [predicate.column]
    if isinstance(predicate, Not):
        return predicate_columns(predicate.item)
    return [name for item in predicate.items for name in predicate_columns(item)]


# --- walking the statements ------------------------------------------------------------

_SELECT_ARGS: Final = frozenset({"expressions", "from_", "where", "order", "limit", "offset"})


def _select(node: exp.Expr, parameters: _Parameters) -> Select:
    _only(node, _SELECT_ARGS, "SELECT")
    outputs = list(node.expressions)
    count = len(outputs) == 1 and type(outputs[0]) is exp.Count
    columns: tuple[str, ...] | None = None
    if count:
        _only(outputs[0], frozenset({"this", "big_int"}), "COUNT")
        _only(_expect(outputs[0].this, exp.Star, "COUNT"), frozenset(), "COUNT(*)")
    elif len(outputs) == 1 and type(outputs[0]) is exp.Star:
        _only(outputs[0], frozenset(), "SELECT *")
    else:
        for output in outputs:
            if type(output) is exp.Alias:
                raise UnsupportedSql(_construct(output), "column aliases are not supported")
        columns = tuple(_column_name(output, "SELECT") for output in outputs)
        if not columns:
            raise SqlSyntaxError("SELECT", "nothing selected")
    source = node.args.get("from_")
    if source is None:
        raise UnsupportedSql("SELECT without FROM", "a query reads one table")
    _only(_expect(source, exp.From, "FROM"), frozenset({"this"}), "FROM")
    table = _table_name(source.this, "FROM")
    where = _where(node, parameters)
    order_by: list[OrderKey] = []
    order = node.args.get("order")
    if order is not None:
        _only(_expect(order, exp.Order, "ORDER BY"), frozenset({"expressions"}), "ORDER BY")
        for part in order.expressions:
            # `nulls_first` is what sqlglot fills in (the dialect's order, as VeritySql says);
            # an explicit NULLS FIRST/LAST was refused from the tokens.
            ordered = _expect(part, exp.Ordered, "ORDER BY")
            _only(ordered, frozenset({"this", "desc", "nulls_first"}), "ORDER BY")
            name = _column_name(ordered.this, "ORDER BY")
            order_by.append(OrderKey(name, bool(ordered.args.get("desc"))))
    if count and order_by:
        raise UnsupportedSql("COUNT(*) with ORDER BY", "COUNT(*) gives one row")
    limit = _count_operand(node, "limit", exp.Limit, parameters)
    offset = _count_operand(node, "offset", exp.Offset, parameters)
    return Select(table, columns, count, where, tuple(order_by), limit, offset)


def _count_operand(
    node: exp.Expr, name: str, kind: type[exp.Expr], parameters: _Parameters
) -> Operand | None:
    clause = node.args.get(name)
    if clause is None:
        return None
    keyword = name.upper()
    _only(_expect(clause, kind, keyword), frozenset({"expression"}), keyword)
    return _operand(clause.expression, parameters)


def _insert(node: exp.Expr, parameters: _Parameters) -> Insert:
    _only(node, frozenset({"this", "expression"}), "INSERT")
    target = node.this
    columns: tuple[str, ...] | None = None
    if type(target) is exp.Schema:
        _only(target, frozenset({"this", "expressions"}), "INSERT")
        names = [_name(part, "column") for part in target.expressions]
        _no_duplicates(names, "column")
        columns = tuple(names)
        target = target.this
    table = _table_name(target, "INSERT")
    values = node.expression
    if isinstance(values, exp.Query):
        raise UnsupportedSql("INSERT ... SELECT", "INSERT takes VALUES (...), (...)")
    _only(_expect(values, exp.Values, "INSERT"), frozenset({"expressions"}), "VALUES")
    rows: list[tuple[Operand, ...]] = []
    for row in values.expressions:
        _only(_expect(row, exp.Tuple, "VALUES"), frozenset({"expressions"}), "VALUES")
        rows.append(tuple(_operand(item, parameters) for item in row.expressions))
    return Insert(table, columns, tuple(rows))


def _update(node: exp.Expr, parameters: _Parameters) -> Update:
    _only(node, frozenset({"this", "expressions", "where"}), "UPDATE")
    table = _table_name(node.this, "UPDATE")
    assignments: list[tuple[str, Operand]] = []
    for assignment in node.expressions:
        equals = _expect(assignment, exp.EQ, "SET")
        _only(equals, frozenset({"this", "expression"}), "SET")
        column = _column_name(equals.this, "SET")
        assignments.append((column, _operand(equals.expression, parameters)))
    _no_duplicates([column for column, _ in assignments], "column")
    return Update(table, tuple(assignments), _where(node, parameters))


def _delete(node: exp.Expr, parameters: _Parameters) -> Delete:
    _only(node, frozenset({"this", "where"}), "DELETE")
    return Delete(_table_name(node.this, "DELETE"), _where(node, parameters))


def _column_type(node: object) -> ColumnType:
    data_type = _expect(node, exp.DataType, "a column type")
    construct = _construct(data_type)
    _only(data_type, frozenset({"this", "kind", "nested"}), "a column type")
    if data_type.this is DType.USERDEFINED:
        declared = data_type.args.get("kind")
        if type(declared) is exp.Identifier and str(declared.this).lower() == "bytes":
            return ColumnType.BYTES
        raise UnsupportedSql(construct, "not a column type of the VerityDB dialect")
    found = _TYPES.get(data_type.this)
    if found is None or data_type.args.get("kind") is not None:
        raise UnsupportedSql(construct, "not a column type of the VerityDB dialect")
    return found


def _empty_index_parameters(node: object) -> None:
    """sqlglot attaches an empty IndexParameters to every PRIMARY KEY; INCLUDE etc. fill it."""
    if node is not None:
        parameters = _expect(node, exp.IndexParameters, "PRIMARY KEY")
        _only(parameters, frozenset(), "PRIMARY KEY")


def _create_table(node: exp.Expr) -> CreateTable:
    _only(node, frozenset({"this", "kind"}), "CREATE TABLE")
    schema = _expect(node.this, exp.Schema, "CREATE TABLE")  # AS SELECT has no Schema
    _only(schema, frozenset({"this", "expressions"}), "CREATE TABLE")
    table = _table_name(schema.this, "CREATE TABLE")
    column_count = sum(1 for item in schema.expressions if type(item) is exp.ColumnDef)
    if column_count > TABLE_COLUMNS_MAX:
        raise over_limit("TABLE_COLUMNS_MAX", column_count, f"CREATE TABLE {table}")
    columns: list[ColumnSpec] = []
    primary_keys: list[tuple[str, ...]] = []
    for item in schema.expressions:
        if type(item) is exp.ColumnDef:
            _only(item, frozenset({"this", "kind", "constraints"}), "a column definition")
            name = _name(item.this, "column")
            if item.args.get("kind") is None:
                raise SqlSyntaxError(name, f"column {name!r} has no type")
            not_null = False
            for constraint in item.args.get("constraints") or []:
                _expect(constraint, exp.ColumnConstraint, "a column constraint")
                _only(constraint, frozenset({"kind"}), "a column constraint")
                rule = constraint.args.get("kind")
                if type(rule) is exp.NotNullColumnConstraint:
                    _only(rule, frozenset(), "NOT NULL")  # allow_null: an explicit NULL
                    not_null = True
                elif type(rule) is exp.PrimaryKeyColumnConstraint:
                    _only(rule, frozenset({"include"}), "PRIMARY KEY")
                    _empty_index_parameters(rule.args.get("include"))
                    primary_keys.append((name,))
                else:
                    raise UnsupportedSql(_construct(constraint), "only NOT NULL and PRIMARY KEY")
            columns.append(ColumnSpec(name, _column_type(item.args["kind"]), not_null))
        elif type(item) is exp.PrimaryKey:
            _only(item, frozenset({"expressions", "include"}), "PRIMARY KEY")
            _empty_index_parameters(item.args.get("include"))
            key = [_name(part, "column") for part in item.expressions]
            _no_duplicates(key, "primary key column")
            primary_keys.append(tuple(key))
        else:
            raise UnsupportedSql(_construct(item), "only columns and PRIMARY KEY (...)")
    if not primary_keys:
        raise UnsupportedSql(f"table {table} without a PRIMARY KEY", "a table needs one")
    if len(primary_keys) > 1:
        raise SqlSyntaxError(f"table {table}", "several primary keys")
    _no_duplicates([column.name for column in columns], "column")
    return CreateTable(table, tuple(columns), primary_keys[0])


def _create_index(node: exp.Expr) -> CreateIndex:
    _only(node, frozenset({"this", "kind"}), "CREATE INDEX")
    index = _expect(node.this, exp.Index, "CREATE INDEX")
    _only(index, frozenset({"this", "table", "params"}), "CREATE INDEX")
    if index.this is None:
        raise UnsupportedSql("CREATE INDEX without a name", "an index needs a name")
    name = _name(index.this, "index")
    table = _table_name(index.args.get("table"), "CREATE INDEX")
    params = _expect(index.args.get("params"), exp.IndexParameters, "CREATE INDEX")
    _only(params, frozenset({"columns"}), "CREATE INDEX")
    parts = params.args.get("columns") or []
    if len(parts) != 1:
        raise UnsupportedSql(_construct(index), "an index covers exactly one column")
    part = _expect(parts[0], exp.Ordered, "an index column")
    _only(part, frozenset({"this", "nulls_first"}), "an index column")
    return CreateIndex(name, table, _column_name(part.this, "an index column"))


def _drop(node: exp.Expr) -> DropTable:
    _only(node, frozenset({"kind", "tables"}), "DROP")
    tables = node.args.get("tables") or []
    kind = str(node.args.get("kind") or "").upper()
    if kind != "TABLE":
        raise UnsupportedSql(f"DROP {kind}".strip(), "only DROP TABLE is supported")
    if len(tables) != 1:
        raise UnsupportedSql("DROP TABLE of several tables", "drop one table at a time")
    return DropTable(_table_name(tables[0], "DROP TABLE"))


def render_operand(operand: Operand) -> str:
    """An operand as EXPLAIN shows it: a parameter as written, a literal as SQL."""
    if isinstance(operand, Param):
        return operand.text
    value = operand.value
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    return repr(value)
