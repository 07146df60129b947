"""Vectors of the auditor's verifiers (machine `proofs`): what a proof or a signature proves.

An auditor holds roots and public keys obtained elsewhere and checks what the
log hands out with `verity.proofs`. These vectors pin that verifier to the
spec's (`verity_spec.merkle.is_valid_inclusion`, `is_valid_consistency`, and
`verity_spec.signing` for signed checkpoints): every genuine proof is
accepted, and every proof that was tampered with (a node flipped, dropped,
added, swapped for a root; the leaf, its index or a root off by a little)
is rejected, for every tree size up to 12 and a spread of larger
ones. A verifier that accepts one forged proof breaks the promise that a
record's inclusion cannot be faked.

Steps (byte strings are lowercase hex; `expect` is `{"ok": {"valid": BOOL}}`
or `{"error": "invalid_argument"}` for inputs that are no proof at all):

    verify_inclusion    leaf, leaf_index, tree_size, path, root
    verify_consistency  old_size, new_size, path, old_root, new_root
    verify_checkpoint   tree_size, root, chain_hash, timestamp, key_id, signature,
                        public_key

The implementation side calls `verity.proofs.verify_inclusion`,
`verify_consistency` and `verify_signed_checkpoint`: returning is valid,
`InvalidProof` or `InvalidSignature` is not valid, `InvalidArgument` is
`invalid_argument`; anything else fails the vector.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import verity_spec.merkle as spec_merkle
import verity_spec.signing as spec_signing
from verity import errors as verity_errors
from verity import proofs
from verity_conformance import _runner
from verity_conformance._runner import FORMAT, VectorResult

__all__ = ["MACHINE", "build_vectors", "generate", "perform_spec", "run_all", "run_vector"]

MACHINE = "proofs"
HASH_BYTES = 32
U64_MAX = 2**64 - 1
# Tree sizes past the exhaustive ones: around powers of two, where the proofs' shapes change.
LARGER_SIZES = (13, 16, 17, 31, 32, 33, 64, 65, 127, 128, 129, 1025)
EXHAUSTIVE_SIZE_MAX = 12
SIGNING_SEED = hashlib.sha256(b"verity proofs test signing key").digest()
OTHER_SEED = hashlib.sha256(b"verity proofs another signing key").digest()

Step = dict[str, Any]
Observation = dict[str, Any]


def ok(**fields: Any) -> Observation:
    return {"ok": fields}


def invalid_argument() -> Observation:
    return {"error": "invalid_argument"}


# ---------------------------------------------------------------------------
# The spec side.


def _nodes(step: Step) -> list[bytes]:
    return [bytes.fromhex(node) for node in step["path"]]


def _well_formed(*hashes: bytes) -> bool:
    return all(len(value) == HASH_BYTES for value in hashes)


def perform_spec(step: Step) -> Observation:
    """What the spec concludes from one step's inputs."""
    op = step["op"]
    if op == "verify_inclusion":
        m, n = step["leaf_index"], step["tree_size"]
        nodes, root = _nodes(step), bytes.fromhex(step["root"])
        if not (0 <= m < n <= U64_MAX and _well_formed(root, *nodes)):
            return invalid_argument()
        leaf = bytes.fromhex(step["leaf"])
        return ok(valid=spec_merkle.is_valid_inclusion(leaf, m, n, nodes, root))
    if op == "verify_consistency":
        m, n = step["old_size"], step["new_size"]
        nodes = _nodes(step)
        old_root, new_root = bytes.fromhex(step["old_root"]), bytes.fromhex(step["new_root"])
        if not (0 < m <= n <= U64_MAX and _well_formed(old_root, new_root, *nodes)):
            return invalid_argument()
        return ok(valid=spec_merkle.is_valid_consistency(m, n, nodes, old_root, new_root))
    if op == "verify_checkpoint":
        public_key = bytes.fromhex(step["public_key"])
        key_id = bytes.fromhex(step["key_id"])
        root, chain_hash = bytes.fromhex(step["root"]), bytes.fromhex(step["chain_hash"])
        message = spec_signing.checkpoint_message(
            step["tree_size"], root, chain_hash, step["timestamp"], public_key
        )
        valid = key_id == spec_signing.key_id(public_key) and spec_signing.is_valid_signature(
            public_key, message, bytes.fromhex(step["signature"])
        )
        return ok(valid=valid)
    raise ValueError(f"unknown op {op!r}")


