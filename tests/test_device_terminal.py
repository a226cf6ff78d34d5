"""The terminal on gpiozero MockFactory pins with a fake clock: confirmation, lock-out, debounce, LEDs."""

import json
import time

from device.terminal import ClockCheck, led_pattern

ALL_ON = {"satisfied": 1.0, "basic": 1.0, "unsatisfied": 1.0}
DARK = {"satisfied": 0.0, "basic": 0.0, "unsatisfied": 0.0}


def test_press_is_committed_then_confirmed_within_50_ms(make_rig, clock):
    rig = make_rig()   # outbox synchronous=FULL, the default: each vote is fsynced before the light
    elapsed = []
    for _ in range(3):
        started = time.perf_counter()
        rig.press("unsatisfied")
        elapsed.append(time.perf_counter() - started)
        assert rig.led_values() == ALL_ON
        rig.release("unsatisfied")
        clock.advance(5)
        rig.terminal.tick()
    # The median, so that one scheduling hiccup on a shared CI machine does not fail the build.
    assert sorted(elapsed)[1] < 0.05, f"confirmation after {[round(e * 1000, 1) for e in elapsed]} ms"
    row = rig.outbox.pending()[0]
    assert json.loads(row.payload) == {"v": 1, "device": "hz-test-w01", "seq": 1, "rating": "unsatisfied",
                                       "pressed_at": "2026-11-23T09:30:00.000+08:00", "clock_ok": True}


def test_confirmation_is_the_same_for_every_key_and_ends(make_rig, clock):
    rig = make_rig()
    shown = []
    for rating in ("satisfied", "basic", "unsatisfied"):
        rig.tap(rating)
        shown.append(rig.led_values())
        clock.advance(rig.settings.lockout_seconds)
        rig.terminal.tick()
        assert rig.led_values() == DARK
    assert shown == [ALL_ON] * 3
    assert [json.loads(r.payload)["rating"] for r in rig.outbox.pending()] == ["satisfied", "basic", "unsatisfied"]


def test_per_key_confirmation_lights_only_that_key(make_rig):
    rig = make_rig(per_key_confirmation=True)
    rig.press("basic")
    assert rig.led_values() == {"satisfied": 0.0, "basic": 1.0, "unsatisfied": 0.0}


def test_lockout_counts_presses_as_repeats_for_every_key(make_rig, clock):
    rig = make_rig(lockout_seconds=3.0)
    rig.tap("satisfied")
    clock.advance(1.0)
    rig.tap("unsatisfied")
    rig.tap("basic")
    clock.advance(1.0)
    assert rig.outbox.last_seq == 1
    assert rig.outbox.repeats == 2
    assert rig.terminal.status_fields()["repeats_ignored"] == 2
    clock.advance(1.0)  # 3.2 s after the vote: the lock-out is over
    rig.tap("basic")
    assert rig.outbox.last_seq == 2


def test_held_key_is_one_vote(make_rig, clock):
    rig = make_rig()
    rig.press("satisfied")
    for _ in range(10):
        clock.advance(1.0)
        rig.terminal.tick()
    rig.release("satisfied")
    assert rig.outbox.last_seq == 1 and rig.outbox.repeats == 0


def test_bounce_is_one_press(make_rig, clock):
    rig = make_rig(debounce_ms=30, lockout_seconds=0.5)
    # A bouncing contact: edges 2 ms apart, then stable; long after the lock-out.
    for _ in range(5):
        rig.press("basic")
        clock.advance(0.002)
        rig.release("basic")
        clock.advance(0.002)
    rig.press("basic")
    clock.advance(1.0)
    rig.release("basic")
    assert rig.outbox.last_seq == 1
    assert rig.outbox.repeats == 0
    assert rig.terminal.counts["bounce"] >= 9
    clock.advance(1.0)
    rig.tap("basic")
    assert rig.outbox.last_seq == 2


