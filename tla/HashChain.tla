----------------------------- MODULE HashChain -----------------------------
(***************************************************************************)
(* VerityDB's hash-chained log under crashes, torn writes and bit rot.     *)
(*                                                                         *)
(* The executable reference is verity_spec.log (spec/log.py); each action  *)
(* below names the spec function it models in a "spec:" comment, and      *)
(* tests/test_tla.py checks that those functions exist.                    *)
(*                                                                         *)
(* Sequences are 1-based, offsets 0-based: log[i] is the record at offset  *)
(* i - 1.                                                                  *)
(*                                                                         *)
(* Hashes are abstract. The chain hash of a prefix is the prefix itself,   *)
(* tagged "chain", and its Merkle root is the prefix tagged "merkle". Two  *)
(* prefixes then share a hash only when they are equal, so the model      *)
(* assumes SHA-256 is collision-free by construction and checks only the  *)
(* linking and bookkeeping rules, not the cryptography.                    *)
(*                                                                         *)
(* Durability: an append first writes records (volatile, in log beyond     *)
(* synced), a Sync makes everything written durable, and only then may Ack *)
(* return to the client. The model lets Sync happen at any moment, which   *)
(* covers every SyncPolicy (every record, every batch, group commit).      *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

CONSTANTS
    MaxRecords,      \* bound on the log's length, keeps the state space finite
    EveryN,          \* CheckpointPolicy.every_n_records
    ExplicitOnly,    \* CheckpointPolicy.explicit_only
    OnShutdown,      \* CheckpointPolicy.on_shutdown
    MaxGenerations,  \* bound on torn-tail recoveries (used by StateBound only)
    Payloads         \* a small set of model values standing for DATA payloads

ASSUME
    /\ MaxRecords \in Nat \ {0}
    /\ EveryN \in Nat \ {0}
    /\ ExplicitOnly \in BOOLEAN
    /\ OnShutdown \in BOOLEAN
    /\ MaxGenerations \in Nat
    /\ Payloads # {}

VARIABLES
    log,          \* the records the process sees: durable ones, then written ones
    synced,       \* how many leading records of log are durable
    acked,        \* how many leading records have been acknowledged to clients
    ackedPrefix,  \* history: the records as they were when acknowledged
    generation,   \* recovery generation, bumped by each torn-tail recovery
    recoveries,   \* the RecoveryRecords written so far, oldest first
    damaged,      \* offsets of stored records whose bytes were altered
    torn,         \* a half-written record lies on disk just after log
    status        \* "open", "crashed" (power lost) or "closed" (clean shutdown)

vars == <<log, synced, acked, ackedPrefix, generation, recoveries, damaged, torn, status>>

-----------------------------------------------------------------------------
(* Abstract hashes and record construction.                                *)

ChainHash(prefix) == <<"chain", prefix>>
MerkleRoot(prefix) == <<"merkle", prefix>>

\* The prev hash of record 0: the chain hash of no records.
ZeroHash == ChainHash(<<>>)

\* Chain hash of the first i records of the current log.
Hash(i) == ChainHash(SubSeq(log, 1, i))

\* The clock readings an action may be handed; real time may stand still or
\* run backwards relative to the log, so readings below the last timestamp occur.
Times == 1..MaxRecords

Max(a, b) == IF a >= b THEN a ELSE b

LastTimestamp(s) == IF s = <<>> THEN 0 ELSE s[Len(s)].ts

\* A new record's timestamp: max(now, previous timestamp + 1), as in the spec.
NextTimestamp(s, now) == Max(now, LastTimestamp(s) + 1)

DataRecord(s, p, now) ==
    [kind |-> "DATA", offset |-> Len(s), payload |-> p,
     prev |-> ChainHash(s), ts |-> NextTimestamp(s, now)]

\* What a checkpoint at offset Len(s) states about the records before it.
CheckpointStatement(s) ==
    [record_count |-> Len(s), chain_hash |-> ChainHash(s), merkle_root |-> MerkleRoot(s)]

CheckpointRecord(s, now) ==
    [kind |-> "CHECKPOINT", offset |-> Len(s), payload |-> CheckpointStatement(s),
     prev |-> ChainHash(s), ts |-> NextTimestamp(s, now)]

\* Records after the last CHECKPOINT (all DATA): the spec's data_records_since_checkpoint.
DataSinceCheckpoint(s) ==
    LET checkpoints == {i \in 1..Len(s) : s[i].kind = "CHECKPOINT"}
        last == IF checkpoints = {} THEN 0
                ELSE CHOOSE i \in checkpoints : \A j \in checkpoints : j <= i
    IN Len(s) - last

AutoCheckpointDue(s) == ~ExplicitOnly /\ DataSinceCheckpoint(s) >= EveryN

\* One DATA record, then the automatic checkpoint it makes due (if any).
WithData(s, p, now) ==
    LET s1 == Append(s, DataRecord(s, p, now))
    IN IF AutoCheckpointDue(s1) THEN Append(s1, CheckpointRecord(s1, now)) ELSE s1

EndsWithCheckpoint(s) == s # <<>> /\ s[Len(s)].kind = "CHECKPOINT"

ShutdownLog(s, now) ==
    IF OnShutdown /\ s # <<>> /\ ~EndsWithCheckpoint(s)
    THEN Append(s, CheckpointRecord(s, now))
    ELSE s

-----------------------------------------------------------------------------
(* Initial state and actions.                                              *)

\* spec: verity_spec.log.empty_log
Init ==
    /\ log = <<>>
    /\ synced = 0
    /\ acked = 0
    /\ ackedPrefix = <<>>
    /\ generation = 0
    /\ recoveries = <<>>
    /\ damaged = {}
    /\ torn = FALSE
    /\ status = "open"

\* Write one DATA record (and the automatic checkpoint folded into it); the
\* write is volatile until a Sync.
\* spec: verity_spec.log.append
AppendData(p, now) ==
    LET s == WithData(log, p, now)
    IN /\ status = "open"
       /\ Len(s) <= MaxRecords
       /\ log' = s
       /\ UNCHANGED <<synced, acked, ackedPrefix, generation, recoveries, damaged, torn, status>>

\* Write two DATA records in one step, with automatic checkpoints between.
\* spec: verity_spec.log.append_batch
AppendBatch(p1, p2, now) ==
    LET s == WithData(WithData(log, p1, now), p2, now)
    IN /\ status = "open"
       /\ Len(s) <= MaxRecords
       /\ log' = s
       /\ UNCHANGED <<synced, acked, ackedPrefix, generation, recoveries, damaged, torn, status>>

\* spec: verity_spec.log.append_checkpoint
AppendCheckpoint(now) ==
    /\ status = "open"
    /\ Len(log) < MaxRecords
    /\ log' = Append(log, CheckpointRecord(log, now))
    /\ UNCHANGED <<synced, acked, ackedPrefix, generation, recoveries, damaged, torn, status>>

\* fsync: everything written so far becomes durable. The spec's append returns
\* only after this step, so it is part of what append models.
\* spec: verity_spec.log.append
Sync ==
    /\ status = "open"
    /\ synced < Len(log)
    /\ synced' = Len(log)
    /\ UNCHANGED <<log, acked, ackedPrefix, generation, recoveries, damaged, torn, status>>

\* An append returns to its client: only durable records are acknowledged.
\* spec: verity_spec.log.append
Ack(n) ==
    /\ status = "open"
    /\ acked < n
    /\ n <= synced
    /\ acked' = n
    /\ ackedPrefix' = SubSeq(log, 1, n)
    /\ UNCHANGED <<log, synced, generation, recoveries, damaged, torn, status>>

\* Clean shutdown: the final checkpoint if the policy asks for one, then fsync.
\* spec: verity_spec.log.shutdown
Shutdown(now) ==
    LET s == ShutdownLog(log, now)
    IN /\ status = "open"
       /\ Len(s) <= MaxRecords
       /\ log' = s
       /\ synced' = Len(s)
       /\ status' = "closed"
       /\ UNCHANGED <<acked, ackedPrefix, generation, recoveries, damaged, torn>>

\* Power loss: the first kept records survive (at least every durable one), the
\* rest are lost, and record kept may be left half-written on disk. This picks
\* the kept and torn arguments of the spec's recover_torn_tail.
\* spec: verity_spec.log.recover_torn_tail
Crash(kept, isTorn) ==
    /\ status = "open"
    /\ synced <= kept
    /\ kept <= Len(log)
    /\ isTorn => kept < Len(log)
    /\ log' = SubSeq(log, 1, kept)
    /\ synced' = kept
    /\ torn' = isTorn
    /\ status' = "crashed"
    /\ UNCHANGED <<acked, ackedPrefix, generation, recoveries, damaged>>

\* Open after a crash or a clean shutdown. Only the torn record is discarded;
\* every whole record, damaged or not, stays.
\* spec: verity_spec.log.recover_torn_tail
Recover ==
    /\ status \in {"crashed", "closed"}
    /\ status' = "open"
    /\ IF torn
       THEN /\ generation' = generation + 1
            /\ recoveries' = Append(recoveries,
                   [generation |-> generation + 1,
                    previous_generation |-> generation,
                    known_committed |-> Len(log),
                    discarded_from |-> Len(log),
                    discarded_to |-> Len(log) + 1])
            /\ torn' = FALSE
       ELSE UNCHANGED <<generation, recoveries, torn>>
    /\ UNCHANGED <<log, synced, acked, ackedPrefix, damaged>>

\* Bit rot: the stored bytes of a durable record change. The record stays in
\* the log; read_verified and verify report it as damaged.
\* spec: verity_spec.log.corrupt
Corrupt(offset) ==
    /\ offset < synced
    /\ offset \notin damaged
    /\ damaged' = damaged \cup {offset}
    /\ UNCHANGED <<log, synced, acked, ackedPrefix, generation, recoveries, torn, status>>

Next ==
    \/ \E p \in Payloads, now \in Times : AppendData(p, now)
    \/ \E p1 \in Payloads, p2 \in Payloads, now \in Times : AppendBatch(p1, p2, now)
    \/ \E now \in Times : AppendCheckpoint(now)
    \/ Sync
    \/ \E n \in 1..MaxRecords : Ack(n)
    \/ \E now \in Times : Shutdown(now)
    \/ \E kept \in 0..MaxRecords, isTorn \in BOOLEAN : Crash(kept, isTorn)
    \/ Recover
    \/ \E offset \in 0..(MaxRecords - 1) : Corrupt(offset)

Spec == Init /\ [][Next]_vars

\* TLC state constraint: stop exploring past MaxGenerations recoveries.
StateBound == generation <= MaxGenerations

-----------------------------------------------------------------------------
(* Invariants.                                                             *)

TypeOK ==
    /\ Len(log) \in 0..MaxRecords
    /\ \A i \in 1..Len(log) :
          /\ log[i].kind \in {"DATA", "CHECKPOINT"}
          /\ log[i].kind = "DATA" => log[i].payload \in Payloads
          /\ log[i].ts \in Nat
    /\ synced \in 0..Len(log)
    /\ acked \in 0..synced
    /\ Len(ackedPrefix) = acked
    /\ generation \in Nat
    /\ Len(recoveries) = generation
    /\ damaged \subseteq Nat
    /\ torn \in BOOLEAN
    /\ status \in {"open", "crashed", "closed"}

\* Each record's prev is the chain hash of the records before it.
ChainLinked ==
    /\ Len(log) > 0 => log[1].prev = ZeroHash
    /\ \A i \in 1..Len(log) : log[i].prev = Hash(i - 1)

\* Record i carries offset i - 1: no gaps, no repeats.
OffsetsDense == \A i \in 1..Len(log) : log[i].offset = i - 1

TimestampsIncreasing == \A i \in 2..Len(log) : log[i - 1].ts < log[i].ts

\* An acknowledged record is never lost or changed, whatever crashes happen.
AckedNeverLost ==
    /\ acked <= Len(log)
    /\ Len(ackedPrefix) <= Len(log)
    /\ SubSeq(log, 1, Len(ackedPrefix)) = ackedPrefix

\* A checkpoint at offset k states exactly the k records before it.
CheckpointsCorrect ==
    \A i \in 1..Len(log) :
        log[i].kind = "CHECKPOINT" =>
            /\ log[i].payload.record_count = i - 1
            /\ log[i].payload.chain_hash = Hash(i - 1)
            /\ log[i].payload.merkle_root = MerkleRoot(SubSeq(log, 1, i - 1))

\* A damaged record stays in the log: recovery does not truncate it away.
CorruptionNeverTruncated == \A offset \in damaged : offset < Len(log)

\* Damage hits durable records, so the spec's recover_torn_tail precondition
\* (every damaged offset is below kept) always holds for a Crash.
DamagedRecordsDurable == \A offset \in damaged : offset < synced

\* Each recovery discards exactly the torn record after the last whole one.
RecoveriesAccountForTornTail ==
    \A i \in 1..Len(recoveries) :
        /\ recoveries[i].generation = i
        /\ recoveries[i].previous_generation = i - 1
        /\ recoveries[i].discarded_from = recoveries[i].known_committed
        /\ recoveries[i].discarded_to = recoveries[i].discarded_from + 1

\* A torn record only exists between a crash and the next open.
TornOnlyWhileCrashed == torn => status = "crashed"

Invariants ==
    /\ TypeOK
    /\ ChainLinked
    /\ OffsetsDense
    /\ TimestampsIncreasing
    /\ AckedNeverLost
    /\ CheckpointsCorrect
    /\ CorruptionNeverTruncated
    /\ DamagedRecordsDurable
    /\ RecoveriesAccountForTornTail
    /\ TornOnlyWhileCrashed

-----------------------------------------------------------------------------
(* Action properties.                                                      *)

GenerationMonotonic == [][generation' >= generation]_vars

AckedMonotonic == [][acked' >= acked]_vars

\* Opening the log (Recover) removes no whole record and forgets no damage.
OpenKeepsRecords ==
    [][(status # "open" /\ status' = "open") => (log' = log /\ damaged' = damaged)]_vars

THEOREM Spec => []Invariants
THEOREM Spec => GenerationMonotonic /\ AckedMonotonic /\ OpenKeepsRecords
=============================================================================