# ---------------------------------------------------------------------------
# The implementation side.


def perform_implementation(step: Step) -> Observation:
    """What `verity.proofs` concludes from one step's inputs."""
    op = step["op"]
    try:
        if op == "verify_inclusion":
            inclusion = proofs.InclusionProof(
                step["leaf_index"],
                step["tree_size"],
                bytes.fromhex(step["leaf"]),
                tuple(_nodes(step)),
            )
            proofs.verify_inclusion(inclusion, bytes.fromhex(step["root"]))
        elif op == "verify_consistency":
            consistency = proofs.ConsistencyProof(
                step["old_size"], step["new_size"], tuple(_nodes(step))
            )
            proofs.verify_consistency(
                consistency, bytes.fromhex(step["old_root"]), bytes.fromhex(step["new_root"])
            )
        elif op == "verify_checkpoint":
            checkpoint = proofs.SignedCheckpoint(
                step["tree_size"],
                bytes.fromhex(step["root"]),
                bytes.fromhex(step["chain_hash"]),
                step["timestamp"],
                bytes.fromhex(step["key_id"]),
                bytes.fromhex(step["signature"]),
            )
            proofs.verify_signed_checkpoint(checkpoint, bytes.fromhex(step["public_key"]))
        else:
            raise ValueError(f"unknown op {op!r}")
    except (verity_errors.InvalidProof, verity_errors.InvalidSignature):
        return ok(valid=False)
    except verity_errors.InvalidArgument:
        return invalid_argument()
    return ok(valid=True)


# ---------------------------------------------------------------------------
# Scenarios.


def _flip(node: bytes, bit: int) -> bytes:
    flipped = bytearray(node)
    flipped[bit // 8 % len(flipped)] ^= 1 << (bit % 8)
    return bytes(flipped)


def _tampered_paths(
    path: list[bytes], rng: random.Random, extra: bytes
) -> Iterator[tuple[str, list[bytes]]]:
    if path:
        where = rng.randrange(len(path))
        yield (
            "a node flipped",
            [*path[:where], _flip(path[where], rng.randrange(256)), *path[where + 1 :]],
        )
        yield "the last node dropped", path[:-1]
        yield "the first node dropped", path[1:]
        if len(path) > 1:
            yield "two nodes swapped", [path[1], path[0], *path[2:]]
    yield "a node added", [*path, extra]


def _hex_path(path: list[bytes]) -> list[str]:
    return [node.hex() for node in path]


def _inclusion_steps(n: int, indices: list[int], rng: random.Random) -> Iterator[Step]:
    leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]
    root = spec_merkle.mth(leaves)
    for m in indices:
        path = spec_merkle.path(m, leaves)
        base = {"op": "verify_inclusion", "leaf": leaves[m].hex(), "leaf_index": m, "tree_size": n}
        yield {**base, "path": _hex_path(path), "root": root.hex(), "why": "genuine"}
        for why, forged in _tampered_paths(path, rng, root):
            yield {**base, "path": _hex_path(forged), "root": root.hex(), "why": why}
        genuine = {"path": _hex_path(path), "root": root.hex()}
        yield {
            **base,
            **genuine,
            "root": _flip(root, rng.randrange(256)).hex(),
            "why": "another root",
        }
        yield {**base, **genuine, "leaf": (leaves[m] + b"\x00").hex(), "why": "another leaf"}
        if n > 1:
            other = (m + 1) % n
            yield {**base, **genuine, "leaf_index": other, "why": "another index"}
        # Another size is refused when it changes the path's shape and accepted when
        # it does not: the root binds the size (a signed checkpoint states both).
        yield {**base, **genuine, "tree_size": n + 1, "why": "a larger tree size"}
        if m < n - 1:
            yield {**base, **genuine, "tree_size": n - 1, "why": "a smaller tree size"}


