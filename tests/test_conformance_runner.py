"""The vector runner a certifier points at an implementation: every failure is a report.

A vector that does not load, a driver that fails to start, to perform a step
or to close, must each come back as a failed vector that names the cause,
never as a crash of the runner or a pass.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import settings
from hypothesis.stateful import get_state_machine_test

import verity_conformance
import verity_conformance.__main__ as conformance_main
from verity._tenant import TenantHandle
from verity.storage import Log as StorageLog
from verity.storage import Record as StoredRecord
from verity_conformance import _machines, boundary, kernel_vectors, vectors
from verity_conformance._runner import Recording, write_vectors
from verity_conformance.vectors import VECTORS_DIR, default_factory, run_vector

LOG_VECTOR = sorted(VECTORS_DIR.glob("log-*.json"))[0]


def copy_with(tmp_path: Path, change: Any) -> Path:
    vector = json.loads(LOG_VECTOR.read_text(encoding="utf-8"))
    change(vector)
    path = tmp_path / LOG_VECTOR.name
    path.write_text(json.dumps(vector), encoding="utf-8")
    return path


def test_an_unchanged_vector_passes() -> None:
    result = run_vector(LOG_VECTOR, default_factory)
    assert result.failure is None and result.steps > 0


def test_a_wrong_expectation_names_the_step_and_both_answers(tmp_path: Path) -> None:
    def change(vector: dict[str, Any]) -> None:
        vector["steps"][-1]["expect"] = {"not": "what the spec said"}

    result = run_vector(copy_with(tmp_path, change), default_factory)
    assert result.failure is not None
    assert result.failure.startswith(f"step {result.steps} ")
    assert 'expected {"not": "what the spec said"}, got ' in result.failure


def test_files_that_are_not_vectors_fail_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "log-broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert "not a vector: JSONDecodeError" in str(run_vector(broken, default_factory).failure)
    listed = tmp_path / "log-list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    assert "JSON list, not an object" in str(run_vector(listed, default_factory).failure)
    no_expect = copy_with(tmp_path, lambda v: v["steps"][0].pop("expect"))
    assert "step 0 is not an object with `expect`" in str(
        run_vector(no_expect, default_factory).failure
    )
    kernel = sorted(VECTORS_DIR.glob("kernel-*.json"))[0]
    assert "not a log vector" in str(run_vector(kernel, default_factory).failure)


def test_a_driver_that_raises_is_a_failed_vector_not_a_crash(tmp_path: Path) -> None:
    def refusing_factory(directory: Path, config: dict[str, Any]) -> vectors.LogDriver:
        raise RuntimeError("this implementation does not open")

    result = run_vector(LOG_VECTOR, refusing_factory)
    assert (
        result.failure
        == "the driver factory raised RuntimeError: this implementation does not open"
    )

    class Exploding:
        def __init__(self, inner: vectors.LogDriver) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "close":
                return self.inner.close
            raise OSError(f"{name} exploded")

    def exploding_factory(directory: Path, config: dict[str, Any]) -> vectors.LogDriver:
        return Exploding(default_factory(directory, config))  # type: ignore[return-value]

    result = run_vector(LOG_VECTOR, exploding_factory)
    assert result.failure is not None and result.failure.startswith("step 0 ")
    assert "raised OSError:" in result.failure and "exploded" in result.failure


def test_a_kernel_driver_factory_that_raises_is_reported(tmp_path: Path) -> None:
    vector = sorted(VECTORS_DIR.glob("kernel-*.json"))[0]
    shutil.copy(vector, tmp_path / vector.name)

    def refusing(config: dict[str, Any]) -> kernel_vectors.KernelDriver:
        raise ValueError("no kernel here")

    result = kernel_vectors.run_vector(tmp_path / vector.name, refusing)
    assert result.failure == "the driver factory raised ValueError: no kernel here"


# ------------------------------------------------------------------ the machines in the run


def test_the_command_line_knows_every_machine() -> None:
    # __main__ keeps the names without importing Hypothesis (for --vectors-only).
    assert set(conformance_main.MACHINE_NAMES) == set(_machines.MACHINES)


@pytest.mark.parametrize("name", ["kernel", "log", "tables"])
def test_recordings_of_passing_runs_are_vectors_that_pass(name: str, tmp_path: Path) -> None:
    """What a machine records replays as a vector, its expectations computed by the spec.

    A reproduction is only as good as this: every step the machine took must
    be in the recording, in the vector format, with nothing the vector would do
    differently.
    """
    machine = _machines.MACHINES[name]
    recordings: list[Recording] = []
    machine_class = machine.load()

    def teardown(self: Any) -> None:
        recordings.append(self.recording)
        machine_class.teardown(self)

    collecting = type(machine_class.__name__, (machine_class,), {"teardown": teardown})
    test = get_state_machine_test(
        collecting, settings=settings(_machines.round_settings(machine), max_examples=4)
    )
    hypothesis.seed(3)(test)()
    assert recordings, "the machine ran no example"
    assert machine.replay is not None
    replay = machine.replay()
    for number, recording in enumerate(recordings):
        vector = _machines.vector_of(recording, replay, f"faithful-{number}", "a passing run")
        [path] = write_vectors(tmp_path, [vector])
        result = replay.check(path)
        assert result.failure is None, (path.name, result.failure)
        assert result.steps == len(recording) > 0


def wrong_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage reads that add a byte to the payload of every record after the first."""
    right_read = StorageLog.read

    def read(self: StorageLog, offset: int) -> StoredRecord:
        record = right_read(self, offset)
        if offset >= 1:
            return dataclasses.replace(record, payload=record.payload + b"!")
        return record

    monkeypatch.setattr(StorageLog, "read", read)


