"""State journal (replay), one session per train_id and mode, secret masking of the live CSVs, retries logged once."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import stamina

from quantnb.agent import FillModel
from quantnb.errors import ConfigError, TemporaryError
from quantnb.live import PaperBroker, ReplayProvider, RiskLimits, Trader, read_latest_state
from quantnb.live._audit import REGISTRO_COLUMNS, CsvAppender
from quantnb.live._state import PendingOrder, SessionLock, StateStore, TraderState, journal_path, state_path
from quantnb.retry import RetryPolicy
from tests.live._helpers import WARMUP, WINDOW, make_agent, sample_bars

START = WARMUP + WINDOW - 2
ROOT = Path(__file__).resolve().parents[2]


def _state(step: int) -> TraderState:
    return TraderState(mode="replay", session_ts="s", order_tag="t", step=step, peak_equity_usd=100.0 + step,
                       pending_orders=[PendingOrder(f"qnb-t-{step}", "buy", 0.1, False, step, 0)])


def test_replay_saves_append_journal_lines_between_snapshots_and_the_newest_complete_record_wins(tmp_path):
    store = StateStore(tmp_path, "replay", snapshot_every_steps=4, snapshot_every_s=1e9)
    st = _state(0)
    store.save(st)  # the first save of a session is a snapshot
    snap_link = os.readlink(state_path(tmp_path, "replay"))
    for step in range(1, 4):
        st.step = step
        st.pending_orders = _state(step).pending_orders
        store.save(st)
    lines = journal_path(tmp_path, "replay").read_bytes().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["step"] == 3  # one compact line per save
    assert os.readlink(state_path(tmp_path, "replay")) == snap_link  # the snapshot is not rewritten per step
    assert json.loads(state_path(tmp_path, "replay").read_text())["step"] == 0
    assert store.load().step == 3 and read_latest_state(tmp_path, "replay").pending_orders[0].client_order_id == \
        "qnb-t-3"

    with open(journal_path(tmp_path, "replay"), "ab") as fh:  # a kill in the middle of a line
        fh.write(st.to_json_bytes()[:40])
    assert store.load().step == 3

    st.step = 4
    store.save(st)  # the 4th save since the snapshot: a new snapshot, journal emptied
    assert journal_path(tmp_path, "replay").stat().st_size == 0 and json.loads(
        state_path(tmp_path, "replay").read_text())["step"] == 4
    store.close()

    # a kill between a snapshot and the journal's truncation: the older journal lines lose to the snapshot
    old = _state(2)
    old.save_seq = st.save_seq - 1
    journal_path(tmp_path, "replay").write_bytes(old.to_json_bytes())
    assert StateStore(tmp_path, "replay").load().step == 4


def test_archive_keeps_the_newest_journal_state_and_removes_the_journal(tmp_path):
    store = StateStore(tmp_path, "replay", snapshot_every_steps=100, snapshot_every_s=1e9)
    st = _state(0)
    for step in range(3):
        st.step = step
        store.save(st)
    dest = store.archive("test")
    assert dest is not None and json.loads(dest.read_text())["step"] == 2
    assert not journal_path(tmp_path, "replay").exists() and store.load() is None


def _trader(out_dir, bars, **kw):
    provider = ReplayProvider(bars, history_bars=START)
    broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(fee_bps=5.0, slippage_bps=1.0))
    return Trader(make_agent(), provider, broker, RiskLimits(0.5, 1.0), out_dir, emergency_poll_interval_s=0.01, **kw)


def test_a_second_session_of_the_same_folder_and_mode_is_refused_naming_the_first(tmp_path):
    bars = sample_bars(START + 10)
    held = SessionLock(tmp_path, "replay")
    held.acquire(run_id="run-first", session_ts="s1")
    try:
        with pytest.raises(ConfigError, match=rf"another replay session.*pid {os.getpid()}, run id run-first"):
            _trader(tmp_path, bars).run()
        assert not list(tmp_path.glob("registro_*.csv"))  # refused before any file of a session
    finally:
        held.release()
    stats = _trader(tmp_path, bars, run_id="run-second").run()  # released: a session starts
    assert stats.steps == 10
    assert SessionLock(tmp_path, "replay").free() and SessionLock(tmp_path, "testnet").free()


_SESSION = textwrap.dedent("""
    import sys
    import time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from quantnb.errors import ConfigError
    from quantnb.live import PaperBroker, ReplayProvider, RiskLimits, Trader
    from quantnb.agent import FillModel
    from tests.live._helpers import make_agent, sample_bars
    bars = sample_bars({n})
    trader = Trader(make_agent(), ReplayProvider(bars, history_bars={start}, speed=float(sys.argv[2])),
                    PaperBroker("BTC-PERP", 10_000.0, FillModel(fee_bps=5.0, slippage_bps=1.0)),
                    RiskLimits(0.5, 1.0), Path(sys.argv[1]), run_id=sys.argv[3])
    go = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    while go is not None and not go.exists():  # imported and built: start trading when the test says so
        time.sleep(0.01)
    try:
        stats = trader.run()
    except ConfigError as err:
        print("REFUSED", err)
        sys.exit(3)
    print("DONE", stats.steps, stats.resumed)
