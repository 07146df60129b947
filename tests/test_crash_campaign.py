"""The crash campaign (`benchmarks/crash_campaign.py`, issue 5) in slices CI can afford.

The first test runs the campaign as CI and an operator do, with three crash
trials, every damage kind and every fault variant, and reads its last line.
The others drive its parts in-process: its audit must count an acknowledged
append that is gone as lost (a campaign that cannot fail proves nothing), a
durability mark below an acknowledged record and a reader that misses an
acknowledged call are problems, a flipped byte in a Merkle node file must be
rebuilt, a flipped first record must be reported and the database still
close, every fault variant must
be refused with its typed error and restored, and a VerityDB that opens a
faulty folder anyway (made so here by patching it) must make the fault
trial fail. The slow test is a longer campaign, scaled by
`VERITY_CAMPAIGN_SCALE`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _campaign import campaign as scaled

import verity._database
import verity._tenant
import verity.crypto
import verity.storage._files
import verity.storage._log
import verity.storage._verify
from verity import SyncPolicy, TenantId
from verity.errors import HistoryLost

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "crash_campaign.py"
LAST_LINE = re.compile(
    r"trials=(\d+) acknowledged=(\d+) lost=(\d+) corruptions_injected=(\d+) detected=(\d+) "
    r"rebuilt=(\d+)"
)


def load_campaign() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_campaign", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_campaign"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def write_closed_database(campaign: ModuleType, folder: Path, steps: int) -> list[Any]:
    """A folder written by one campaign writer on tenant 2, closed cleanly; its acks."""
    acks: list[Any] = []
    with campaign.open_database(folder, SyncPolicy.every_batch()) as db:
        handle = db.tenant(TenantId(2), create=True)
        streams, row_ids = campaign.prepare_tenant(handle)
        writer = campaign.Writer(
            7,
            2,
            handle,
            streams,
            row_ids,
            lambda fields: acks.append(campaign.ack_from_json(fields)),
        )
        for _ in range(steps):
            writer.step()
    return acks


def run_script(folder: Path, *arguments: str) -> tuple[list[str], tuple[int, ...]]:
    """Run the campaign; its output lines and the figures of its last line (it must pass)."""
    command = [sys.executable, str(SCRIPT), "--dir", str(folder), *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    lines = completed.stdout.splitlines()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    match = LAST_LINE.fullmatch(lines[-1])
    assert match is not None, lines[-1]
    return lines, tuple(map(int, match.groups()))


def test_a_slice_loses_nothing_and_detects_every_flip_and_fault(tmp_path: Path) -> None:
    campaign = load_campaign()
    damages = sorted(campaign.DAMAGES)
    variants = campaign.fault_variants(list(campaign.FAULTS))
    arguments = ["--trials", "3", "--seed", "5", "--kill-ms-max", "300"]
    arguments += [f"--damage={damage}" for damage in damages]
    lines, figures = run_script(tmp_path, *arguments)
    trials, acknowledged, lost, injected, detected, rebuilt = figures
    assert (trials, lost) == (3, 0)
    assert acknowledged > 0
    faults = [line for line in lines if line.startswith("fault trial ")]
    assert len(faults) == len(variants)
    skipped = sum(" skipped: " in line for line in faults)
    assert skipped == 0, faults
    assert injected == 12 + len(variants) and detected == injected
    assert rebuilt > 0
    assert sum(line.startswith("crash trial ") for line in lines) == 3
    assert sum(line.startswith("rebuild trial ") for line in lines) == len(damages)
    for kind, variant in variants:
        assert any(f" fault={kind}:{variant} " in line for line in faults), (kind, variant)


def test_an_acknowledged_append_cut_from_the_log_is_refused_as_history_lost(tmp_path: Path) -> None:
    campaign = load_campaign()
    folder = tmp_path / "db"
    acks = write_closed_database(campaign, folder, steps=60)
    history = campaign.FolderHistory(folder)
    history.seeds.append(7)
    whole = campaign.audit(folder, history, acks, [], clean_close=True)
    assert (whole.lost, whole.problems) == ([], [])
    # Cut the log just before the record of the last acknowledged PUBLIC append (its
    # events are stored verbatim, so its frame is found by its bytes).
    last = [ack for ack in acks if type(ack).__name__ == "AckedAppend" and ack.stream == "public"]
    events = last[-1].events()
    log = next(folder.glob("shard-*/tenant-2/log"))
    frame = next(
        frame
        for frame in campaign.stored_frames(log)
        if events[0] in frame.segment.read_bytes()[frame.start : frame.end]
    )
    for index in log.glob("*.vidx"):
        index.unlink()
    with frame.segment.open("r+b") as segment:
        segment.truncate(frame.start)
    cut = campaign.audit(
        folder, campaign.FolderHistory(folder, seeds=[7]), acks, [], clean_close=True
    )
    # The cut is not taken for a torn tail: reopening refuses, naming the loss, and
    # neither truncates nor appends anything.
    assert cut.lost == []
    assert any("HistoryLost" in problem for problem in cut.problems), cut.problems
    assert frame.segment.stat().st_size == frame.start


def test_a_flipped_merkle_node_is_rebuilt(tmp_path: Path) -> None:
    campaign = load_campaign()
    source = tmp_path / "db"
    write_closed_database(campaign, source, steps=150)
    work = tmp_path / "work"
    campaign.restore(source, work)
    expected = campaign.answers(work)
    outcomes = [
        campaign.run_rebuild_trial(
            trial, 4, "merkle-flip", source, work, expected, random.Random(trial)
        )
        for trial in range(4)
    ]
    assert set(outcomes) <= {"rebuilt", "reported"}, outcomes


def test_a_durability_mark_below_an_acknowledged_record_is_a_problem(tmp_path: Path) -> None:
    campaign = load_campaign()
    folder = tmp_path / "db"
    acks = write_closed_database(campaign, folder, steps=60)
    assert campaign.durable_mark_problems(folder, acks) == []
    statements = [ack for ack in acks if type(ack).__name__ == "AckedStatement"]
    log = next(folder.glob("shard-*/tenant-2/log"))
    records = campaign.whole_records(log)
    # A well-formed mark (docs/formats.md §4.6) that stops just before the last receipt's record.
    size = statements[-1].offset
    head = hashlib.sha256(campaign.CHAIN_DOMAIN + records[size - 1]).digest()
    body = b"VDUR" + bytes([1]) + size.to_bytes(8, "big") + head
    (log / "durable.vmark").write_bytes(body + zlib.crc32(body).to_bytes(4, "big"))
    problems = campaign.durable_mark_problems(folder, acks)
    assert problems == [
        f"tenant 2 durable.vmark says {size} records are durable; {size + 1} were acknowledged"
    ]


def test_a_reader_beside_a_writer_is_audited(tmp_path: Path) -> None:
    campaign = load_campaign()
    folder = tmp_path / "db"
    acks = write_closed_database(campaign, folder, steps=60)
    history = campaign.FolderHistory(folder, seeds=[7])
    with campaign.open_database(folder, SyncPolicy.every_batch(), create=False) as writer:
        writer.tenant(TenantId(2))  # the writer holds the folder and the tenant
        assert campaign.audit_beside_writer(folder, history, acks) == []
        never = campaign.AckedAppend(2, "public", 10_000, 7, 2, 999, 1, False)
        problems = campaign.audit_beside_writer(folder, history, [*acks, never])
        assert problems == [
            f"a reader beside the writer: it misses {never.key}: 1 events missing or different"
        ]


def test_a_flipped_first_record_is_reported_and_the_database_still_closes(tmp_path: Path) -> None:
    campaign = load_campaign()
    folder = tmp_path / "db"
    write_closed_database(campaign, folder, steps=60)
    frame = campaign.stored_frames(next(folder.glob("shard-*/tenant-2/log")))[0]
    campaign.flip_byte(frame.segment, frame.start + 20, 0x01)  # record 0's header
    failures: list[str] = []
    assert campaign.detection_by_verify(folder, 2, 0, failures) is None
    assert failures == []


# ------------------------------------------------------------------ fault trials, in-process

SEGMENT_BYTES = 24 * 1024  # small segments, so that every log has sealed ones


@dataclass
class Source:
    """A cleanly closed folder written by two campaign writers, and what it answers."""

    campaign: ModuleType
    folder: Path
    history: Any
    expected: dict[str, str]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    campaign = load_campaign()
    folder = tmp_path_factory.mktemp("fault-source") / "db"
    acks: list[Any] = []
    with (
        campaign.segments_of(SEGMENT_BYTES),
        campaign.open_database(folder, SyncPolicy.every_batch()) as db,
    ):
        for writer, tenant in ((0, TenantId(1)), (2, TenantId(2))):
            handle = db.tenant(tenant, create=True)
            streams, row_ids = campaign.prepare_tenant(handle)
            emit = lambda fields: acks.append(campaign.ack_from_json(fields))  # noqa: E731
            steps = campaign.Writer(7, writer, handle, streams, row_ids, emit)
            for _ in range(120):
                steps.step()
    history = campaign.FolderHistory(folder, seeds=[7])
    history.add_acks(acks)
    work = folder.with_name("expected")
    campaign.restore(folder, work)
    expected = campaign.answers(work)
    for path in folder.glob("shard-*/tenant-*"):
        assert len(campaign._segments(path)) > 2, path  # sealed segments to cut and delete
    return Source(campaign, folder, history, expected)


def run_fault(source: Source, work: Path, kind: str, variant: str, seed: int = 1) -> Any:
    campaign = source.campaign
    return campaign.run_fault_trial(
        0,
        1,
        kind,
        variant,
        [source.folder],
        work,
        {source.folder: source.history},
        lambda folder: source.expected,
        random.Random(seed),
        SEGMENT_BYTES,
    )


ALL_VARIANTS = load_campaign().fault_variants(list(load_campaign().FAULTS))


@pytest.mark.parametrize(("kind", "variant"), ALL_VARIANTS)
def test_every_fault_is_refused_with_its_error_and_restored(
    source: Source, tmp_path: Path, kind: str, variant: str
) -> None:
    for seed in (1, 2):
        outcome = run_fault(source, tmp_path / f"work-{seed}", kind, variant, seed)
        assert outcome.injected
        assert outcome.detected
        assert (outcome.lost, outcome.failed) == (0, False)


# A fault trial fails when VerityDB regresses. The regressions are made by patching
# VerityDB in this process only (the campaign's opens run here; a holder child does not).


@dataclass
class FakeLock:
    """A lock that locks nothing: a VerityDB that lets a second writer in."""

    path: Path
    held: bool = True

    def release(self) -> None:
        self.held = False


def test_a_second_writer_let_in_fails_the_trial(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        verity.storage._files.FolderLock,
        "acquire",
        staticmethod(lambda folder: FakeLock(folder / "verity.lock")),
    )
    outcome = run_fault(source, tmp_path / "work", "second-writer", "held")
    assert outcome.injected and not outcome.detected and outcome.failed


@pytest.fixture
def forgetful_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """A VerityDB that takes what it finds for the whole log: no durability evidence checked."""
    log = verity.storage._log.Log
    monkeypatch.setattr(log, "_check_evidence", lambda self, found, mark: None)
    monkeypatch.setattr(log, "_check_nothing_was_written", lambda self, mark: None)
    monkeypatch.setattr(log, "_check_mark_head", lambda self, mark: None)
    monkeypatch.setattr(verity._tenant.TenantHandle, "_read_snapshot", lambda self, ns: None)


@pytest.mark.parametrize(
    ("kind", "variant"),
    [("segment-cut", "newest"), ("segment-cut", "newest-emptied"), ("segment-delete", "newest")],
)
@pytest.mark.usefixtures("forgetful_log")
def test_lost_history_opened_anyway_is_counted_lost(
    source: Source, tmp_path: Path, kind: str, variant: str
) -> None:
    outcome = run_fault(source, tmp_path / "work", kind, variant)
    assert outcome.injected and not outcome.detected and outcome.failed
    assert outcome.lost > 0


def test_a_layout_not_checked_hides_tenants_and_fails_the_trial(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verity._database, "check_placement", lambda folder, directory: None)
    outcome = run_fault(source, tmp_path / "work", "layout-damage", "shard-count")
    assert outcome.injected and not outcome.detected and outcome.failed
    assert outcome.lost > 0  # the moved tenants are not found: their acknowledgements are lost


def test_a_master_key_made_anew_fails_the_trial(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = verity.crypto.FileMasterKeyProvider
    monkeypatch.setattr(provider, "load", staticmethod(provider.load_or_create))
    outcome = run_fault(source, tmp_path / "work", "key-delete", "master.key")
    assert outcome.injected and not outcome.detected and outcome.failed


def test_a_refusal_that_writes_fails_the_trial(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused with the right error, but after writing: the file comparison catches it."""
    original = verity.storage._log.Log._open

    def open_then_scribble(self: Any) -> None:
        try:
            original(self)
        except HistoryLost:
            with (self._directory / "recovery.vrec").open("ab") as file:
                file.write(b"\x00")
            raise

    monkeypatch.setattr(verity.storage._log.Log, "_open", open_then_scribble)
    outcome = run_fault(source, tmp_path / "work", "sealed-cut", "sealed")
    assert outcome.injected and not outcome.detected and outcome.failed


