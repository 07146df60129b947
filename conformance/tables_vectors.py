"""Test vectors of the `tables` machine: SQL statements, results computed by the spec.

Each scenario is a list of steps, run in order against an empty tenant:

    {"op": "execute", "sql": TEXT, "params": [VALUE...], "position": N, "expect": OBS}
    {"op": "query_at", "sql": TEXT, "params": [VALUE...], "position": N, "expect": OBS}
    {"op": "reopen", "expect": {}}          close and reopen the implementation's store
    {"op": "rebuild", "expect": {}}         rebuild the store from the recorded events alone

`position` is the log position of the statement's record (gaps stand for
other records of the tenant log). VALUE and OBS are encoded as in
`verity_conformance.tables_drivers` (docs/conformance.md). Wrong-typed
arguments: `"params_value": VALUE` instead of `params` is passed as the
parameters argument itself (a str, say: "parameter"), and `"position_value":
VALUE` instead of a `query_at`'s `position` is passed as the position (a str,
a float, -1: `{"error": "invalid_argument"}`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import verity_spec.tables as spec_tables
from verity_conformance import _runner
from verity_conformance._runner import FORMAT, VectorResult
from verity_conformance.tables_drivers import (
    EngineTablesDriver,
    MemoryTablesDriver,
    Observation,
    SpecTablesDriver,
    TablesDriver,
    decode_value,
    encode_value,
    params_from_json,
    params_to_json,
)

Step = dict[str, Any]
TablesDriverFactory = Callable[[Path], TablesDriver]


def default_tables_factory(directory: Path) -> TablesDriver:
    return EngineTablesDriver(directory)


def memory_tables_factory(directory: Path) -> TablesDriver:
    """The engine over `verity.query.MemoryVersionedStore`, the machine's third side (the
    folder is not used)."""
    del directory
    return MemoryTablesDriver()


@dataclass
class Scenario:
    name: str
    description: str
    statements: list[tuple[str, str, object]]
    """(op, sql, params); op is "execute", "query_at:<back>" (positions back),
    "query_at=<tagged value>" (at that position value, JSON), "reopen" or "rebuild";
    params a tuple of values, or any other value: the parameters argument itself."""


SCHEMA = (
    "CREATE TABLE patients (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE, "
    "active BOOLEAN, photo BYTES, seen TIMESTAMP)"
)


def scenario_basics() -> Scenario:
    return Scenario(
        "basics",
        "create, insert several rows, select with every clause, update, delete, count",
        [
            ("execute", SCHEMA, ()),
            (
                "execute",
                "INSERT INTO patients VALUES (1, 'ada', 1.5, TRUE, X'00ff', 10), "
                "(2, 'bob', NULL, FALSE, NULL, 20), (3, 'cy', 3, NULL, X'', NULL)",
                (),
            ),
            ("execute", "SELECT * FROM patients", ()),
            ("execute", "SELECT name, score FROM patients WHERE score > 1 ORDER BY score DESC", ()),
            ("execute", "SELECT id FROM patients WHERE active IS NULL OR id IN (1, 2)", ()),
            ("execute", "SELECT id FROM patients ORDER BY active, id DESC LIMIT 2 OFFSET 1", ()),
            ("execute", "SELECT COUNT(*) FROM patients WHERE name <> 'bob'", ()),
            ("execute", "UPDATE patients SET score = ? WHERE id = ?", (9.25, 2)),
            ("execute", "DELETE FROM patients WHERE id = $1", (3,)),
            ("execute", "SELECT * FROM patients", ()),
            ("execute", "SELECT id FROM patients WHERE NOT (id = 1)", ()),
        ],
    )


def scenario_errors() -> Scenario:
    return Scenario(
        "errors",
        "every error kind; a failed statement changes nothing",
        [
            ("execute", SCHEMA, ()),
            ("execute", "INSERT INTO patients (id, name) VALUES (1, 'ada')", ()),
            ("execute", "INSERT INTO patients (id, name) VALUES (1, 'again')", ()),
            ("execute", "INSERT INTO patients (id, name) VALUES (2, 'x'), (2, 'y')", ()),
            ("execute", "INSERT INTO patients (id) VALUES (5)", ()),
            ("execute", "INSERT INTO patients (id, name) VALUES ('seven', 'x')", ()),
            ("execute", SCHEMA, ()),
            ("execute", "CREATE TABLE nokey (a BIGINT)", ()),
            ("execute", "SELECT * FROM nowhere", ()),
            ("execute", "SELECT nothing FROM patients", ()),
            ("execute", "SELECT * FROM patients JOIN other ON patients.id = other.id", ()),
            ("execute", "SELECT lower(name) FROM patients", ()),
            ("execute", "SELEC * FROM patients", ()),
            ("execute", "SELECT * FROM patients WHERE id = ?", ()),
            ("execute", "SELECT * FROM patients WHERE id = ? AND id = $1", (1,)),
            ("execute", "UPDATE patients SET id = 4 WHERE id = 1", ()),
            ("execute", "SELECT COUNT(*) FROM patients", ()),
        ],
    )


def scenario_time_travel() -> Scenario:
    return Scenario(
        "time-travel",
        "query_at every earlier position, across UPDATE, DELETE, DROP and re-CREATE",
        [
            ("execute", "CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)", ()),
            ("execute", "INSERT INTO t VALUES (1, 'one'), (2, 'two')", ()),
            ("query_at:1", "SELECT * FROM t", ()),
            ("execute", "UPDATE t SET v = 'uno' WHERE k = 1", ()),
            ("query_at:1", "SELECT * FROM t", ()),
            ("execute", "DELETE FROM t WHERE k = 2", ()),
            ("query_at:2", "SELECT * FROM t", ()),
            ("execute", "DROP TABLE t", ()),
            ("execute", "SELECT * FROM t", ()),
            ("query_at:1", "SELECT * FROM t", ()),
            ("execute", "CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)", ()),
            ("execute", "SELECT * FROM t", ()),
            ("query_at:3", "SELECT COUNT(*) FROM t", ()),
            ("query_at:100", "SELECT * FROM t", ()),
            ("reopen", "", ()),
            ("query_at:4", "SELECT * FROM t", ()),
            ("rebuild", "", ()),
            ("query_at:4", "SELECT * FROM t", ()),
        ],
    )


def scenario_indexes() -> Scenario:
    return Scenario(
        "indexes",
        "secondary and composite keys answer equality and range predicates like a scan",
        [
            (
                "execute",
                "CREATE TABLE visits (patient BIGINT, ward TEXT, seen TIMESTAMP, "
                "PRIMARY KEY (patient, ward))",
                (),
            ),
            ("execute", "CREATE INDEX by_seen ON visits (seen)", ()),
            (
                "execute",
                "INSERT INTO visits VALUES (1, 'a', 30), (1, 'b', 10), (2, 'a', 20), "
                "(3, 'c', NULL), (2, 'b', 20)",
                (),
            ),
            ("execute", "SELECT * FROM visits WHERE seen = 20", ()),
            ("execute", "SELECT * FROM visits WHERE seen >= 15 AND seen < 40", ()),
            ("execute", "SELECT ward FROM visits WHERE patient = 1", ()),
            ("execute", "SELECT * FROM visits WHERE patient = 2 AND ward = 'b'", ()),
            ("execute", "SELECT * FROM visits WHERE patient > 1 ORDER BY seen DESC", ()),
            ("execute", "UPDATE visits SET seen = 5 WHERE seen = 20", ()),
            ("execute", "SELECT * FROM visits WHERE seen = 20", ()),
            ("execute", "SELECT * FROM visits WHERE seen = 5", ()),
            ("execute", "CREATE INDEX by_seen ON visits (ward)", ()),
        ],
    )


def scenario_limits() -> Scenario:
    """Each bound of the spec's "Limits" that a small file can show, just within and just
    over; a failure over a bound names it ({"failed": "limit", "limit": NAME})."""
    depth = spec_tables.EXPRESSION_DEPTH_MAX
    name = spec_tables.NAME_BYTES_MAX
    key_text = spec_tables.KEY_BYTES_MAX - 12  # visits' key: 9 + (3 + len(ward)) bytes
    entry_text = (spec_tables.KEY_BYTES_MAX - 15) // 2  # an index entry on ward: twice that
    values = ", ".join(["1"] * spec_tables.IN_LIST_MAX)
    return Scenario(
        "limits",
        "sizes just within and just over the bounds; over one, nothing is written",
        [
            (
                "execute",
                "CREATE TABLE visits (patient BIGINT, ward TEXT, PRIMARY KEY (patient, ward))",
                (),
            ),
            ("execute", f"CREATE TABLE {'t' * name} (k BIGINT PRIMARY KEY)", ()),
            ("execute", f"CREATE TABLE {'t' * (name + 1)} (k BIGINT PRIMARY KEY)", ()),
            (
                "execute",
                "SELECT * FROM visits WHERE " + "(" * depth + "patient = 1" + ")" * depth,
                (),
            ),
            (
                "execute",
                "SELECT * FROM visits WHERE "
                + "(" * (depth + 1)
                + "patient = 1"
                + ")" * (depth + 1),
                (),
            ),
            ("execute", "SELECT * FROM visits WHERE " + "NOT " * (depth + 1) + "patient = 1", ()),
            ("execute", "SELECT * FROM visits WHERE patient = $99999999999", ()),
            (
                "execute",
                f"SELECT * FROM visits WHERE patient = ${spec_tables.PARAMETERS_MAX}",
                (1,),
            ),
            (
                "execute",
                f"SELECT * FROM visits WHERE patient = ${spec_tables.PARAMETERS_MAX + 1}",
                (1,),
            ),
            (
                "execute",
                "SELECT * FROM visits WHERE patient < 1" + "0" * spec_tables.NUMBER_CHARS_MAX,
                (),
            ),
            ("execute", f"SELECT * FROM visits WHERE patient IN ({values}, 2)", ()),
            ("execute", "SELECT * FROM visits LIMIT ? OFFSET ?", (1, spec_tables.LIMIT_OFFSET_MAX)),
            ("execute", "SELECT * FROM visits LIMIT ?", (spec_tables.LIMIT_OFFSET_MAX + 1,)),
            ("execute", "SELECT * FROM visits LIMIT -1", ()),
            ("execute", "INSERT INTO visits VALUES (1, ?)", ("k" * key_text,)),
            ("execute", "INSERT INTO visits VALUES (2, ?)", ("k" * (key_text + 1),)),
            (
                "execute",
                "INSERT INTO visits VALUES (1, ?), (2, 'b'), (1, ?)",
                ("k" * (key_text + 1),) * 2,
            ),
            ("execute", "CREATE INDEX by_ward ON visits (ward)", ()),
            ("execute", "DELETE FROM visits WHERE patient = 1", ()),
            ("execute", "CREATE INDEX by_ward ON visits (ward)", ()),
            ("execute", "INSERT INTO visits VALUES (3, ?)", ("e" * entry_text,)),
            ("execute", "INSERT INTO visits VALUES (4, ?)", ("e" * (entry_text + 1),)),
            ("execute", "SELECT patient FROM visits", ()),
        ],
    )


def scenario_random(seed: int) -> Scenario:
    rng = random.Random(2000 + seed)
    statements: list[tuple[str, str, object]] = [
        ("execute", "CREATE TABLE r (k BIGINT PRIMARY KEY, n TEXT, x DOUBLE)", ())
    ]
    for _ in range(30):
        choice = rng.random()
        if choice < 0.35:
            rows = [
                (rng.randrange(12), rng.choice(["a", "b", None]), rng.choice([0.5, 2, None]))
                for _ in range(rng.randrange(1, 4))
            ]
            text = "INSERT INTO r VALUES " + ", ".join(["(?, ?, ?)"] * len(rows))
            statements.append(("execute", text, tuple(v for row in rows for v in row)))
        elif choice < 0.5:
            statements.append(
                (
                    "execute",
                    "UPDATE r SET n = ? WHERE k < ?",
                    (rng.choice(["c", None]), rng.randrange(12)),
                )
            )
        elif choice < 0.6:
            statements.append(("execute", "DELETE FROM r WHERE k = ?", (rng.randrange(12),)))
        elif choice < 0.8:
            statements.append(
                (
                    "execute",
                    "SELECT k, n FROM r WHERE n IS NOT NULL OR k > ? ORDER BY n DESC",
                    (rng.randrange(12),),
                )
            )
        elif choice < 0.95:
            statements.append((f"query_at:{rng.randrange(1, 8)}", "SELECT * FROM r", ()))
        else:
            statements.append(("reopen", "", ()))
    return Scenario(
        f"random-{seed:02d}", f"random statements over one table, seed {seed}", statements
    )


def scenario_arguments() -> Scenario:
    """Wrong-typed arguments of a statement: its parameters given as one str (as many
    characters as it has parameters), bytes, an int or None, and `query_at` at what is
    no log position; and LIMIT/OFFSET far past their bound."""
    two = "SELECT id FROM patients WHERE id = ? OR name = ?"
    statements: list[tuple[str, str, object]] = [
        ("execute", SCHEMA, ()),
        ("execute", "INSERT INTO patients (id, name) VALUES (?, ?), (?, ?)", (1, "a", 2, "b")),
        ("execute", two, (1, "b")),
    ]
    for wrong in ("ab", "a", b"\x01\x02", 12, None):
        statements.append(("execute", two, wrong))
    statements += [
        ("execute", "UPDATE patients SET name = ? WHERE name = ?", "ab"),
        ("execute", "INSERT INTO patients (name, photo) VALUES ($1, $2)", "ab"),
        ("execute", "SELEC ?", "ab"),
        ("execute", "SELECT * FROM patients ORDER BY id", ()),
    ]
    for position in ("3", 1.5, True, -1, 2**64, 2**64 - 1, 0):
        at = "query_at=" + json.dumps(encode_value(position))
        statements += [
            (at, "SELECT id, name FROM patients", ()),
            (at, "SELECT * FROM nowhere", ()),
        ]
    at = "query_at=" + json.dumps(encode_value("3"))
    statements += [
        (at, "SELEC id FROM patients", ()),
        (at, "DELETE FROM patients", ()),
        (at, "SELECT id FROM patients WHERE id = ?", ()),
        (at, "SELECT id FROM patients WHERE id = ?", "1"),
    ]
    for bound in (2**127, 2**128, 2**129, 2**200):
        statements += [
            ("execute", "SELECT id FROM patients LIMIT ?", (bound,)),
            ("execute", "SELECT id FROM patients LIMIT 1 OFFSET ?", (bound,)),
        ]
    statements.append(
        ("execute", f"SELECT id FROM patients OFFSET {2**128}", ()),
    )
    return Scenario(
        "arguments",
        "parameters that are not a tuple or list; query_at at a str, float, bool, -1, 2**64; "
        "LIMIT and OFFSET far past their bound",
        statements,
    )


# The rows of `tables-event-bound`: a divisor of QUERY_BYTES_MAX + 1 (2**26 + 1 =
# 5 * 53 * 157 * 1613), so that an answer of equal rows can be one byte over.
BOUND_ROWS = 1613


def _padded_to(text: str, width: Callable[[str, int], int], most: int) -> tuple[int, str]:
    """The largest value size whose statement `text` fits `most` bytes of event, and
    `text` padded with spaces so that the event is exactly `most` bytes wide."""
    size = 0
    while width(text, size + 1) <= most:
        size += 1
    exact = text + " " * (most - width(text, size))
    assert width(exact, size) == most
    return size, exact


def scenario_event_bound() -> Scenario:
    """A write whose event is exactly `STATEMENT_EVENT_BYTES_MAX` wide, and one a byte
    wider; an answer one byte over `QUERY_BYTES_MAX`, and one whose stored rows are far
    wider than it. Widths are computed with the spec's own rules ("Limits")."""
    spec = spec_tables
    most = spec.STATEMENT_EVENT_BYTES_MAX
    rows = BOUND_ROWS
    assert (spec.QUERY_BYTES_MAX + 1) % rows == 0
    # UPDATE big SET body = $1 (every row): per row a put of its key and new row.
    update = "UPDATE big SET body = $1"

    def update_width(text: str, body: int) -> int:
        row = spec.row_width((0, None, "x" * body))
        per_row = spec.put_width("big", spec.key_width((0,)), row)
        return spec.event_base_width(text, 0, definition=False) + rows * per_row

    body, exact = _padded_to(update, update_width, most)
    # INSERT INTO wide of 1,024 rows, each (k, $1): per row its framing, key and row.
    inserted = 1024
    insert = "INSERT INTO wide VALUES " + ", ".join(f"({k}, $1)" for k in range(inserted))

    def insert_width(text: str, value: int) -> int:
        per_row = spec.EVENT_ROW_WIDTH + spec.key_width((0,)) + spec.row_width((0, "x" * value))
        return spec.event_base_width(text, 0, definition=False) + inserted * per_row

    value, insert_exact = _padded_to(insert, insert_width, most)
    # SELECT body, n, n, ...: each answered row 1 + (5 + body) + 1 per n.
    answer_row = (spec.QUERY_BYTES_MAX + 1) // rows
    nulls = answer_row - spec.row_width(("x" * body,))
    assert nulls > 0
    answer = "SELECT body" + ", n" * nulls + " FROM big"
    # Stored rows so much wider than their projection that it fits only when measured.
    copies = spec.QUERY_BYTES_MAX // spec.row_width((0, None, "x" * body)) + 1
    narrow = "SELECT " + ", ".join(["n"] * copies) + " FROM big LIMIT 2"
    text = "x" * body
    return Scenario(
        "event-bound",
        "an UPDATE and an INSERT whose event width is exactly STATEMENT_EVENT_BYTES_MAX "
        "(written, every row changed) and one byte more (limit); an answer one byte over "
        "QUERY_BYTES_MAX (limit); a narrow projection of rows 64 MiB wide in all",
        [
            ("execute", "CREATE TABLE big (k BIGINT PRIMARY KEY, n BIGINT, body TEXT)", ()),
            (
                "execute",
                "INSERT INTO big (k) VALUES " + ", ".join(f"({k})" for k in range(rows)),
                (),
            ),
            ("execute", exact + " ", (text,)),
            ("execute", "SELECT COUNT(*) FROM big WHERE body IS NOT NULL", ()),
            ("execute", exact, (text,)),
            ("execute", "SELECT COUNT(*) FROM big WHERE body IS NULL", ()),
            ("execute", answer, ()),
            ("execute", answer + " ORDER BY k DESC", ()),
            ("execute", narrow, ()),
            ("execute", "CREATE TABLE wide (k BIGINT PRIMARY KEY, body TEXT)", ()),
            ("execute", insert_exact + " ", ("y" * value,)),
            ("execute", "SELECT COUNT(*) FROM wide", ()),
            ("execute", insert_exact, ("y" * value,)),
            ("execute", "SELECT COUNT(*) FROM wide WHERE body IS NOT NULL", ()),
            ("execute", f"SELECT k FROM wide WHERE k >= {inserted - 2}", ()),
        ],
    )


