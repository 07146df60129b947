"""The proof verifiers refuse roots that are not 32 bytes, whatever their type."""

from __future__ import annotations

import pytest

from verity import proofs
from verity.errors import InvalidArgument


@pytest.mark.parametrize("root", [None, "0" * 32, bytearray(32), 32])
def test_a_root_that_is_not_bytes_is_an_invalid_argument_naming_it(root: object) -> None:
    inclusion = proofs.InclusionProof(0, 1, b"leaf", ())
    with pytest.raises(InvalidArgument) as caught:
        proofs.verify_inclusion(inclusion, root)  # type: ignore[arg-type]
    assert caught.value.name == "root"
    consistency = proofs.ConsistencyProof(1, 2, (bytes(32),))
    for name, old_root, new_root in (("old_root", root, bytes(32)), ("new_root", bytes(32), root)):
        with pytest.raises(InvalidArgument) as caught:
            proofs.verify_consistency(consistency, old_root, new_root)  # type: ignore[arg-type]
        assert caught.value.name == name