def test_full_outbox_refuses_visibly(make_rig, clock):
    rig = make_rig(outbox_limit=1, lockout_seconds=0.5)
    rig.tap("satisfied")
    clock.advance(2.0)
    rig.terminal.tick()
    # Full: the red LED blinks at 4 Hz, the others stay dark, and a press gives no confirmation.
    seen = set()
    for _ in range(8):
        rig.terminal.tick()
        seen.add(tuple(rig.led_values().values()))
        clock.advance(0.0625)
    assert seen == {(0.0, 0.0, 1.0), (0.0, 0.0, 0.0)}
    rig.tap("basic")
    assert rig.led_values()["satisfied"] == 0.0
    assert rig.outbox.last_seq == 1 and rig.outbox.refused == 1
    assert rig.terminal.counts["refused"] == 1
    assert rig.terminal.status_fields()["outbox_full"] is True


def test_poisoned_votes_flash_yellow(make_rig, clock):
    rig = make_rig()
    rig.tap("satisfied")
    rig.outbox.poison(1, 0x87, "Not authorized", "2026-11-23T09:30:00.000+08:00")
    clock.advance(4.05 - clock.monotonic() % 2.0)  # past the confirmation, 0.05 s into a 2 s period
    rig.terminal.tick()
    assert rig.led_values() == {"satisfied": 0.0, "basic": 1.0, "unsatisfied": 0.0}
    clock.advance(0.5)
    rig.terminal.tick()
    assert rig.led_values() == DARK


def test_brightness_and_buzzer(make_rig, clock):
    rig = make_rig(led_brightness=0.3, buzzer_pin=26, buzzer_seconds=0.1)
    rig.press("basic")
    assert rig.led_values() == {"satisfied": 0.3, "basic": 0.3, "unsatisfied": 0.3}
    assert rig.terminal.buzzer.value == 1
    clock.advance(0.2)
    rig.terminal.tick()
    assert rig.terminal.buzzer.value == 0


def test_clock_ok_comes_from_the_injected_check(make_rig, clock):
    answers = iter([False, True])
    check = ClockCheck(lambda: next(answers), interval=30)
    rig = make_rig(clock_ok=check)
    check.refresh(clock.monotonic())
    rig.tap("satisfied")
    clock.advance(31)
    check.refresh(clock.monotonic())
    rig.tap("satisfied")
    assert [json.loads(r.payload)["clock_ok"] for r in rig.outbox.pending()] == [False, True]


def test_led_pattern_is_pure():
    args = dict(confirm_until=10.0, confirm_started=9.0, confirm_rating="basic", per_key=False, brightness=1.0,
                buzzer_seconds=0.0, full=False, refused_until=0.0, poisoned=0)
    assert led_pattern(9.5, **args).leds == ALL_ON
    assert led_pattern(10.5, **args).leds == DARK


def test_seq_continues_when_the_terminal_restarts(make_rig, clock):
    rig = make_rig()
    rig.tap("satisfied")
    rig.outbox.acknowledge(1)
    rig.terminal.close()
    rig.outbox.close()
    again = make_rig()          # same device, same outbox file
    clock.advance(5)
    again.tap("basic")
    assert [json.loads(r.payload)["seq"] for r in again.outbox.pending()] == [2]


def test_lights_animate_only_while_they_change_by_themselves(make_rig, clock):
    # The run loop ticks every 20 ms while `animating`, every 100 ms otherwise (device/run.py).
    rig = make_rig(outbox_limit=2, lockout_seconds=0.5)
    assert not rig.terminal.animating                     # dark and steady
    rig.tap("satisfied")
    assert rig.terminal.animating                         # confirmation running
    clock.advance(rig.settings.confirm_seconds)
    rig.terminal.tick()
    assert not rig.terminal.animating and rig.led_values() == DARK
    rig.outbox.poison(1, 0x87, "Not authorized", "2026-11-23T09:30:00.000+08:00")
    assert rig.terminal.animating                         # yellow flash every 2 s
    rig.outbox.requeue_poisoned()
    assert not rig.terminal.animating
    rig.tap("basic")
    clock.advance(rig.settings.confirm_seconds)
    assert rig.outbox.full and rig.terminal.animating     # red blink while full