def scenarios() -> list[Scenario]:
    fixed = [
        scenario_basics(),
        scenario_errors(),
        scenario_time_travel(),
        scenario_indexes(),
        scenario_limits(),
    ]
    later = [scenario_arguments(), scenario_event_bound()]
    return fixed + [scenario_random(seed) for seed in range(6)] + later


def build_vector(scenario: Scenario) -> dict[str, Any]:
    spec = SpecTablesDriver()
    steps: list[Step] = []
    position = 0
    for op, sql, params in scenario.statements:
        if op in ("reopen", "rebuild"):
            steps.append({"op": op, "expect": {}})
            continue
        step: Step = {"op": "execute", "sql": sql}
        if isinstance(params, tuple):
            step["params"] = params_to_json(params)
        else:
            step["params_value"] = encode_value(params)
        if op.startswith("query_at:"):
            step["op"] = "query_at"
            step["position"] = max(0, position - int(op.split(":")[1]))
        elif op.startswith("query_at="):
            step["op"] = "query_at"
            step["position_value"] = json.loads(op.split("=", 1)[1])
        else:
            position += 2  # another record of the tenant log sits between statements
            step["position"] = position
        step["expect"] = perform(spec, step)
        steps.append(step)
    return {
        "format": FORMAT,
        "machine": "tables",
        "name": scenario.name,
        "description": scenario.description,
        "config": {},
        "steps": steps,
    }


