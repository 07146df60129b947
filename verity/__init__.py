"""VerityDB: a compliance-first system of record.

All data is an immutable, ordered, hash-chained log; all state is a derived
view. This package is the optimized implementation; `verity_spec` is the
executable specification it is proven equal to by `verity_conformance`.

Public surface (anything not listed in `__all__` is private; docs/sdk.md):

- the database: `open`, `Verity`, `TenantHandle`, `StreamInfo`,
  `VerificationReport`, `TenantVerification`, `BadRecord`, `Receipt`, `QueryResult` (SQL);
- proofs: `SignedCheckpoint`, `InclusionProof`, `ConsistencyProof` (checked
  with the functions of `verity.proofs`);
- value types: `Offset`, `TenantId`, `StreamId`, `DataClass`, `Hash`,
  `Timestamp`, `RecordKind`, `RecordHeader`, `AppliedIndex`, `Checkpoint`,
  `CheckpointPolicy`, `IdempotencyId`, `Generation`, `RecoveryRecord`,
  `RecoveryReason`, `SyncPolicy`, `SyncMode`;
- modules: `verity.errors`, `verity.crypto`, `verity.proofs`,
  `verity.storage`, `verity.kernel`, `verity.directory`, `verity.store`,
  `verity.query`, `verity.dbapi` (PEP 249).
"""

from verity._database import BadRecord as BadRecord
from verity._database import QueryResult as QueryResult
from verity._database import Receipt as Receipt
from verity._database import TenantHandle as TenantHandle
from verity._database import TenantVerification as TenantVerification
from verity._database import VerificationReport as VerificationReport
from verity._database import Verity as Verity
from verity._database import open as open
from verity.kernel import StreamInfo as StreamInfo
from verity.proofs import ConsistencyProof as ConsistencyProof
from verity.proofs import InclusionProof as InclusionProof
from verity.proofs import SignedCheckpoint as SignedCheckpoint
from verity.types import AppliedIndex as AppliedIndex
from verity.types import Checkpoint as Checkpoint
from verity.types import CheckpointPolicy as CheckpointPolicy
from verity.types import DataClass as DataClass
from verity.types import Generation as Generation
from verity.types import Hash as Hash
from verity.types import IdempotencyId as IdempotencyId
from verity.types import Offset as Offset
from verity.types import RecordHeader as RecordHeader
from verity.types import RecordKind as RecordKind
from verity.types import RecoveryReason as RecoveryReason
from verity.types import RecoveryRecord as RecoveryRecord
from verity.types import StreamId as StreamId
from verity.types import SyncMode as SyncMode
from verity.types import SyncPolicy as SyncPolicy
from verity.types import TenantId as TenantId
from verity.types import Timestamp as Timestamp

__version__ = "0.1.0"

__all__ = [
    "AppliedIndex",
    "BadRecord",
    "Checkpoint",
    "CheckpointPolicy",
    "ConsistencyProof",
    "DataClass",
    "Generation",
    "Hash",
    "IdempotencyId",
    "InclusionProof",
    "Offset",
    "QueryResult",
    "Receipt",
    "RecordHeader",
    "RecordKind",
    "RecoveryReason",
    "RecoveryRecord",
    "SignedCheckpoint",
    "StreamId",
    "StreamInfo",
    "SyncMode",
    "SyncPolicy",
    "TenantHandle",
    "TenantId",
    "Timestamp",
    "TenantVerification",
    "VerificationReport",
    "Verity",
    "__version__",
    "open",
]
