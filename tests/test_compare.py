"""The comparison benchmark (`benchmarks/compare.py`): its smallest slices run and report.

Nothing here asserts a speed. The tests check that a quick run prints the
markdown table and writes the JSON, that every metric has a figure or says why
not ("cannot: ...", "not available: ..."), that ratios are VerityDB/peer, and
that a peer's integrity check is a real one (it finds a tampered row).
"""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
COMPARE = BENCHMARKS / "compare.py"
sys.path.insert(0, str(BENCHMARKS))

import _peers_postgres  # noqa: E402
import compare  # noqa: E402
from _peers_common import PeerUnavailable, record_chunks  # noqa: E402
from _peers_sqlite import SqlitePeer  # noqa: E402

from verity.errors import ChainBroken  # noqa: E402

RUN_TIMEOUT_S = 300


def run_compare(out: Path, only: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(COMPARE), "--quick", "--only", only, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def cells_by_peer(document: dict[str, Any], peer: str) -> dict[str, dict[str, Any]]:
    return {cell["metric"]: cell for cell in document["cells"] if cell["peer"] == peer}


def postgres_unavailable_reason() -> str | None:
    """Why the PostgreSQL peer cannot run here, or None if it can."""
    try:
        _peers_postgres.find_server_binaries()
    except PeerUnavailable as unavailable:
        return unavailable.reason
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def test_quick_slice_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    completed = run_compare(tmp_path, "sqlite-full,verity")
    assert completed.returncode == 0, completed.stderr[-3000:]

    table_lines = [line for line in completed.stdout.splitlines() if line.startswith("| ")]
    assert table_lines[0] == "| workload | unit | better | verity | sqlite-full |"
    metric_count = len(compare.metrics_for(compare.workload_titles(compare.QUICK, True)))
    assert len(table_lines) == 2 + metric_count  # header, separator, one row per metric
    assert (tmp_path / "compare-quick.md").read_text(encoding="utf-8") + "\n" == completed.stdout

    document = json.loads((tmp_path / "compare-quick.json").read_text(encoding="utf-8"))
    assert document["quick"] is True
    assert [peer["name"] for peer in document["peers"]] == ["verity", "sqlite-full"]
    verity_cells = cells_by_peer(document, "verity")
    sqlite_cells = cells_by_peer(document, "sqlite-full")
    assert set(verity_cells) == set(sqlite_cells) == {m["key"] for m in document["metrics"]}
    assert all(cell["status"] == "ok" and cell["value"] > 0 for cell in verity_cells.values())

    # Ratios are VerityDB / peer, on every cell where both have a figure.
    durable = sqlite_cells["durable_append.rate"]
    assert durable["status"] == "ok"
    assert durable["ratio"] == pytest.approx(
        verity_cells["durable_append.rate"]["value"] / durable["value"]
    )
    assert sqlite_cells["verify.rate"]["status"] == "ok"

    # What sqlite cannot do is said, in the JSON and in the table, instead of a number.
    for key in ("signed_checkpoint.p50", "inclusion_proof.p50"):
        assert sqlite_cells[key]["status"] == "cannot"
        assert sqlite_cells[key]["value"] is None
        assert sqlite_cells[key]["ratio"] is None
    proof_row = next(line for line in table_lines if line.startswith("| inclusion proof"))
    assert proof_row.endswith("| cannot: no Merkle tree |")


def test_a_peer_that_cannot_run_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_server() -> Path:
        raise PeerUnavailable("no server on this test machine")

    monkeypatch.setattr(_peers_postgres, "find_server_binaries", no_server)
    assert compare.main(["--quick", "--only", "postgres", "--out", str(tmp_path)]) == 0

    table = capsys.readouterr().out
    assert "not available: no server on this test machine" in table
    document = json.loads((tmp_path / "compare-quick.json").read_text(encoding="utf-8"))
    [postgres] = [peer for peer in document["peers"] if peer["name"] == "postgres"]
    assert postgres["available"] is False
    assert postgres["reason"] == "no server on this test machine"
    postgres_cells = cells_by_peer(document, "postgres").values()
    assert postgres_cells and all(cell["status"] == "not available" for cell in postgres_cells)


def test_unknown_peer_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        compare.main(["--quick", "--only", "verity,mysql"])
    assert exit_info.value.code == 2
    assert "'mysql'" in capsys.readouterr().err


def test_sqlite_peer_verification_finds_a_tampered_row(tmp_path: Path) -> None:
    peer = SqlitePeer("FULL")
    peer.start(tmp_path)
    peer.build_verification_log("chain", record_chunks(3_000, seed=1, chunk_records=1_000))
    assert peer.verify("chain") == 3_000

    connection = sqlite3.connect(tmp_path / "sqlite-full" / "chain.sqlite")
    connection.execute("UPDATE records SET payload = ? WHERE position = 1234", (b"x" * 256,))
    connection.commit()
    connection.close()
    with pytest.raises(ChainBroken) as broken:
        peer.verify("chain")
    assert broken.value.record_offset == 1234


POSTGRES_UNAVAILABLE = postgres_unavailable_reason()


@pytest.mark.skipif(
    POSTGRES_UNAVAILABLE is not None,
    reason=f"PostgreSQL peer skipped: {POSTGRES_UNAVAILABLE}",
)
def test_postgres_peer_runs_in_a_throwaway_cluster(tmp_path: Path) -> None:
    completed = run_compare(tmp_path, "postgres")
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads((tmp_path / "compare-quick.json").read_text(encoding="utf-8"))
    postgres_cells = cells_by_peer(document, "postgres")
    assert postgres_cells["durable_append.rate"]["status"] == "ok"
    assert postgres_cells["verify.rate"]["value"] > 0
    assert postgres_cells["recovery.ms"]["value"] > 0
    assert postgres_cells["signed_checkpoint.p50"]["status"] == "cannot"
