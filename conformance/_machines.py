"""The lockstep machines in the certifier's run: budgeted, seeded rounds, reproductions.

`run_machines` runs each chosen machine (`MACHINES`) against the installed
implementation for its share of a time budget, in rounds: round `r` runs a
fixed number of Hypothesis examples with seed `base_seed + r`, so a round is
repeated exactly by `--seed <its seed>` (the round size is part of the
machine, not of the budget: Hypothesis generates differently for another
`max_examples`). Another round starts while one more of the machine's
average round length fits its share.

When a round fails, Hypothesis shrinks the failure (at most `shrink_seconds`)
and replays it once more; that last run's machine holds the recording of
what it did (`_runner.Recording`), which becomes a vector file whose
expectations the spec computes, exactly as `generate` computes them. The
vector is then replayed against the implementation, to say whether it
reproduces the failure on its own. Beside it, a text file holds the seed, the
error and the minimal program Hypothesis printed; for a machine without a
vector format (the SDK) that file is the reproduction, replayed by seed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.internal.conjecture.engine as hypothesis_engine
from hypothesis import HealthCheck, Phase, settings
from hypothesis.reporting import with_reporter
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test

from verity_conformance import _runner
from verity_conformance._runner import Recording, Step, VectorResult

__all__ = [
    "MACHINES",
    "Machine",
    "Round",
    "run_machines",
    "run_round",
    "vector_of",
]

Say = Callable[[str], None]


@dataclass(frozen=True)
class Replay:
    """How a machine's recording becomes a vector, and how a vector is checked."""

    spec_driver: Callable[[dict[str, Any]], Any]
    perform: Callable[[Any, Step], object]
    check: Callable[[Path], VectorResult]


@dataclass(frozen=True)
class Machine:
    """One lockstep machine of the run.

    `examples` per round is sized so that a round takes a few seconds on a
    small machine; `weight` is the machine's share of the budget.
    """

    name: str
    module: str
    class_name: str
    steps: int
    examples: int
    weight: int
    replay: Callable[[], Replay] | None

    def load(self) -> type[RuleBasedStateMachine]:
        machine: type[RuleBasedStateMachine] = getattr(import_module(self.module), self.class_name)
        return machine


def _log_replay() -> Replay:
    from verity_conformance import vectors
    from verity_conformance.drivers import SpecLogDriver

    return Replay(
        SpecLogDriver,
        vectors.perform,
        lambda path: vectors.run_vector(path, vectors.default_factory),
    )


def _kernel_replay() -> Replay:
    from verity_conformance import kernel_vectors

    return Replay(
        kernel_vectors.SpecKernelDriver,
        kernel_vectors.perform,
        lambda path: kernel_vectors.run_vector(path, kernel_vectors.default_kernel_factory),
    )


def _tables_replay() -> Replay:
    from verity_conformance import tables_vectors
    from verity_conformance.tables_drivers import SpecTablesDriver

    def check(path: Path) -> VectorResult:
        # The machine's two implementation sides: the engine over the real store, then
        # (when that passes) over MemoryVersionedStore; the first failure is reported.
        result = tables_vectors.run_vector(path, tables_vectors.default_tables_factory)
        if result.failure is not None:
            return result
        return tables_vectors.run_vector(path, tables_vectors.memory_tables_factory)

    return Replay(lambda _config: SpecTablesDriver(), tables_vectors.perform, check)


# A round takes a few seconds on a small machine (2 cores, a shared disk). Weights:
# the log and the SDK write real files with fsync and hold the most code; the
# kernel is pure and fast, so a smaller share goes a long way.
MACHINES: dict[str, Machine] = {
    machine.name: machine
    for machine in (
        Machine(
            name="kernel",
            module="verity_conformance.kernel_machine",
            class_name="KernelLockstep",
            steps=40,
            examples=10,
            weight=2,
            replay=_kernel_replay,
        ),
        Machine(
            name="log",
            module="verity_conformance.log_machine",
            class_name="LogLockstep",
            steps=30,
            examples=6,
            weight=3,
            replay=_log_replay,
        ),
        Machine(
            name="tables",
            module="verity_conformance.tables_machine",
            class_name="TablesLockstep",
            steps=30,
            examples=6,
            weight=2,
            replay=_tables_replay,
        ),
        Machine(
            name="store",
            module="verity_conformance.store_machine",
            class_name="StoreLockstep",
            steps=30,
            examples=10,
            weight=2,
            replay=None,  # no vector format: a failure is replayed by its seed
        ),
        Machine(
            name="sdk",
            module="verity_conformance.sdk_machine",
            class_name="SdkLockstep",
            steps=30,
            examples=5,
            weight=3,
            replay=None,  # no vector format: a failure is replayed by its seed
        ),
        Machine(
            name="dbapi",
            module="verity_conformance.dbapi_machine",
            class_name="DbapiLockstep",
            steps=30,
            examples=5,
            weight=1,
            replay=None,  # no vector format: a failure is replayed by its seed
        ),
    )
}


