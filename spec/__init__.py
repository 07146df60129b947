"""VerityDB's executable specification.

Plain, slow, readable Python with icontract pre- and postconditions. Auditors
read it; the conformance suite (`verity_conformance`) runs it in lockstep with
the implementation (`verity`), which never imports it.

- `verity_spec.records`: a record's canonical bytes and its chain hash.
- `verity_spec.merkle`: RFC 9162 §2.1 trees and proofs, as the RFC defines them.
- `verity_spec.signing`: Ed25519 signatures in the log (pinned keys, signed checkpoints).
- `verity_spec.log`: the log as an immutable value, with checkpoints,
  recovery from a torn tail, and damage that is reported, never repaired.
- `verity_spec.envelope`: encryption at rest: sealed records (nonce from the
  log offset, associated data binding tenant, offset and DEK id), key wrapping,
  the key ring and the key files.
"""
