"""The adversary matrix: attacks on the shipped configuration, one row each (``make test-adversary``).

Who may hold what (docs/security.md): a terminal's SD card (its MQTT account), a place on the
hall LAN, a county account, an API token, a spreadsheet. Each test runs real processes with
deploy's own files: mosquitto with deploy/mosquitto/manyi.conf and acl, ``manyi collector``
with deploy/collector.example.toml, ``manyi serve`` with the systemd unit's arguments and
nginx with deploy/nginx/manyi.conf. Each row records what was tried, the defence, and the
figures: votes acknowledged / stored / lost, memory, bytes written, others' response time.
This file holds the broker and collector rows; test_adversary_web.py the control center and
the imports.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from plugin_adversary import DeployCollector, record
from plugin_collector import make_vote, wait_until
from plugin_deploy import TERMINALS, Client

from manyi.protocol import vote_topic

pytestmark = pytest.mark.adversary
T1, T2, T3 = TERMINALS          # T1: the attacker's stolen terminal account; T3: an honest terminal


def terminal(broker, device: str, **kwargs) -> Client:
    """A connected MQTT 5 client with ``device``'s credentials over TLS."""
    return Client(broker.tls_port, device, broker.passwords[device], ca=broker.ca, **kwargs).connect()


def send_votes(client: Client, device: str, seqs, timeout: float = 30.0) -> int:
    """Publish votes at QoS 1 without waiting for each; return how many got PUBACK success."""
    mids = [client.client.publish(vote_topic(device), make_vote(device, seq).to_json(), qos=1).mid for seq in seqs]
    with client._cond:
        client._cond.wait_for(lambda: all(m in client.pubacks for m in mids), timeout)
    return sum(1 for m in mids if m in client.pubacks and not client.pubacks[m].is_failure)


def stored(db, device: str, seqs) -> int:
    """How many of ``device``'s ``seqs`` the store holds."""
    if not db.exists():
        return 0
    seqs = list(seqs)
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM votes WHERE device = ? AND seq BETWEEN ? AND ?",
                            (device, min(seqs), max(seqs))).fetchone()[0]


def dead_letters(db, reason: str | None = None, source: str | None = None) -> int:
    with sqlite3.connect(db) as conn:
        sql, params = "SELECT count(*) FROM dead_letters WHERE 1", []
        if reason:
            sql, params = sql + " AND reason = ?", [*params, reason]
        if source:
            sql, params = sql + " AND topic LIKE ?", [*params, f"%/{source}"]
        return conn.execute(sql, params).fetchone()[0]


def store_bytes(db) -> int:
    """The store's size in pages (the WAL file is a bounded, reused log, not what is kept)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]


def wait_stored(db, device, seqs, timeout=30.0) -> int:
    seqs = list(seqs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and stored(db, device, seqs) < len(seqs):
        time.sleep(0.1)
    return stored(db, device, seqs)


@pytest.fixture(scope="module")
def adv_broker(deploy_broker):
    """deploy's mosquitto (plugin_deploy), shared by the rows of this module."""
    return deploy_broker


@pytest.fixture
def collector(adv_broker, tmp_path):
    """``manyi collector --config`` with deploy/collector.example.toml, running."""
    process = DeployCollector(adv_broker, tmp_path / "collector").start()
    yield process
    process.stop()


# --- 1. a terminal's password against the collector's session -------------------------------

def test_1a_terminal_password_cannot_take_the_running_collectors_session(adv_broker, collector):
    row = record("1a", "client-id takeover (collector running)",
                 f"{T1}'s password CONNECTs with client id manyi-collector, clean_start=False; {T3} then votes 300 times",
                 "use_username_as_clientid: the session is the account's own; the collector keeps its session")
    thief = terminal(adv_broker, T1, client_id="manyi-collector", clean_start=False)
    honest = terminal(adv_broker, T3)
    seqs = range(100_001, 100_301)
    acked = send_votes(honest, T3, seqs)
    got = wait_stored(collector.store, T3, seqs)
    thief.close()
    honest.close()
    row.figures.update(acked=acked, stored=got, lost=acked - got,
                       collector_disconnects=collector.log().count("lost the broker"))
    assert acked == 300 and got == 300
    assert "lost the broker" not in collector.log()
    row.passed = True


