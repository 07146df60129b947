"""Proofs vectors: fresh, passed by verity.proofs, failed by a verifier that accepts a forgery."""

from __future__ import annotations

from pathlib import Path

import pytest

import verity.proofs
from verity_conformance import _runner, proof_vectors
from verity_conformance.__main__ import main

REPO_VECTORS = Path(__file__).resolve().parents[1] / "conformance" / "vectors"


def committed() -> list[Path]:
    return sorted(REPO_VECTORS.glob("proofs-*.json"))


def test_committed_vectors_are_what_the_spec_generates(tmp_path: Path) -> None:
    written = _runner.write_vectors(tmp_path, proof_vectors.build_vectors())
    assert [path.name for path in sorted(written)] == [path.name for path in committed()]
    for path in written:
        assert path.read_bytes() == (REPO_VECTORS / path.name).read_bytes(), path.name


def test_the_implementation_passes_every_proofs_vector() -> None:
    results = proof_vectors.run_all(REPO_VECTORS)
    assert [r.failure for r in results] == [None] * len(results)
    assert sum(r.steps for r in results) > 3000


def test_the_runner_checks_the_proofs_vectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--vectors-only", "--vectors", str(REPO_VECTORS)]) == 0
    assert "0 failed" in capsys.readouterr().out


def _accept_everything(*_args: object) -> None:
    return None


@pytest.mark.parametrize(
    ("name", "vector"),
    [
        ("verify_inclusion", "proofs-inclusion.json"),
        ("verify_consistency", "proofs-consistency.json"),
        ("verify_signed_checkpoint", "proofs-checkpoints.json"),
    ],
)
def test_a_verifier_that_accepts_anything_fails_its_vector(
    monkeypatch: pytest.MonkeyPatch, name: str, vector: str
) -> None:
    monkeypatch.setattr(verity.proofs, name, _accept_everything)
    result = proof_vectors.run_vector(REPO_VECTORS / vector)
    assert result.failure is not None
    expected, got = '{"ok": {"valid": false}}', '{"ok": {"valid": true}}'
    assert f"expected {expected}, got {got}" in result.failure


def test_a_verifier_off_by_one_on_the_right_edge_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # The right-edge rule of RFC 9162 §2.1.3.2 (`fn == sn`) taken as `fn == sn - 1`: only
    # proofs of leaves on a tree's right edge go wrong.
    genuine = verity.proofs.root_from_inclusion_proof

    def wrong(proof: verity.proofs.InclusionProof) -> bytes:
        if proof.leaf_index == proof.tree_size - 1 and proof.tree_size % 2 == 1:
            return bytes(32)
        return genuine(proof)

    monkeypatch.setattr(verity.proofs, "root_from_inclusion_proof", wrong)
    result = proof_vectors.run_vector(REPO_VECTORS / "proofs-inclusion.json")
    assert result.failure is not None and "genuine" in result.failure
