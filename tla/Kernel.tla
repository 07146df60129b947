------------------------------- MODULE Kernel -------------------------------
(***************************************************************************)
(* VerityDB's kernel: a tenant's streams, per-stream ordering and           *)
(* idempotency, as a state machine that is a derived view of its log.      *)
(*                                                                         *)
(* The executable reference is verity_spec.kernel (spec/kernel.py); the     *)
(* operators Decide, Evolve, EventFits, Replay and Apply transcribe its    *)
(* functions decide, evolve, event_fits, replay and apply. The shell's     *)
(* effects are explicit: the event Apply returns is appended to log, and   *)
(* the reply is kept per key in lastReply. Each action names the spec      *)
(* function it models in a "spec:" comment, and                            *)
(* tests/test_tla.py checks that those functions exist.                    *)
(*                                                                         *)
(* Abstractions. Streams are model values; the spec's dense stream numbers *)
(* and tenant bits are not modelled (one tenant), nor are stream names:   *)
(* a stream's name is the stream itself, so creating an existing stream is *)
(* the spec's DUPLICATE_NAME. An append carries a count instead of event   *)
(* bytes. Validation of malformed commands (wrong tenant, bad timestamp,   *)
(* empty or oversized batch, bad key length) is not modelled: it rejects   *)
(* before anything is looked up and changes nothing.                       *)
(*                                                                         *)
(* Time arrives only inside commands, as in the spec: a command carries    *)
(* any reading from 0..MaxTime, including one behind the log time (the     *)
(* spec accepts any u64). There is no separate clock tick: the kernel has  *)
(* no clock, and an idempotency id is forgotten only inside Evolve, when   *)
(* an event moves the log time past its commit timestamp + Retention.      *)
(*                                                                         *)
(* Sequences are 1-based, offsets 0-based.                                 *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

CONSTANTS
    Streams,       \* model values standing for stream ids
    Keys,          \* model values standing for 16-byte idempotency ids
    MaxEvents,     \* bound on the events one stream holds (keeps it finite)
    MaxTime,       \* commands carry timestamps from 0..MaxTime
    Retention,     \* KernelState.retention_ns, in the unit of timestamps
    MaxLogLength,  \* bound on the log's length (used by StateBound only)
    None           \* model value: no key, no expected offset, not remembered

ASSUME
    /\ Streams # {}
    /\ MaxEvents \in Nat \ {0}
    /\ MaxTime \in Nat
    /\ Retention \in Nat
    /\ MaxLogLength \in Nat
    /\ None \notin Streams \cup Keys

VARIABLES
    streams,     \* the streams created so far
    nextOffset,  \* stream -> the offset its next event gets (0 if not created)
    remembered,  \* key -> [stream, offset, committedAt] of its commit, or None
    logTime,     \* the greatest event timestamp applied so far (0 before any)
    log,         \* the recorded events, in order: what the shell appends
    lastReply    \* key -> the last Applied reply a client got for it, or None

kernelVars == <<streams, nextOffset, remembered, logTime>>
vars == <<streams, nextOffset, remembered, logTime, log, lastReply>>

-----------------------------------------------------------------------------
(* Values.                                                                 *)

Times == 0..MaxTime
KeyChoices == Keys \cup {None}
ExpectedChoices == (0..MaxEvents) \cup {None}

Max(a, b) == IF a >= b THEN a ELSE b
MaxOf(set) == CHOOSE x \in set : \A y \in set : y <= x

\* A recorded event. StreamCreated has first = count = 0 and key = None.
Events ==
    [type : {"StreamCreated", "EventsAppended"}, stream : Streams,
     first : 0..MaxEvents, count : 0..MaxEvents, key : KeyChoices, ts : Times]

Entries == [stream : Streams, offset : 0..MaxEvents, committedAt : Times]

Replies == [stream : Streams, offset : 0..MaxEvents, duplicate : BOOLEAN]

CreateCmd(s, now) ==
    [type |-> "CreateStream", stream |-> s, key |-> None, expected |-> None,
     count |-> 0, ts |-> now]

AppendCmd(s, k, e, c, now) ==
    [type |-> "AppendBatch", stream |-> s, key |-> k, expected |-> e,
     count |-> c, ts |-> now]

Applied(s, offset, duplicate) ==
    [kind |-> "Applied", stream |-> s, offset |-> offset,
     duplicate |-> duplicate]

Rejected(reason) == [kind |-> "Rejected", reason |-> reason]

KernelState ==
    [streams |-> streams, nextOffset |-> nextOffset, remembered |-> remembered,
     logTime |-> logTime]

-----------------------------------------------------------------------------
(* The spec's functions, on a kernel state record st.                      *)

\* spec: verity_spec.kernel.initial_state
InitialState ==
    [streams |-> {}, nextOffset |-> [s \in Streams |-> 0],
     remembered |-> [k \in Keys |-> None], logTime |-> 0]

\* The outcome, and the event to record (None when nothing is recorded). The
\* key is looked up before the stream and the expected offset, so a retry gets
\* the original answer although the original moved the stream past it.
\* spec: verity_spec.kernel.decide
Decide(st, cmd) ==
    IF cmd.type = "CreateStream"
    THEN IF cmd.stream \in st.streams
         THEN [outcome |-> Rejected("duplicate_name"), event |-> None]
         ELSE [outcome |-> Applied(cmd.stream, 0, FALSE),
               event |-> [type |-> "StreamCreated", stream |-> cmd.stream,
                          first |-> 0, count |-> 0, key |-> None,
                          ts |-> cmd.ts]]
    ELSE IF cmd.key # None /\ st.remembered[cmd.key] # None
    THEN [outcome |-> Applied(st.remembered[cmd.key].stream,
                              st.remembered[cmd.key].offset, TRUE),
          event |-> None]
    ELSE IF cmd.stream \notin st.streams
    THEN [outcome |-> Rejected("unknown_stream"), event |-> None]
    ELSE IF cmd.expected # None /\ cmd.expected # st.nextOffset[cmd.stream]
    THEN [outcome |-> Rejected("offset_mismatch"), event |-> None]
    ELSE [outcome |-> Applied(cmd.stream, st.nextOffset[cmd.stream], FALSE),
          event |-> [type |-> "EventsAppended", stream |-> cmd.stream,
                     first |-> st.nextOffset[cmd.stream], count |-> cmd.count,
                     key |-> cmd.key, ts |-> cmd.ts]]

\* spec: verity_spec.kernel.event_fits
EventFits(st, ev) ==
    IF ev.type = "StreamCreated"
    THEN ev.stream \notin st.streams
    ELSE /\ ev.stream \in st.streams
         /\ st.nextOffset[ev.stream] = ev.first
         /\ (ev.key = None \/ st.remembered[ev.key] = None)

\* Forgetting happens here only: an entry survives while its commit timestamp
\* plus Retention is at least the new log time. The filter runs before the new
\* entry is added, so an event's own key is always remembered after it.
\* spec: verity_spec.kernel.evolve
Evolve(st, ev) ==
    LET time == Max(st.logTime, ev.ts)
        kept == [k \in Keys |->
                    IF /\ st.remembered[k] # None
                       /\ st.remembered[k].committedAt + Retention >= time
                    THEN st.remembered[k]
                    ELSE None]
    IN IF ev.type = "StreamCreated"
       THEN [st EXCEPT !.streams = @ \cup {ev.stream}, !.remembered = kept,
                       !.logTime = time]
       ELSE [st EXCEPT
                !.nextOffset[ev.stream] = @ + ev.count,
                !.remembered =
                    IF ev.key = None THEN kept
                    ELSE [kept EXCEPT ![ev.key] =
                             [stream |-> ev.stream, offset |-> ev.first,
                              committedAt |-> ev.ts]],
                !.logTime = time]

\* The state the events imply, folded from InitialState; None when an event
\* does not fit the state before it (the spec's replay raises).
\* spec: verity_spec.kernel.replay
Replay(events) ==
    LET after[n \in 0..Len(events)] ==
            IF n = 0 THEN InitialState
            ELSE IF after[n - 1] = None THEN None
            ELSE IF ~EventFits(after[n - 1], events[n]) THEN None
            ELSE Evolve(after[n - 1], events[n])
    IN after[Len(events)]

-----------------------------------------------------------------------------
(* Initial state and actions.                                              *)

\* spec: verity_spec.kernel.initial_state
Init ==
    /\ streams = {}
    /\ nextOffset = [s \in Streams |-> 0]
    /\ remembered = [k \in Keys |-> None]
    /\ logTime = 0
    /\ log = <<>>
    /\ lastReply = [k \in Keys |-> None]

\* The spec's apply, pure: the state after the command, the event to append
\* to the log (None when nothing is recorded) and the outcome to reply with.
\* spec: verity_spec.kernel.apply
Apply(st, cmd) ==
    LET decided == Decide(st, cmd)
    IN [state |-> IF decided.event = None THEN st
                  ELSE Evolve(st, decided.event),
        event |-> decided.event,
        outcome |-> decided.outcome]

\* The shell's AppendRecord effect: the log with the event appended, if any.
Recorded(event) == IF event = None THEN log ELSE Append(log, event)

\* The Reply effect, as the client that sent key sees it: an Applied reply
\* (fresh or duplicate) to a command with a key replaces lastReply[key].
Answered(key, outcome) ==
    IF key # None /\ outcome.kind = "Applied"
    THEN [lastReply EXCEPT ![key] =
             [stream |-> outcome.stream, offset |-> outcome.offset,
              duplicate |-> outcome.duplicate]]
    ELSE lastReply

\* The actions below are client scenarios that partition the commands by what
\* decide answers. Each takes its successor from the same Apply, so the
\* properties test Decide's order of checks, not the guards. Rejected and
\* duplicate answers do not depend on the batch size or timestamp, so those
\* commands carry count 1 and the current logTime.

\* A new stream.
\* spec: verity_spec.kernel.apply
CreateStream(s, now) ==
    LET applied == Apply(KernelState, CreateCmd(s, now))
    IN /\ s \notin streams
       /\ streams' = applied.state.streams
       /\ nextOffset' = applied.state.nextOffset
       /\ remembered' = applied.state.remembered
       /\ logTime' = applied.state.logTime
       /\ log' = Recorded(applied.event)
       /\ lastReply' = Answered(None, applied.outcome)

\* The stream exists already: DUPLICATE_NAME.
\* spec: verity_spec.kernel.decide
CreateDuplicate(s) ==
    LET applied == Apply(KernelState, CreateCmd(s, logTime))
    IN /\ s \in streams
       /\ streams' = applied.state.streams
       /\ nextOffset' = applied.state.nextOffset
       /\ remembered' = applied.state.remembered
       /\ logTime' = applied.state.logTime
       /\ log' = Recorded(applied.event)
       /\ lastReply' = Answered(None, applied.outcome)

\* No key, or one not remembered. An IF, not a disjunction: TLC explores each
\* disjunct of an action separately and would apply remembered to None.
Fresh(k) == IF k = None THEN TRUE ELSE remembered[k] = None

\* An append that commits: no key or one not remembered, a stream that
\* exists, no expected offset or the right one. MaxEvents bounds the model.
\* spec: verity_spec.kernel.apply
AppendNew(s, k, e, c, now) ==
    LET applied == Apply(KernelState, AppendCmd(s, k, e, c, now))
    IN /\ Fresh(k)
       /\ s \in streams
       /\ e \in {None, nextOffset[s]}
       /\ nextOffset[s] + c <= MaxEvents
       /\ streams' = applied.state.streams
       /\ nextOffset' = applied.state.nextOffset
       /\ remembered' = applied.state.remembered
       /\ logTime' = applied.state.logTime
       /\ log' = Recorded(applied.event)
       /\ lastReply' = Answered(k, applied.outcome)

\* A retry: the key committed and is still remembered. Any stream (even one
\* that does not exist) and any expected offset; the answer is the original.
\* spec: verity_spec.kernel.decide
AppendRetry(s, k, e) ==
    LET applied == Apply(KernelState, AppendCmd(s, k, e, 1, logTime))
    IN /\ remembered[k] # None
       /\ streams' = applied.state.streams
       /\ nextOffset' = applied.state.nextOffset
       /\ remembered' = applied.state.remembered
       /\ logTime' = applied.state.logTime
       /\ log' = Recorded(applied.event)
       /\ lastReply' = Answered(k, applied.outcome)

\* Optimistic concurrency lost: OFFSET_MISMATCH.
\* spec: verity_spec.kernel.decide
AppendStale(s, k, e) ==
    LET applied == Apply(KernelState, AppendCmd(s, k, e, 1, logTime))
    IN /\ Fresh(k)
       /\ s \in streams
       /\ e # nextOffset[s]
       /\ streams' = applied.state.streams
       /\ nextOffset' = applied.state.nextOffset
       /\ remembered' = applied.state.remembered
       /\ logTime' = applied.state.logTime
       /\ log' = Recorded(applied.event)
       /\ lastReply' = Answered(k, applied.outcome)

\* The stream was never created: UNKNOWN_STREAM.
\* spec: verity_spec.kernel.decide
AppendUnknown(s, k) ==
    LET applied == Apply(KernelState, AppendCmd(s, k, None, 1, logTime))
    IN /\ Fresh(k)
       /\ s \notin streams
       /\ streams' = applied.state.streams
       /\ nextOffset' = applied.state.nextOffset
       /\ remembered' = applied.state.remembered
       /\ logTime' = applied.state.logTime
       /\ log' = Recorded(applied.event)
       /\ lastReply' = Answered(k, applied.outcome)

Next ==
    \/ \E s \in Streams, now \in Times : CreateStream(s, now)
    \/ \E s \in Streams : CreateDuplicate(s)
    \/ \E s \in Streams, k \in KeyChoices, e \in ExpectedChoices,
          c \in 1..MaxEvents, now \in Times : AppendNew(s, k, e, c, now)
    \/ \E s \in Streams, k \in Keys, e \in ExpectedChoices :
          AppendRetry(s, k, e)
    \/ \E s \in Streams, k \in KeyChoices, e \in 0..MaxEvents :
          AppendStale(s, k, e)
    \/ \E s \in Streams, k \in KeyChoices : AppendUnknown(s, k)

Spec == Init /\ [][Next]_vars

\* TLC state constraint: stop exploring past MaxLogLength recorded events.
StateBound == Len(log) <= MaxLogLength

-----------------------------------------------------------------------------
(* Facts about the log.                                                    *)

\* The log time after the first n events: their greatest timestamp, or 0.
LogTimeAt(n) ==
    LET times == {log[i].ts : i \in 1..n}
    IN IF times = {} THEN 0 ELSE MaxOf(times)

IsAppend(i, s) == log[i].type = "EventsAppended" /\ log[i].stream = s

IsCreate(i, s) == log[i].type = "StreamCreated" /\ log[i].stream = s

Commits(i, k) == log[i].type = "EventsAppended" /\ log[i].key = k

-----------------------------------------------------------------------------
(* Invariants.                                                             *)

TypeOK ==
    /\ streams \subseteq Streams
    /\ nextOffset \in [Streams -> 0..MaxEvents]
    /\ remembered \in [Keys -> Entries \cup {None}]
    /\ logTime \in Times
    /\ \A i \in 1..Len(log) : log[i] \in Events
    /\ lastReply \in [Keys -> Replies \cup {None}]

\* Per stream, the appends' [first, first + count) ranges tile
\* 0..nextOffset - 1 in log order: offsets are dense and increasing.
OffsetsDense ==
    \A s \in Streams :
        LET appends == {i \in 1..Len(log) : IsAppend(i, s)}
        IN /\ \A i \in appends :
                 LET earlier == {j \in appends : j < i}
                 IN log[i].first =
                        IF earlier = {} THEN 0
                        ELSE LET j == MaxOf(earlier)
                             IN log[j].first + log[j].count
           /\ nextOffset[s] =
                  IF appends = {} THEN 0
                  ELSE LET j == MaxOf(appends)
                       IN log[j].first + log[j].count

\* A stream is created once, before any append to it.
AppendsFollowCreation ==
    \A s \in Streams :
        LET creations == {i \in 1..Len(log) : IsCreate(i, s)}
        IN /\ Cardinality(creations) = IF s \in streams THEN 1 ELSE 0
           /\ \A i \in 1..Len(log) :
                 IsAppend(i, s) => \E j \in creations : j < i

\* What the spec guarantees about one key committing twice (events i < j):
\* some event strictly between them moved the log time past event i's own
\* timestamp + Retention. So two commits of a key are never adjacent, and the
\* log time before the second is more than Retention past the first's
\* timestamp. Measured from the first commit's log time instead, the gap can be
\* smaller when its timestamp ran behind the log (see RetentionFromLogTime).
KeyCommitsAtMostOnce ==
    \A i, j \in 1..Len(log) :
        (/\ i < j
         /\ log[i].type = "EventsAppended"
         /\ log[j].type = "EventsAppended"
         /\ log[i].key # None
         /\ log[i].key = log[j].key)
        => /\ i + 1 < j
           /\ LogTimeAt(j - 1) > log[i].ts + Retention

\* Exactly when a key is remembered: its latest commit is the last event, or
\* no event since has moved the log time past that commit's timestamp +
\* Retention. Remembered, it answers with that commit's stream and offset.
RememberedWithinRetention ==
    \A k \in Keys :
        LET commits == {i \in 1..Len(log) : Commits(i, k)}
            last == MaxOf(commits)
        IN remembered[k] =
               IF commits = {} THEN None
               ELSE IF \/ last = Len(log)
                       \/ LogTimeAt(Len(log)) <= log[last].ts + Retention
               THEN [stream |-> log[last].stream, offset |-> log[last].first,
                     committedAt |-> log[last].ts]
               ELSE None

\* A retry of a remembered key, to any stream (even one that does not exist)
\* with any expected offset, is answered with the original commit's stream
\* and offset, marked duplicate, and records and changes nothing. Checked on
\* every state for every such command: as a step it would be a stutter,
\* which [][...]_vars does not look at. And every Applied reply a client got
\* for a key, fresh or duplicate, names the key's latest commit (a new commit
\* replaces lastReply in the same step, so this checks every reply).
RetryReturnsOriginal ==
    \A k \in Keys :
        /\ remembered[k] # None =>
              \A s \in Streams, e \in ExpectedChoices :
                  Apply(KernelState, AppendCmd(s, k, e, 1, logTime))
                      = [state |-> KernelState, event |-> None,
                         outcome |-> Applied(remembered[k].stream,
                                             remembered[k].offset, TRUE)]
        /\ lastReply[k] # None =>
              LET commits == {i \in 1..Len(log) : Commits(i, k)}
              IN /\ commits # {}
                 /\ lastReply[k].stream = log[MaxOf(commits)].stream
                 /\ lastReply[k].offset = log[MaxOf(commits)].first

\* Each rejecting scenario gets its reason and records and changes nothing,
\* checked on every state for every such command (see RetryReturnsOriginal).
RejectedWithReason ==
    /\ \A s \in streams :
          Apply(KernelState, CreateCmd(s, logTime))
              = [state |-> KernelState, event |-> None,
                 outcome |-> Rejected("duplicate_name")]
    /\ \A s \in Streams, k \in KeyChoices :
          Fresh(k) =>
              /\ s \in streams =>
                    \A e \in (0..MaxEvents) \ {nextOffset[s]} :
                        Apply(KernelState, AppendCmd(s, k, e, 1, logTime))
                            = [state |-> KernelState, event |-> None,
                               outcome |-> Rejected("offset_mismatch")]
              /\ s \notin streams =>
                    \A e \in ExpectedChoices :
                        Apply(KernelState, AppendCmd(s, k, e, 1, logTime))
                            = [state |-> KernelState, event |-> None,
                               outcome |-> Rejected("unknown_stream")]

\* The state is a derived view of the log: replaying it, each event fitting
\* the state before it, gives the live state.
ReplayEqualsState == Replay(log) = KernelState

Invariants ==
    /\ TypeOK
    /\ OffsetsDense
    /\ AppendsFollowCreation
    /\ KeyCommitsAtMostOnce
    /\ RememberedWithinRetention
    /\ RetryReturnsOriginal
    /\ RejectedWithReason
    /\ ReplayEqualsState

\* NOT an invariant (not in Kernel.cfg): "remembered for at least Retention of
\* log time after it committed". It fails when a command's timestamp is behind
\* the log time: the entry's committedAt is that timestamp, so the next event
\* can forget it. README.md gives a shortest counterexample.
RetentionFromLogTime ==
    \A k \in Keys :
        LET commits == {i \in 1..Len(log) : Commits(i, k)}
        IN (/\ commits # {}
            /\ LogTimeAt(Len(log)) <= LogTimeAt(MaxOf(commits)) + Retention)
           => remembered[k] # None

-----------------------------------------------------------------------------
(* Action properties.                                                      *)

RejectingStep ==
    \/ \E s \in Streams : CreateDuplicate(s)
    \/ \E s \in Streams, k \in KeyChoices, e \in 0..MaxEvents :
          AppendStale(s, k, e)
    \/ \E s \in Streams, k \in KeyChoices : AppendUnknown(s, k)

\* A rejected command records nothing, changes no state and gives no Applied
\* reply.
RejectedChangesNothing == [][RejectingStep => UNCHANGED vars]_vars

\* A retry records nothing and changes no state; its reply is the original
\* commit's stream and offset, marked duplicate.
RetryRecordsNothing ==
    [][\A k \in Keys :
          (\E s \in Streams, e \in ExpectedChoices : AppendRetry(s, k, e))
          => /\ UNCHANGED <<kernelVars, log>>
             /\ lastReply' = [lastReply EXCEPT ![k] =
                                 [stream |-> remembered[k].stream,
                                  offset |-> remembered[k].offset,
                                  duplicate |-> TRUE]]]_vars

\* The log only grows, one event at a time, at its end.
LogAppendOnly ==
    [][\/ log' = log
       \/ /\ Len(log') = Len(log) + 1
          /\ SubSeq(log', 1, Len(log)) = log]_vars

THEOREM Spec => []Invariants
THEOREM Spec => RejectedChangesNothing /\ RetryRecordsNothing /\ LogAppendOnly
=============================================================================