def generate(out_dir: Path) -> list[Path]:
    return _runner.write_vectors(out_dir, (build_vector(scenario) for scenario in scenarios()))


TablesVectorResult = VectorResult


def perform(driver: TablesDriver, step: Step) -> Observation:
    if step["op"] == "reopen":
        driver.reopen()
        return {}
    if step["op"] == "rebuild":
        rebuild = getattr(driver, "rebuild", None)
        if rebuild is not None:
            rebuild()
        return {}
    params = step_params(step)
    if step["op"] == "query_at":
        return driver.query_at(step["sql"], params, step_position(step))
    return driver.execute(step["sql"], params, step["position"])


def step_params(step: Step) -> object:
    """The parameters argument of a step: `params` (a list of values, passed as a
    tuple), or `params_value` (one value, passed as the argument itself: wrong-typed)."""
    if "params_value" in step:
        return decode_value(step["params_value"])
    return params_from_json(step["params"])


def step_position(step: Step) -> object:
    """A `query_at` position: `position` (an int), or `position_value` (any value)."""
    if "position_value" in step:
        return decode_value(step["position_value"])
    return step["position"]


def run_vector(path: Path, factory: TablesDriverFactory) -> VectorResult:
    return _runner.run_vector(
        path,
        "tables",
        lambda _config, scratch: factory(scratch),
        perform,
        _shown,
        close=lambda driver: driver.close(),
    )


def _shown(step: Step) -> str:
    # The SQL names a tables step better than its encoded parameters do.
    return f"{step['op']} {step.get('sql', '')[:120]!r}"
