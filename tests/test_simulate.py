"""``manyi simulate``: exactly N votes, all acknowledged, reproducible, seq continued per workdir."""

import json
import subprocess
import sys
from datetime import datetime

import pytest

from device.simulate import arrival_rate, default_start, next_opening, read_devices, run_simulation
from manyi.exc import ConfigError
from manyi.protocol import CHINA_TZ, parse_vote

START = datetime(2026, 11, 16, 0, 0, tzinfo=CHINA_TZ)


def keys(recorder):
    """(device, seq, rating, pressed_at) of every vote received, validated by the protocol parser."""
    out = []
    for topic, payload, _retain in list(recorder.messages):
        if topic.startswith("manyi/v1/votes/"):
            vote = parse_vote(topic, payload)
            out.append((vote.device, vote.seq, vote.rating, vote.pressed_at))
    return out


def test_votes_mode_delivers_exactly_n_distinct_votes(broker, recorder, tmp_path):
    summary = run_simulation(broker.address, terminals=12, votes=400, seed=7, workdir=tmp_path / "w", start=START)
    assert summary["votes"] == 400 and summary["acked"] == 400
    assert summary["pending"] == 0 and summary["poisoned"] == 0
    assert recorder.wait_for(lambda r: len({k[:2] for k in keys(r)}) == 400)
    votes = keys(recorder)
    distinct = {k[:2] for k in votes}
    assert len(distinct) == 400
    # Per device, seq runs 1..n without a gap.
    per_device = {}
    for device, seq in distinct:
        per_device.setdefault(device, []).append(seq)
    assert all(sorted(s) == list(range(1, len(s) + 1)) for s in per_device.values())
    assert len(per_device) == 12
    # Presses follow office hours (China time) and every rating occurs.
    for _d, _s, rating, pressed_at in votes:
        assert arrival_rate(datetime.fromisoformat(pressed_at)) > 0
    assert {k[2] for k in votes} == {"satisfied", "basic", "unsatisfied"}
    assert summary["repeats"] > 0


def test_same_seed_gives_the_same_votes_and_workdir_continues_seq(broker, recorder, tmp_path):
    run_simulation(broker.address, terminals=5, votes=60, seed=3, workdir=tmp_path / "a", start=START)
    assert recorder.wait_for(lambda r: len(set(keys(r))) == 60)
    first = sorted(set(keys(recorder)))
    recorder.messages.clear()
    run_simulation(broker.address, terminals=5, votes=60, seed=3, workdir=tmp_path / "b", start=START)
    assert recorder.wait_for(lambda r: len(set(keys(r))) == 60)
    assert sorted(set(keys(recorder))) == first
    recorder.messages.clear()
    run_simulation(broker.address, terminals=5, votes=10, seed=4, workdir=tmp_path / "a", start=START)
    assert recorder.wait_for(lambda r: len(set(keys(r))) == 10)
    last = {}
    for device, seq, *_ in first:
        last[device] = max(last.get(device, 0), seq)
    assert all(seq > last[device] for device, seq, *_ in keys(recorder))


def test_devices_file_and_cli_summary(broker, recorder, tmp_path):
    devices = tmp_path / "devices.txt"
    devices.write_text("# id, propensity\nhz-371702001-w01 0.9\nhz-371702001-w02\n\nhz-371702002-w01, 0.2\n")
    assert read_devices(devices) == [("hz-371702001-w01", 0.9), ("hz-371702001-w02", None), ("hz-371702002-w01", 0.2)]
    out = subprocess.run([sys.executable, "-m", "manyi", "simulate", "--broker", broker.address, "--devices",
                          str(devices), "--votes", "30", "--seed", "1", "--workdir", str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["votes"] == 30 and summary["acked"] == 30 and summary["terminals"] == 3
    assert recorder.wait_for(lambda r: len(set(keys(r))) == 30)
    assert {k[0] for k in keys(recorder)} == {"hz-371702001-w01", "hz-371702001-w02", "hz-371702002-w01"}


def test_bad_devices_file_names_the_line(tmp_path):
    bad = tmp_path / "devices.txt"
    bad.write_text("hz-ok-w01\nBAD ID\n")
    with pytest.raises(ConfigError, match=r"devices.txt:2: device id 'BAD'"):
        read_devices(bad)


def test_office_hours():
    monday_8 = datetime(2026, 11, 23, 8, 0, tzinfo=CHINA_TZ)
    assert next_opening(monday_8) == datetime(2026, 11, 23, 9, 0, tzinfo=CHINA_TZ)
    lunch = datetime(2026, 11, 23, 12, 30, tzinfo=CHINA_TZ)
    assert next_opening(lunch) == datetime(2026, 11, 23, 13, 30, tzinfo=CHINA_TZ)
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=CHINA_TZ)
    assert next_opening(saturday) == datetime(2026, 11, 30, 9, 0, tzinfo=CHINA_TZ)
    assert arrival_rate(saturday) == 0 and arrival_rate(datetime(2026, 11, 23, 10, 0, tzinfo=CHINA_TZ)) > 0


@pytest.mark.slow
def test_shared_network_loop_reconnects_after_a_broker_outage(broker, recorder, tmp_path):
    import threading
    import time

    result = {}
    runner = threading.Thread(target=lambda: result.update(run_simulation(
        broker.address, terminals=20, votes=150, seed=5, workdir=tmp_path / "w", start=START, rate=100,
        timeout=60)))
    runner.start()
    assert recorder.wait_for(lambda r: len(keys(r)) >= 10, timeout=30)   # the terminals are publishing
    broker.stop()
    time.sleep(1.0)
    broker.start()
    runner.join(90)
    assert not runner.is_alive()
    assert result["votes"] == 150 and result["acked"] == 150 and result["pending"] == 0
    assert result["connections"] > 20    # the terminals really reconnected


def test_default_start_leaves_enough_working_days_before_today():
    monday = datetime(2026, 11, 23, 10, 30, tzinfo=CHINA_TZ)
    # 300 terminals x ~51.5 citizens a day: 20,000 votes need 1.3 working days, 2 with the margin.
    assert default_start(20000, 300, monday) == datetime(2026, 11, 19, 0, 0, tzinfo=CHINA_TZ)
    assert default_start(1, 300, monday) == datetime(2026, 11, 20, 0, 0, tzinfo=CHINA_TZ)


def test_votes_mode_times_lie_in_the_past(broker, recorder, tmp_path):
    run_simulation(broker.address, terminals=3, votes=40, seed=2, workdir=tmp_path / "w")
    assert recorder.wait_for(lambda r: len(keys(r)) >= 40)
    now = datetime.now(CHINA_TZ)
    assert all(datetime.fromisoformat(k[3]) < now for k in keys(recorder))