def test_a_wrong_implementation_fails_and_its_reproduction_is_a_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong_read(monkeypatch)
    failures = tmp_path / "failures"
    status = conformance_main.main(
        [
            *("run", "--machines-only", "--machines", "log", "--seed", "11", "--budget", "2"),
            *("--shrink-seconds", "2", "--out-failures", str(failures)),
        ]
    )
    printed = capsys.readouterr().out
    assert status == 1
    assert "seed 11 (repeat this run with --seed 11)" in printed
    assert "failed: log seed 11" in printed.splitlines()[-1]
    [vector] = sorted(failures.glob("log-repro-11.json"))
    assert "the vector against this implementation: fails at step" in printed
    assert (failures / "log-repro-11.txt").read_text().count("--seed 11") == 1

    against_wrong = run_vector(vector, default_factory)
    assert against_wrong.failure is not None
    assert f"fails at step {against_wrong.steps} " in printed
    monkeypatch.undo()
    against_right = run_vector(vector, default_factory)
    assert against_right.failure is None and against_right.steps > against_wrong.steps
    # The runner replays reproductions like any vector.
    assert conformance_main.main(["run", "--vectors-only", "--vectors", str(failures)]) == 0


def test_an_sdk_failure_is_written_with_its_seed_and_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    right_size = TenantHandle.log_size
    monkeypatch.setattr(TenantHandle, "log_size", lambda self: right_size(self) + 1)
    status = conformance_main.main(
        [
            *("run", "--machines-only", "--machines", "sdk", "--seed", "4", "--budget", "1"),
            *("--shrink-seconds", "2", "--out-failures", str(tmp_path)),
        ]
    )
    assert status == 1 and "failed: sdk seed 4" in capsys.readouterr().out
    # No vector format for the SDK: the notes are the reproduction, replayed by seed.
    assert [path.name for path in tmp_path.iterdir()] == ["sdk-repro-4.txt"]
    notes = (tmp_path / "sdk-repro-4.txt").read_text()
    assert "--machines sdk --seed 4" in notes and "log size of tenant" in notes
    assert "state = SdkLockstep()" in notes