@pytest.mark.slow
def test_a_scaled_campaign_loses_nothing_and_refuses_every_fault(tmp_path: Path) -> None:
    trials = scaled(20)
    lines, figures = run_script(tmp_path, "--trials", str(trials), "--seed", "424242")
    assert figures[0] == trials and figures[2] == 0
    assert figures[4] == figures[3] > 0
    assert not [line for line in lines if " skipped: " in line]


def test_signatures_not_checked_let_a_keyless_rewrite_through_and_fail_the_trial(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verity.storage._verify, "_check_signature", lambda *args: None)
    outcome = run_fault(source, tmp_path / "work", "keyless-rewrite", "public-event")
    assert outcome.injected and not outcome.detected and outcome.failed


def test_promises_not_checked_let_a_rollback_through_and_fail_the_trial(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verity._tenant, "checkpoint_problem", lambda *args: None)
    outcome = run_fault(source, tmp_path / "work", "rollback", "to-earlier-checkpoint")
    assert outcome.injected and not outcome.detected and outcome.failed


def test_a_full_disk_answered_with_a_bare_os_error_fails_the_trial(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = verity._tenant.TenantHandle._append_record

    def untyped(self: verity._tenant.TenantHandle, *args: Any, **kwargs: Any) -> int:
        try:
            return original(self, *args, **kwargs)
        except verity.errors.StorageError as failure:
            raise failure.os_error from None

    monkeypatch.setattr(verity._tenant.TenantHandle, "_append_record", untyped)
    outcome = run_fault(source, tmp_path / "work", "disk-full", "append")
    assert outcome.injected and not outcome.detected and outcome.failed