def test_1b_clean_start_with_the_collectors_id_does_not_wipe_its_queue(adv_broker, collector):
    row = record("1b", "client-id takeover (collector down)",
                 f"collector stopped; {T3} votes 300 times; {T1}'s password CONNECTs as manyi-collector with "
                 "clean_start=True, session expiry 0, and leaves; the collector restarts",
                 "the attacker's connection is named after its own account: the queued 300 stay in the collector's session")
    collector.stop()
    honest = terminal(adv_broker, T3)
    seqs = range(100_401, 100_701)
    acked = send_votes(honest, T3, seqs)
    thief = terminal(adv_broker, T1, client_id="manyi-collector", clean_start=True)
    thief.close()
    collector.start()
    got = wait_stored(collector.store, T3, seqs)
    honest.close()
    row.figures.update(acked=acked, stored=got, lost=acked - got)
    assert acked == 300 and got == 300
    row.passed = True


def test_1c_a_terminal_password_cannot_kick_another_terminal(adv_broker, collector):
    row = record("1c", "kick another terminal", f"{T1}'s password CONNECTs with client id {T2} ten times",
                 f"the id is the account's own: {T2} stays connected and its votes arrive")
    disconnects = []
    victim = Client(adv_broker.tls_port, T2, adv_broker.passwords[T2], ca=adv_broker.ca, client_id=T2)  # as a terminal does
    victim.client.on_disconnect = lambda *args: disconnects.append(args)
    victim.connect()
    for _ in range(10):
        terminal(adv_broker, T1, client_id=T2).close()
    time.sleep(0.5)
    acked = send_votes(victim, T2, range(5001, 5011))
    got = wait_stored(collector.store, T2, range(5001, 5011))
    victim.close()
    row.figures.update(victim_disconnects=len(disconnects) - 1 if disconnects else 0, acked=acked, stored=got)
    assert len(disconnects) <= 1              # only our own close() at the end
    assert acked == 10 and got == 10
    row.passed = True


# --- 2. what one stolen terminal account can publish ----------------------------------------------

def test_2a_publishing_as_another_terminal_is_refused(adv_broker, collector):
    row = record("2a", "vote as another terminal", f"{T1} publishes a vote on {T2}'s topic",
                 "ACL pattern %u: PUBACK 0x87 not authorized, nothing stored")
    thief = terminal(adv_broker, T1)
    code = thief.publish(vote_topic(T2), make_vote(T2, 9001).to_json())
    thief.close()
    time.sleep(0.5)
    row.figures.update(puback=hex(code.value), stored=stored(collector.store, T2, [9001]))
    assert code.value == 0x87 and stored(collector.store, T2, [9001]) == 0
    row.passed = True


def test_2b_a_forged_payload_on_the_own_topic_is_a_dead_letter(adv_broker, collector):
    row = record("2b", "forged payload", f"{T1} publishes on its own topic a vote naming {T2}",
                 "the collector checks payload against topic: dead letter device_mismatch")
    thief = terminal(adv_broker, T1)
    thief.publish(vote_topic(T1), make_vote(T2, 9002).to_json())
    thief.close()
    wait_until(lambda: dead_letters(collector.store, "device_mismatch"), 10, message="dead letter")
    row.figures.update(stored=stored(collector.store, T2, [9002]), dead_letters=dead_letters(collector.store))
    assert stored(collector.store, T2, [9002]) == 0
    row.passed = True