def test_rounds_share_the_budget_by_weight_and_pass_on_what_is_left(tmp_path: Path) -> None:
    now = [0.0]
    played: list[tuple[str, int]] = []

    def play(machine: _machines.Machine, seed: int, *_: object) -> _machines.Round:
        now[0] += {"kernel": 1.0, "log": 4.0, "tables": 2.0, "sdk": 3.0}[machine.name]
        played.append((machine.name, seed))
        return _machines.Round(machine.name, seed, examples=machine.examples)

    said: list[str] = []
    names = ["kernel", "log", "tables", "sdk"]
    _machines.run_machines(names, 50.0, 100, tmp_path, said.append, clock=lambda: now[0], play=play)
    # kernel: 50 s * 2/10 = 10 s in 1 s rounds; log: the 40 s left * 3/8 = 15 s, and a
    # fourth 4 s round would end at 16 s; tables: 28 s left * 2/5 = 11.2 s in 2 s rounds;
    # sdk: the 18 s left, in 3 s rounds.
    counts = {name: sum(1 for played_name, _ in played if played_name == name) for name in names}
    assert counts == {"kernel": 10, "log": 3, "tables": 5, "sdk": 6}
    assert now[0] <= 50.0 and played[:2] == [("kernel", 100), ("kernel", 101)]
    assert len(said) == 1 + len(played)  # a header, then a line per round


def test_every_machine_plays_a_round_when_the_budget_is_spent(tmp_path: Path) -> None:
    now = [0.0]

    def play(machine: _machines.Machine, seed: int, *_: object) -> _machines.Round:
        now[0] += 5.0
        return _machines.Round(machine.name, seed)

    rounds = _machines.run_machines(
        ["log", "sdk"], 0.0, 7, tmp_path, lambda _: None, clock=lambda: now[0], play=play
    )
    assert [(r.machine, r.seed) for r in rounds] == [("log", 7), ("sdk", 7)]


def test_the_default_run_prints_its_seeds_and_keeps_to_the_budget(tmp_path: Path) -> None:
    budget = 8.0
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "verity_conformance", "run", "--budget", str(budget)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    seed = int(lines[0].split()[1])
    assert lines[0] == f"seed {seed} (repeat this run with --seed {seed})"
    rounds = [line.split() for line in lines if line.split()[0] in _machines.MACHINES]
    assert {fields[0] for fields in rounds} == set(_machines.MACHINES)
    assert {int(fields[1]) for fields in rounds} >= {seed}
    # Rounds start while they fit, and every machine plays at least one: the run ends
    # within its budget (or the vectors' and boundary cases' time, on a disk slow enough)
    # plus one round of each machine, plus starting Python on a loaded machine (the margin).
    assert lines[2].startswith(f"boundary: {len(boundary.cases())} passed, 0 failed (")
    before_machines_seconds = float(lines[2].rsplit("(", 1)[1].removesuffix(" s)"))
    longest = {
        fields[0]: max(float(f[4]) for f in rounds if f[0] == fields[0]) for fields in rounds
    }
    assert elapsed <= max(budget, before_machines_seconds) + sum(longest.values()) + 20.0, (
        completed.stdout
    )
    vector_files = len(list(VECTORS_DIR.glob("*.json")))
    cases = len(boundary.cases())
    assert lines[-1].startswith(
        f"vectors: {vector_files} passed, 0 failed; boundary: {cases} passed, 0 failed; "
        "machine rounds: "
    )
    assert not (tmp_path / "verity-conformance-failures").exists()


def test_without_hypothesis_the_machines_say_so_and_the_vectors_still_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Hypothesis is a test dependency: an installation without it can check vectors only.
    monkeypatch.setitem(sys.modules, "verity_conformance._machines", None)
    monkeypatch.delattr(verity_conformance, "_machines", raising=False)
    with pytest.raises(SystemExit, match=r"the machines need Hypothesis .*--vectors-only"):
        conformance_main.main(["run", "--machines-only", "--budget", "0"])
    assert capsys.readouterr().out == ""  # refused before checking anything
    assert conformance_main.main(["run", "--vectors-only"]) == 0
    assert capsys.readouterr().out.startswith("vectors: ")
