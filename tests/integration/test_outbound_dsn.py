"""Delivery status notifications: one DSN per message listing every failed
recipient (RFC 3464 per-recipient groups), and delay warnings
(delay_warning_time, once per message, NOTIFY=DELAY respected). Peers are
Postfix's smtp-sink on 127.0.0.x behind the test DNS; stopped by PID."""

import time

from conftest import wait_for
from test_outbound import env, send, read_dsn, dsn_fields  # noqa: F401 (env is a fixture)


def test_one_dsn_for_all_failed_recipients(env):
    sink, mta, port = env
    sink("127.0.0.2", ["-f", "RCPT"])
    s = mta()
    rcpts = ["a1@outside.test", "a2@outside.test", "a3@outside.test"]
    send(s, "alice@example.com", rcpts, body="Subject: three\n\nbody\n")
    files = s.wait_delivered("alice", 1)
    s.wait_queue_empty()
    time.sleep(1)
    files = s.delivered("alice")
    assert len(files) == 1, s.log_text()
    msg = read_dsn(files[0])
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    text = msg.get_payload()[0].get_payload()
    for r in rcpts:
        assert "<%s>: host mx1.outside.test" % r in text
    _, per_rcpt = dsn_fields(msg)
    assert sorted(g["Final-Recipient"] for g in per_rcpt) == ["rfc822; " + r for r in rcpts]
    for g in per_rcpt:
        assert g["Action"] == "failed"
        assert g["Status"].startswith("5.")
        assert g["Remote-MTA"] == "dns; mx1.outside.test"
    log = s.log_text()
    assert log.count("sender non-delivery notification:") == 1
    assert log.count("status=bounced") == 3


def test_dsn_leaves_out_notify_never(env):
    sink, mta, port = env
    sink("127.0.0.2", ["-f", "RCPT"])
    s = mta()
    with __import__("smtplib").SMTP(s.host, s.port, timeout=10) as c:
        c.ehlo()
        c.mail("alice@example.com")
        assert c.rcpt("n1@outside.test", ["NOTIFY=NEVER"])[0] == 250
        assert c.rcpt("n2@outside.test")[0] == 250
        c.data(b"Subject: two\r\n\r\nbody\r\n")
    files = s.wait_delivered("alice", 1)
    s.wait_queue_empty()
    _, per_rcpt = dsn_fields(read_dsn(files[0]))
    assert [g["Final-Recipient"] for g in per_rcpt] == ["rfc822; n2@outside.test"]


def test_delay_warning_once(env):
    sink, mta, port = env
    s = mta("delay_warning_time = 2s")        # nothing listens on mx1 or mx2
    send(s, "alice@example.com", ["slow@outside.test"], body="Subject: slow\n\nbody\n")
    files = s.wait_delivered("alice", 1, timeout=40)
    msg = read_dsn(files[0])
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert msg.get_content_type() == "multipart/report"
    assert "THIS IS A WARNING ONLY" in msg.get_payload()[0].get_payload()
    per_msg, per_rcpt = dsn_fields(msg)
    assert per_msg["Reporting-MTA"] == "dns; mx.test"
    assert len(per_rcpt) == 1
    g = per_rcpt[0]
    assert g["Final-Recipient"] == "rfc822; slow@outside.test"
    assert g["Action"] == "delayed"
    assert g["Status"].startswith("4.")
    assert g["Will-Retry-Until"]
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
    assert "Subject: slow" in msg.get_payload()[2].get_payload()
    # later retries send no second warning
    n = s.log_text().count("status=deferred")
    wait_for(lambda: s.log_text().count("status=deferred") >= n + 3, 30, "more retries")
    assert len(s.delivered("alice")) == 1
    assert s.log_text().count("sender delay notification:") == 1


def test_delay_warning_respects_notify(env):
    sink, mta, port = env
    s = mta("delay_warning_time = 1s")
    send(s, "alice@example.com", ["quiet@outside.test"], rcpt_options=["NOTIFY=FAILURE"])
    wait_for(lambda: s.log_text().count("status=deferred") >= 4, 40,
             "retries (log: %s)" % s.log_text()[-2000:])
    assert s.delivered("alice") == []
    assert "delay notification" not in s.log_text()


def test_queue_listing_shows_reasons(env, tmp_path):
    import os
    import subprocess
    from conftest import BIN
    sink, mta, port = env
    tm = tmp_path / "transport"
    tm.write_text("later.test retry:come back later\n")
    s = mta(f"transport_maps = texthash:{tm}")      # nothing listens on mx1 or mx2
    send(s, "alice@example.com", ["d1@outside.test", "d2@outside.test", "w@later.test"])
    wait_for(lambda: s.queue_files("deferred") and os.listdir(os.path.join(s.queue, "defer")), 30,
             "a deferred message (log: %s)" % s.log_text()[-2000:])

    def listing():
        return subprocess.run([os.path.join(BIN, "sluice"), "queue", "-c", s.conf_path],
                              capture_output=True, text=True, check=True).stdout

    def complete():
        out = listing()
        return "(come back later)" in out and "(connect to mx" in out and out

    out = wait_for(complete, 20, "reasons in the listing: %s" % listing())
    lines = out.splitlines()
    assert lines[0].startswith("-Queue ID-")
    assert "alice@example.com" in lines[1]
    # the size column lines up under --Size--
    assert lines[1][21:29].strip().isdigit() and lines[0][21:29] == "--Size--", out
    # "(reason)" above the recipients it applies to, once per run of the same reason
    i = next(k for k, ln in enumerate(lines) if ln.startswith("(connect to mx"))
    assert "Connection refused" in lines[i] and not lines[i].startswith("(4.")
    assert lines[i + 1].strip() == "d1@outside.test"
    assert lines[i + 2].strip() == "d2@outside.test"
    assert lines[i + 3] == "(come back later)"
    assert lines[i + 4].strip() == "w@later.test"
    assert out.rstrip().endswith("-- 1 Request."), out


def test_recipients_to_one_destination_share_a_transaction(env):
    sink, mta, port = env
    prim = sink("127.0.0.2")
    s = mta()
    rcpts = ["r1@outside.test", "r2@outside.test", "r3@outside.test"]
    send(s, "alice@example.com", rcpts)
    wait_for(lambda: s.log_text().count("status=sent") == 3, 30, "3 sent (log: %s)" % s.log_text()[-2000:])
    s.wait_queue_empty()
    msgs = prim.messages()
    assert len(msgs) == 1                       # one MAIL, three RCPT, one DATA
    for r in rcpts:
        assert b"X-Rcpt-Args: <%s>" % r.encode() in msgs[0]