def _junk_flood(adv_broker, collector, label: str, distinct: bool):
    thief, honest = terminal(adv_broker, T1), terminal(adv_broker, T3)
    before = store_bytes(collector.store)
    seqs = range(200_001 if distinct else 300_001, (200_001 if distinct else 300_001) + 200)
    junk = [(os.urandom(4000).hex() if distinct else "x" * 8000).encode() for _ in range(2000)]
    started = time.monotonic()
    mids = []
    honest_acked = 0
    for i, payload in enumerate(junk):
        mids.append(thief.client.publish(vote_topic(T1), payload, qos=1).mid)
        if i % 10 == 0:
            honest_acked += send_votes(honest, T3, [seqs[i // 10]])
    with thief._cond:
        thief._cond.wait_for(lambda: all(m in thief.pubacks for m in mids), 60)
    got = wait_stored(collector.store, T3, seqs)
    wait_until(lambda: dead_letters(collector.store, source=T1) >= 1, 10, message="dead letters")
    time.sleep(1.0)
    collector.stop()          # flushes the suppressed-letter summaries
    thief.close()
    honest.close()
    grown = store_bytes(collector.store) - before
    letters = dead_letters(collector.store, source=T1) - dead_letters(collector.store, reason="suppressed")
    summaries = dead_letters(collector.store, reason="suppressed")
    return dict(junk_sent=f"{len(junk)} x {len(junk[0]):,} B", seconds=round(time.monotonic() - started, 1),
                honest_acked=honest_acked, honest_stored=got, lost=honest_acked - got, dead_letters_stored=letters,
                summaries=summaries, bytes_written=f"{grown / 1024:.0f} KiB (junk {len(junk) * len(junk[0]) / 2**20:.0f} MiB)"), \
        (honest_acked, got, letters, summaries, grown)


def test_3a_a_flood_of_distinct_junk_costs_bounded_disk(adv_broker, collector):
    row = record("3a", "dead-letter disk fill (distinct junk)",
                 f"{T1} sends 2,000 different 8 KB junk payloads on its own topic; {T3} votes 200 times meanwhile",
                 "256-byte prefix + SHA-256 per letter; at most 50 letters per terminal and hour, the rest counted "
                 "into a 'suppressed' summary")
    figures, (acked, got, letters, summaries, grown) = _junk_flood(adv_broker, collector, "distinct", True)
    row.figures.update(figures)
    assert acked == 200 and got == 200
    assert letters <= 50 and summaries >= 1
    assert grown < 1_000_000, grown                     # 16 MB of junk
    row.passed = True


def test_3b_the_same_junk_repeated_is_stored_once(adv_broker, collector):
    row = record("3b", "dead-letter disk fill (one junk payload repeated)",
                 f"{T1} sends the same 8 KB junk 2,000 times; {T3} votes 200 times meanwhile",
                 "a repeat within the hour is counted, not stored")
    figures, (acked, got, letters, summaries, grown) = _junk_flood(adv_broker, collector, "same", False)
    row.figures.update(figures)
    assert acked == 200 and got == 200
    assert letters == 1 and summaries >= 1
    assert grown < 500_000, grown
    row.passed = True


def test_3c_the_log_is_rate_limited(adv_broker, collector):
    row = record("3c", "log flood", f"{T1} sends 3,000 distinct junk payloads",
                 "at most 20 dead-letter warnings a minute, the rest counted in one line")
    thief = terminal(adv_broker, T1)
    before = len(collector.log().splitlines())
    mids = [thief.client.publish(vote_topic(T1), f"junk {i}".encode(), qos=1).mid for i in range(3000)]
    with thief._cond:
        thief._cond.wait_for(lambda: all(m in thief.pubacks for m in mids), 60)
    thief.close()
    time.sleep(1.0)
    lines = collector.log().splitlines()[before:]
    warnings = [line for line in lines if "dead letter on" in line]
    row.figures.update(messages=3000, log_lines=len(lines), dead_letter_warnings=len(warnings))
    assert len(warnings) <= 21, len(warnings)
    row.passed = True


def test_4_a_retained_junk_message_is_stored_once_across_reconnects(adv_broker, collector):
    row = record("4", "retained junk replayed",
                 f"{T1} publishes retained junk on its own vote topic; the collector restarts 3 times",
                 "the replay check: a retained dead letter already stored is counted, not stored again")
    thief = terminal(adv_broker, T1)
    payload = b"retained junk " + os.urandom(8).hex().encode()
    thief.publish(vote_topic(T1), payload, retain=True)
    wait_until(lambda: dead_letters(collector.store, source=T1) >= 1, 10, message="first dead letter")
    for _ in range(3):
        collector.stop()
        collector.start()
        time.sleep(0.5)
    with sqlite3.connect(collector.store) as conn:
        copies = conn.execute("SELECT count(*) FROM dead_letters WHERE payload = ?", (payload,)).fetchone()[0]
    thief.publish(vote_topic(T1), b"", retain=True)          # clear it for the other rows
    thief.close()
    row.figures.update(collector_starts=4, dead_letters_of_it=copies)
    assert copies == 1
    row.passed = True


def test_5_a_qos0_flood_cannot_grow_the_collectors_memory(adv_broker, collector):
    row = record("5", "QoS 0 flood", f"{T1} publishes 60,000 QoS 0 messages of 7 KB as fast as it can; "
                 f"{T3} votes 100 times meanwhile",
                 "QoS 0 beyond a queue of 2,000 is dropped on arrival and counted (a terminal never uses QoS 0)")
    peak = [collector.rss_mb()]
    start_rss = peak[0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], collector.rss_mb())
            except Exception:
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    flood = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    flood.username_pw_set(T1, adv_broker.passwords[T1])
    flood.tls_set(ca_certs=str(adv_broker.ca))
    flood.max_queued_messages_set(0)
    flood.connect("localhost", adv_broker.tls_port)
    flood.loop_start()
    body = b'{"v": 1, "junk": "' + b"q" * 7000 + b'"}'
    honest = terminal(adv_broker, T3)
    seqs = range(400_001, 400_101)
    started = time.monotonic()
    acked = 0
    for i in range(60_000):
        flood.publish(vote_topic(T1), body, qos=0)
        if i % 600 == 0:
            acked += send_votes(honest, T3, [seqs[i // 600]])
    flood.loop_stop()
    flood.disconnect()
    seconds = time.monotonic() - started
    got = wait_stored(collector.store, T3, seqs, timeout=60)
    time.sleep(2)
    done.set()
    honest.close()
    log = collector.log()
    row.figures.update(seconds=round(seconds, 1), acked=acked, stored=got, lost=acked - got,
                       rss_mb=f"{start_rss:.0f} -> peak {peak[0]:.0f} -> {collector.rss_mb():.0f}",
                       dropped="logged" if "QoS 0 messages dropped" in log else "none needed")
    assert acked == 100 and got == 100
    assert peak[0] - start_rss < 60, (start_rss, peak[0])
    row.passed = True


def test_6_seq_at_the_bound_is_a_dead_letter_not_a_trillion_missing(adv_broker, collector):
    from collector.stores.sqlite import SQLiteStore
    row = record("6", "seq = 2^40", f"{T1} sends a well-formed vote with seq 2^40",
                 "the bound is exclusive: dead letter bad_seq; the missing-vote count stays 0")
    thief = terminal(adv_broker, T1)
    thief.publish(vote_topic(T1), make_vote(T1, 2 ** 40).to_json())
    thief.close()
    wait_until(lambda: dead_letters(collector.store, "bad_seq"), 10, message="bad_seq")
    store = SQLiteStore(collector.store)
    try:
        missing = store.stats()["missing"]
    finally:
        store.close()
    row.figures.update(dead_letters_bad_seq=dead_letters(collector.store, "bad_seq"), missing=missing)
    assert missing == 0
    row.passed = True


def test_7_an_oversize_packet_is_cut_off_by_the_broker(adv_broker, collector):
    row = record("7", "oversize packet", f"{T1} publishes 9 KB and 64 KiB payloads", "max_packet_size 8192: "
                 "disconnected before the body is read; nothing reaches the collector")
    before = store_bytes(collector.store)
    log = adv_broker.server.log_file
    seen = log.read_text().count("disconnected due to oversize packet")
    reasons = []
    for size in (9000, 65536):
        thief = Client(adv_broker.tls_port, T1, adv_broker.passwords[T1], ca=adv_broker.ca)
        thief.client.on_disconnect = lambda c, u, f, rc, p: reasons.append(rc)
        thief.connect()
        thief.client.publish(vote_topic(T1), b"x" * size, qos=1)
        wait_until(lambda: len(reasons) >= (1 if size == 9000 else 2), 10, message="disconnect")
        thief.client.loop_stop()
    wait_until(lambda: log.read_text().count("disconnected due to oversize packet") >= seen + 2, 10,
               message="the broker's log line")
    time.sleep(0.5)
    # The client reads DISCONNECT 0x95 "packet too large", or only the closed socket when it is still sending.
    row.figures.update(disconnects=", ".join(str(r) for r in reasons), broker_log="oversize packet x2",
                       bytes_written=store_bytes(collector.store) - before)
    assert all(r.value in (0x95, 0x80) for r in reasons)
    assert store_bytes(collector.store) - before < 4096         # nothing of 73 KB reached the store
    row.passed = True


def test_8_a_terminal_in_the_collectors_group_takes_no_votes(adv_broker, collector):
    row = record("8", "join the collectors' shared group", f"{T1} subscribes $share/manyi/manyi/v1/votes/+; "
                 f"{T3} votes 50 times", "the collector subscribes plainly (no group to join); the ACL refuses "
                 "every delivery to the terminal")
    thief = terminal(adv_broker, T1)
    thief.subscribe("$share/manyi/manyi/v1/votes/+")
    thief.subscribe("manyi/v1/votes/+")
    honest = terminal(adv_broker, T3)
    seqs = range(500_001, 500_051)
    acked = send_votes(honest, T3, seqs)
    got = wait_stored(collector.store, T3, seqs)
    time.sleep(0.3)
    thief.client.unsubscribe("$share/manyi/manyi/v1/votes/+")
    thief.close()
    honest.close()
    row.figures.update(acked=acked, stored=got, lost=acked - got, messages_to_thief=len(thief.messages))
    assert got == acked == 50 and thief.messages == []
    row.passed = True


def test_9_no_anonymous_or_wrong_password_connection(adv_broker):
    row = record("9", "connect without credentials", "anonymous CONNECT, a wrong password, a terminal's password "
                 "under the collector's user name", "password file for every listener: CONNACK refused")
    results = []
    for user, password in ((None, None), (T1, "wrong"), ("manyi-collector", adv_broker.passwords[T1])):
        client = Client(adv_broker.tls_port, user, password, ca=adv_broker.ca)
        client.connect()
        results.append(client.connack)
        client.close()
    row.figures.update(connacks=", ".join(str(r) for r in results))
    assert all(r is not None and r.is_failure for r in results)
    row.passed = True


def test_10_collector_session_survives_a_retired_property_trick(adv_broker, collector):
    """A terminal asking for a huge session expiry or receive maximum changes nothing for others."""
    row = record("10", "read the other terminals", f"{T1} connects with session expiry 2^32-1 and receive "
                 f"maximum 65535 and subscribes to every status; {T3} reports its status and votes",
                 "the ACL gives a terminal nothing of the others to read; the collector's votes keep flowing")
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 2 ** 32 - 1
    props.ReceiveMaximum = 65535
    thief = Client(adv_broker.tls_port, T1, adv_broker.passwords[T1], ca=adv_broker.ca, clean_start=True)
    thief.client.connect("localhost", adv_broker.tls_port, properties=props)
    thief.client.loop_start()
    assert thief.connected.wait(5)
    thief.subscribe("manyi/v1/status/+")
    honest = terminal(adv_broker, T3)
    status = ('{"v": 1, "device": "%s", "online": true}' % T3).encode()
    assert not honest.publish(f"manyi/v1/status/{T3}", status).is_failure     # the honest terminal's status
    seqs = range(600_001, 600_021)
    acked = send_votes(honest, T3, seqs)
    got = wait_stored(collector.store, T3, seqs)
    honest.close()
    thief.close()
    row.figures.update(acked=acked, stored=got, statuses_read_by_thief=len(thief.messages))
    assert got == acked == 20 and thief.messages == []
    row.passed = True