@dataclass
class Round:
    """One round of one machine: what ran, and the failure with its reproduction."""

    machine: str
    seed: int
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    failure: str | None = None
    reproduction: list[Path] = field(default_factory=list)
    replayed: str | None = None
    """What replaying the reproduction vector against the implementation gave."""


class _Tracker:
    """Counts a round's examples and steps and keeps its newest machine."""

    def __init__(self) -> None:
        self.examples = 0
        self.invariant_checks = 0
        self.newest: RuleBasedStateMachine | None = None

    @property
    def steps(self) -> int:
        # Invariants are checked once when a machine starts and once after every step.
        return max(0, self.invariant_checks - self.examples)

    def tracked(self, machine: type[RuleBasedStateMachine]) -> type[RuleBasedStateMachine]:
        """`machine`, subclassed under its own name (the printed program names it)."""
        tracker = self

        def __init__(self: RuleBasedStateMachine) -> None:
            tracker.examples += 1
            tracker.newest = self  # before it starts: a machine that fails to start is newest
            machine.__init__(self)

        def check_invariants(self: RuleBasedStateMachine, *args: Any, **kwargs: Any) -> None:
            tracker.invariant_checks += 1
            machine.check_invariants(self, *args, **kwargs)

        namespace = {
            "__init__": __init__,
            "check_invariants": check_invariants,
            "__module__": machine.__module__,
            "__qualname__": machine.__qualname__,
        }
        return type(machine.__name__, (machine,), namespace)


@contextlib.contextmanager
def _shrinking_for_at_most(seconds: float) -> Iterator[None]:
    # Hypothesis reads this module constant each time it starts shrinking, and says
    # it is there to be patched; its default (5 minutes) would blow any budget.
    saved = hypothesis_engine.MAX_SHRINKING_SECONDS
    hypothesis_engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        hypothesis_engine.MAX_SHRINKING_SECONDS = saved


def round_settings(machine: Machine, shrink: bool = True) -> settings:
    # Explaining which arguments matter reruns the machine many times more.
    skipped = {Phase.explain} if shrink else {Phase.explain, Phase.shrink}
    return settings(
        max_examples=machine.examples,
        stateful_step_count=machine.steps,
        deadline=None,
        database=None,  # nothing written in the certifier's folder
        print_blob=True,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[phase for phase in Phase if phase not in skipped],
    )


SLOW_SHRINK_WARNING = "WARNING: Hypothesis has spent more than"


def run_round(
    machine: Machine,
    seed: int,
    out_dir: Path,
    shrink_seconds: float,
    verbose: bool = False,
) -> Round:
    """Run one round of `machine` with `seed`; on failure, write its reproduction to `out_dir`."""
    result = Round(machine.name, seed)
    tracker = _Tracker()
    test = get_state_machine_test(
        tracker.tracked(machine.load()), settings=round_settings(machine, shrink_seconds > 0)
    )
    test = hypothesis.seed(seed)(test)
    reported: list[str] = []
    started = time.monotonic()
    failure: Exception | None = None
    with (
        with_reporter(lambda value: reported.append(str(value))),
        _shrinking_for_at_most(shrink_seconds),
        _runner.quiet_implementation_logs(verbose),
    ):
        try:
            test()
        except Exception as error:  # any failure of the round is reported, never a crash
            failure = error
    result.seconds = time.monotonic() - started
    result.examples, result.steps = tracker.examples, tracker.steps
    if failure is not None:
        result.failure = _first_line(failure)
        program = [line for line in [*reported, *getattr(failure, "__notes__", [])] if line.strip()]
        slow = [line for line in program if line.startswith(SLOW_SHRINK_WARNING)]
        program = [line for line in program if not line.startswith(SLOW_SHRINK_WARNING)]
        if slow or shrink_seconds <= 0:
            program.insert(0, f"(shrunk for at most {shrink_seconds:g} s: not minimal)")
        _write_reproduction(result, machine, tracker.newest, failure, program, out_dir)
    return result


def _first_line(failure: BaseException) -> str:
    text = f"{type(failure).__name__}: {failure}"
    return text.splitlines()[0][:400] if text.strip() else type(failure).__name__


