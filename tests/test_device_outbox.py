"""The outbox: durable, ordered, bounded, seq never reused, refused votes kept aside."""

import json

import pytest

from device.outbox import Outbox, OutboxFull

AT = "2026-11-23T09:30:00.000+08:00"


def test_seq_starts_at_one_and_grows_by_one(tmp_path):
    box = Outbox(tmp_path / "o.db", "hz-a-w01")
    seqs = [box.add("satisfied", AT, True).seq for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert [v.seq for v in box.pending()] == [1, 2, 3]
    assert json.loads(box.pending()[0].payload) == {"v": 1, "device": "hz-a-w01", "seq": 1, "rating": "satisfied",
                                                    "pressed_at": AT, "clock_ok": True}


def test_seq_continues_after_reopen_and_is_never_reused_after_delete(tmp_path):
    box = Outbox(tmp_path / "o.db", "hz-a-w01")
    for _ in range(2):
        box.acknowledge(box.add("basic", AT, True).seq)
    assert box.depth == 0
    box.close()
    again = Outbox(tmp_path / "o.db", "hz-a-w01")
    assert again.last_seq == 2
    assert again.add("unsatisfied", AT, False).seq == 3


def test_full_outbox_refuses_and_keeps_old_votes(tmp_path):
    box = Outbox(tmp_path / "o.db", "hz-a-w01", limit=2)
    box.add("satisfied", AT, True)
    box.add("basic", AT, True)
    with pytest.raises(OutboxFull, match="limit 2"):
        box.add("unsatisfied", AT, True)
    assert [v.seq for v in box.pending()] == [1, 2]
    assert box.full and box.refused == 1 and box.last_seq == 2


def test_poisoned_vote_is_kept_with_reason_and_can_be_requeued(tmp_path):
    box = Outbox(tmp_path / "o.db", "hz-a-w01")
    box.add("satisfied", AT, True)
    box.add("basic", AT, True)
    assert box.poison(1, 0x87, "Not authorized", AT)
    assert not box.poison(1, 0x87, "Not authorized", AT)
    assert box.depth == 1 and box.poisoned_count == 1
    (kept,) = box.poisoned()
    assert (kept.seq, kept.reason_code, kept.reason) == (1, 0x87, "Not authorized")
    assert json.loads(kept.payload)["seq"] == 1
    box.close()
    reopened = Outbox(tmp_path / "o.db", "hz-a-w01")
    assert reopened.poisoned_count == 1
    assert reopened.requeue_poisoned() == 1
    assert [v.seq for v in reopened.pending()] == [1, 2]


def test_repeats_are_counted_durably(tmp_path):
    box = Outbox(tmp_path / "o.db", "hz-a-w01")
    box.count_repeat()
    box.count_repeat()
    box.close()
    assert Outbox(tmp_path / "o.db", "hz-a-w01").repeats == 2


def test_advance_seq_never_goes_back(tmp_path):
    box = Outbox(tmp_path / "o.db", "hz-a-w01")
    box.add("satisfied", AT, True)
    assert box.advance_seq(40) == 40
    assert box.advance_seq(7) == 40
    assert box.add("basic", AT, True).seq == 41