""")


@pytest.mark.slow
def test_two_processes_one_refused_first_completes_and_a_killed_session_never_blocks_its_restart(tmp_path):
    script = tmp_path / "session.py"
    script.write_text(_SESSION.format(root=str(ROOT), n=START + 40, start=START))
    out = tmp_path / "produccion"

    def start(speed: float, run_id: str, *go: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(out), str(speed), run_id, *go],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for_step(proc: subprocess.Popen, step: int) -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            st = read_latest_state(out, "replay")
            if st is not None and st.step >= step:
                return
            time.sleep(0.05)
        raise AssertionError(f"session did not reach step {step}: {proc.communicate()}")

    go = tmp_path / "go"
    second = start(0.0, "run-two", str(go))  # ready (imports done) before the first is well under way
    first = start(300.0, "run-one")  # 0.2 s a bar: 8 s of trading
    wait_for_step(first, 2)
    go.touch()
    out2, err2 = second.communicate(timeout=240)
    assert second.returncode == 3 and f"pid {first.pid}, run id run-one" in out2, out2 + err2
    out1, err1 = first.communicate(timeout=240)
    assert first.returncode == 0 and "DONE 40 False" in out1, out1 + err1

    (tmp_path / "done").mkdir()
    for f in out.iterdir():  # a new session: the completed one's files set aside
        f.rename(tmp_path / "done" / f.name)
    third = start(600.0, "run-three")
    wait_for_step(third, 3)
    third.send_signal(signal.SIGKILL)
    third.wait(timeout=60)
    fourth = start(0.0, "run-four")  # the kernel released the killed session's lock
    out4, err4 = fourth.communicate(timeout=240)
    assert fourth.returncode == 0 and "True" in out4, out4 + err4
    with open(next(out.glob("registro_*.csv")), newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == list(range(40))


def test_live_csvs_mask_secret_environment_values(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTNB_TEST_API_KEY", "k3yVALUEabc")
    monkeypatch.setenv("QUANTNB_TEST_PASSWORD", "pw")  # under 4 characters: not a secret
    path = tmp_path / "emergencias.csv"
    with CsvAppender(path, ("timestamp", "detail", "equity_usd")) as out:
        out.write({"timestamp": "t", "detail": "venue said: bad key k3yVALUEabc (pw)", "equity_usd": 1.5})
    text = path.read_text()
    assert "k3yVALUEabc" not in text and "bad key *** (pw)" in text and "1.5" in text

    bars = sample_bars(START + 5)
    stats = _trader(tmp_path / "prod", bars, session_ts="s").run()
    with open(stats.registro_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and tuple(rows[0]) == REGISTRO_COLUMNS
    monkeypatch.setenv("QUANTNB_TEST_SECRET", rows[0]["bar_ts"])  # a text field that carries the secret
    with CsvAppender(stats.registro_path, REGISTRO_COLUMNS) as out:
        out.write({"step": 99, "bar_ts": rows[0]["bar_ts"], "note": f"x {rows[0]['bar_ts']} y"})
    last = list(csv.DictReader(open(stats.registro_path, newline="")))[-1]
    assert last["bar_ts"] == "***" and last["note"] == "x *** y" and last["step"] == "99"


def test_each_retry_appears_once_in_the_logs(caplog_loguru):
    records: list[logging.LogRecord] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    grab = Grab(level=logging.DEBUG)
    logging.getLogger().addHandler(grab)
    old_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TemporaryError("503 from the venue")
        return "ok"

    try:
        with stamina.set_testing(True, attempts=100, cap=True):
            assert RetryPolicy(attempts=5, what="t/retry").call(flaky) == "ok"
    finally:
        logging.getLogger().removeHandler(grab)
        logging.getLogger().setLevel(old_level)
    ours = [m for m in caplog_loguru if "t/retry" in m and "retrying in" in m]
    assert len(ours) == 3, caplog_loguru  # three failures, three retry lines
    assert not [r for r in records if r.name.startswith("stamina")], [r.getMessage() for r in records]


class _Killed(BaseException):
    """Stands for a kill inside the loop: the session ends without its final snapshot."""


def test_a_session_stopped_dead_between_snapshots_resumes_from_the_journal_like_an_uninterrupted_one(tmp_path):
    from tests.live.test_state_and_resume import _content

    bars = sample_bars(START + 40)
    ref = _trader(tmp_path / "ref", bars).run()

    def die(info) -> None:
        if info.step == 17:
            raise _Killed

    out = tmp_path / "killed"
    with pytest.raises(_Killed):
        _trader(out, bars, on_step=die).run()
    assert json.loads(state_path(out, "replay").read_text())["step"] == 0  # only the start snapshot
    assert read_latest_state(out, "replay").step == 18  # the journal holds every step
    with open(journal_path(out, "replay"), "ab") as fh:
        fh.write(b'{"mode": "replay", "step": 99')  # and a torn line
    resumed = _trader(out, bars).run()
    assert resumed.resumed and resumed.steps == 40 - 18
    assert _content(resumed.registro_path) == _content(ref.registro_path)
    assert journal_path(out, "replay").stat().st_size == 0 and read_latest_state(out, "replay").completed