def _consistency_steps(n: int, olds: list[int], rng: random.Random) -> Iterator[Step]:
    leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]
    new_root = spec_merkle.mth(leaves)
    for m in olds:
        path = spec_merkle.proof(m, leaves)
        old_root = spec_merkle.mth(leaves[:m])
        roots = {"old_root": old_root.hex(), "new_root": new_root.hex()}
        base = {"op": "verify_consistency", "old_size": m, "new_size": n, **roots}
        yield {**base, "path": _hex_path(path), "why": "genuine"}
        for why, forged in _tampered_paths(path, rng, old_root):
            yield {**base, "path": _hex_path(forged), "why": why}
        genuine = {**base, "path": _hex_path(path)}
        flipped_old = _flip(old_root, rng.randrange(256)).hex()
        flipped_new = _flip(new_root, rng.randrange(256)).hex()
        yield {**genuine, "old_root": flipped_old, "why": "another old root"}
        yield {**genuine, "new_root": flipped_new, "why": "another new root"}
        yield {**genuine, "new_size": n + 1, "why": "a larger new size"}
        if m > 1:
            yield {**genuine, "old_size": m - 1, "why": "a smaller old size"}
        if m < n:
            yield {**genuine, "old_size": m + 1, "why": "a larger old size"}


def _spread(n: int, rng: random.Random) -> list[int]:
    return sorted({0, n - 1, n // 2, *(rng.randrange(n) for _ in range(3))})


def inclusion_steps() -> list[Step]:
    rng = random.Random(1)
    steps: list[Step] = []
    for n in range(1, EXHAUSTIVE_SIZE_MAX + 1):
        steps += _inclusion_steps(n, list(range(n)), rng)
    for n in LARGER_SIZES:
        steps += _inclusion_steps(n, _spread(n, rng), rng)
    return steps


def consistency_steps() -> list[Step]:
    rng = random.Random(2)
    steps: list[Step] = []
    for n in range(1, EXHAUSTIVE_SIZE_MAX + 1):
        steps += _consistency_steps(n, list(range(1, n + 1)), rng)
    for n in LARGER_SIZES:
        steps += _consistency_steps(n, sorted({1, *(m + 1 for m in _spread(n, rng))}), rng)
    return steps


def malformed_steps() -> list[Step]:
    """Inputs that are no proof at all: refused as arguments, never judged."""
    node = hashlib.sha256(b"node").digest()
    short = node[:31].hex()
    inclusion = {"op": "verify_inclusion", "leaf": "00", "root": node.hex(), "path": [node.hex()]}
    consistency = {"op": "verify_consistency", "old_root": node.hex(), "new_root": node.hex()}
    return [
        {**inclusion, "leaf_index": 2, "tree_size": 2, "why": "index at the size"},
        {**inclusion, "leaf_index": 0, "tree_size": 0, "why": "an empty tree"},
        {**inclusion, "leaf_index": 0, "tree_size": 2, "path": [short], "why": "a 31-byte node"},
        {**inclusion, "leaf_index": 0, "tree_size": 2, "root": short, "why": "a 31-byte root"},
        {**inclusion, "leaf_index": 0, "tree_size": U64_MAX + 1, "why": "a size over 2**64-1"},
        {**consistency, "old_size": 0, "new_size": 2, "path": [], "why": "from the empty tree"},
        {**consistency, "old_size": 3, "new_size": 2, "path": [], "why": "old above new"},
        {**consistency, "old_size": 1, "new_size": 2, "path": [short], "why": "a 31-byte node"},
        {**consistency, "old_size": 1, "new_size": 2, "path": [node.hex()], "new_root": short},
    ]


def checkpoint_steps() -> list[Step]:
    rng = random.Random(3)
    public_key = spec_signing.public_key_of(SIGNING_SEED)
    other_key = spec_signing.public_key_of(OTHER_SEED)
    steps: list[Step] = []
    for tree_size in (0, 1, 7, 1000, U64_MAX):
        root, chain_hash = rng.randbytes(32), rng.randbytes(32)
        timestamp = rng.randrange(U64_MAX + 1)
        message = spec_signing.checkpoint_message(
            tree_size, root, chain_hash, timestamp, public_key
        )
        signature = spec_signing.sign(SIGNING_SEED, message)
        genuine = {
            "op": "verify_checkpoint",
            "tree_size": tree_size,
            "root": root.hex(),
            "chain_hash": chain_hash.hex(),
            "timestamp": timestamp,
            "key_id": spec_signing.key_id(public_key).hex(),
            "signature": signature.hex(),
            "public_key": public_key.hex(),
        }
        steps.append({**genuine, "why": "genuine"})
        steps.append({**genuine, "tree_size": tree_size ^ 1, "why": "another tree size"})
        steps.append({**genuine, "root": _flip(root, 3).hex(), "why": "another root"})
        steps.append({**genuine, "chain_hash": _flip(chain_hash, 9).hex(), "why": "another head"})
        steps.append({**genuine, "timestamp": timestamp ^ 1, "why": "another time"})
        steps.append(
            {**genuine, "signature": _flip(signature, 77).hex(), "why": "signature flipped"}
        )
        steps.append({**genuine, "public_key": other_key.hex(), "why": "another public key"})
        steps.append(
            {
                **genuine,
                "public_key": other_key.hex(),
                "key_id": spec_signing.key_id(other_key).hex(),
                "why": "another key, named as the signer",
            }
        )
    return steps


SCENARIOS: dict[str, tuple[str, Callable[[], list[Step]]]] = {
    "inclusion": (
        "RFC 9162 inclusion proofs, every leaf of every tree up to 12 leaves and a spread "
        "of larger trees: the genuine proof is valid, no tampered one is, and another "
        "tree size only when the path has the same shape for it",
        inclusion_steps,
    ),
    "consistency": (
        "RFC 9162 consistency proofs, every old size of every tree up to 12 leaves and a "
        "spread of larger trees: the genuine proof is valid, and no tampered one is",
        consistency_steps,
    ),
    "malformed": ("inputs that are no proof at all are refused as arguments", malformed_steps),
    "checkpoints": (
        "signed checkpoints: the genuine signature verifies under its key, and a change to "
        "any signed field, the signature or the key does not",
        checkpoint_steps,
    ),
}


def build_vectors() -> list[dict[str, Any]]:
    """Every proofs vector, each step's `expect` computed by the spec."""
    return [
        {
            "format": FORMAT,
            "machine": MACHINE,
            "name": name,
            "description": description,
            "config": {},
            "steps": [{**step, "expect": perform_spec(step)} for step in make_steps()],
        }
        for name, (description, make_steps) in SCENARIOS.items()
    ]


def generate(out_dir: Path) -> list[Path]:
    return _runner.write_vectors(out_dir, build_vectors())


def _shown(step: Step) -> str:
    sizes = {k: step[k] for k in ("leaf_index", "tree_size", "old_size", "new_size") if k in step}
    why = f" ({step['why']})" if "why" in step else ""
    return f"{step['op']} {sizes}{why}"


def run_vector(path: Path) -> VectorResult:
    """Check the proofs vector in `path` against the installed `verity.proofs`."""
    return _runner.run_vector(
        path,
        MACHINE,
        lambda _config, _scratch: None,
        lambda _driver, step: perform_implementation(step),
        _shown,
    )


def run_all(vectors_dir: Path) -> list[VectorResult]:
    return _runner.run_all(vectors_dir, MACHINE, run_vector)