def _write_reproduction(
    result: Round,
    machine: Machine,
    newest: RuleBasedStateMachine | None,
    failure: Exception,
    program: list[str],
    out_dir: Path,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"repro-{result.seed}"
    recording = getattr(newest, "recording", None)
    if machine.replay is not None and isinstance(recording, Recording):
        replay = machine.replay()
        try:
            description = (
                f"reproduction of a failure of the {machine.name} machine, seed {result.seed} "
                f"({machine.examples} examples of up to {machine.steps} steps): {result.failure}"
            )
            vector = vector_of(recording, replay, name, description)
        except Exception as error:  # the spec failed on a recorded step: say so, keep going
            result.replayed = f"no vector: the spec raised {_first_line(error)}"
        else:
            [path] = _runner.write_vectors(out_dir, [vector])
            result.reproduction.append(path)
            replayed = replay.check(path)
            result.replayed = (
                f"fails at step {replayed.steps} (of {len(vector['steps'])} steps): "
                f"{replayed.failure}"
                if replayed.failure is not None
                else "passes: the failure is not in the vector's operations; replay by seed"
            )
    notes = out_dir / f"{machine.name}-{name}.txt"
    notes.write_text(_notes_text(result, machine, failure, program), encoding="utf-8")
    result.reproduction.append(notes)


def vector_of(recording: Recording, replay: Replay, name: str, description: str) -> dict[str, Any]:
    """The recording as a vector, each `expect` computed by a fresh spec driver."""
    spec = replay.spec_driver(recording.config)
    steps = [{**step, "expect": replay.perform(spec, step)} for step in recording.steps()]
    return {
        "format": _runner.FORMAT,
        "machine": recording.machine,
        "name": name,
        "description": description,
        "config": recording.config,
        "steps": steps,
    }


def _notes_text(result: Round, machine: Machine, failure: Exception, program: list[str]) -> str:
    lines = [
        f"The {machine.name} machine failed: seed {result.seed}, "
        f"{machine.examples} examples of up to {machine.steps} steps per round.",
        "",
        "Repeat the round (Hypothesis "
        f"{hypothesis.__version__}): python -m verity_conformance run --machines-only "
        f"--machines {machine.name} --seed {result.seed}",
    ]
    if result.replayed is not None:
        lines.append(
            f"The reproduction vector, replayed against this implementation: {result.replayed}"
        )
    lines += ["", "Error:", f"{type(failure).__name__}: {failure}", "", "Minimal program:"]
    lines += program or ["(Hypothesis printed none)"]
    return "\n".join(lines) + "\n"


PlayRound = Callable[[Machine, int, Path, float, bool], Round]


def run_machines(
    names: list[str],
    budget_seconds: float,
    base_seed: int,
    out_dir: Path,
    say: Say,
    shrink_seconds: float = 30.0,
    verbose: bool = False,
    *,
    clock: Callable[[], float] = time.monotonic,
    play: PlayRound = run_round,
) -> list[Round]:
    """Run the machines in `names`, in order, within `budget_seconds`; each round is said.

    Each machine gets the time left times its weight over the weights of the
    machines still to run, so time one leaves unused (or overruns) goes to
    (or comes from) the next. A machine plays rounds with seeds `base_seed`,
    `base_seed + 1`, ... while one more round of its average length fits its
    share, and at least one; a failed round ends the machine's turn.
    """
    rounds: list[Round] = []
    deadline = clock() + budget_seconds
    weights_left = sum(MACHINES[name].weight for name in names)
    say(f"{'machine':<8}{'seed':>12}{'examples':>10}{'steps':>8}{'time':>9}  result")
    for name in names:
        machine = MACHINES[name]
        started = clock()
        share = max(0.0, deadline - started) * machine.weight / weights_left
        weights_left -= machine.weight
        played = 0
        while True:
            outcome = play(machine, base_seed + played, out_dir, shrink_seconds, verbose)
            played += 1
            rounds.append(outcome)
            say(_round_line(outcome))
            if outcome.failure is not None:
                for path in outcome.reproduction:
                    say(f"    reproduction: {path}")
                if outcome.replayed is not None:
                    say(f"    the vector against this implementation: {outcome.replayed}")
                break
            used = clock() - started
            if used + used / played > share:
                break
    return rounds


def _round_line(outcome: Round) -> str:
    verdict = "ok" if outcome.failure is None else f"FAIL {outcome.failure[:200]}"
    return (
        f"{outcome.machine:<8}{outcome.seed:>12}{outcome.examples:>10}{outcome.steps:>8}"
        f"{outcome.seconds:>7.1f} s  {verdict}"
    )


def describe(rounds: list[Round]) -> str:
    """`machine rounds: N passed, N failed (...)`: the seeds of each machine, failures named."""
    passed = [r for r in rounds if r.failure is None]
    failed = [r for r in rounds if r.failure is not None]
    seeds: dict[str, list[int]] = {}
    for outcome in rounds:
        seeds.setdefault(outcome.machine, []).append(outcome.seed)
    ranges = ", ".join(
        f"{name} {min(found)}" + (f"..{max(found)}" if len(found) > 1 else "")
        for name, found in seeds.items()
    )
    failures = "; failed: " + ", ".join(f"{r.machine} seed {r.seed}" for r in failed)
    return (
        f"machine rounds: {len(passed)} passed, {len(failed)} failed "
        f"(seeds: {ranges}{failures if failed else ''})"
    )
