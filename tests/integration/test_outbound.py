"""Outbound delivery: SMTP over MX (test DNS) to Postfix's smtp-sink, next-MX
fallback, 5xx bounces as RFC 3464 DSNs into a local Maildir, retry after a
deferral, relayhost, null-sender bounces to postmaster, LMTP to a real
Dovecot (dovecot-lmtpd) in a temp dir. Loopback only; every server is
stopped by PID."""

import email
import email.policy
import os
import shutil
import signal
import re
import smtplib
import socket
import subprocess
import time

import pytest

from conftest import free_port, wait_for
from dnsserver import DnsServer

SINK = "/usr/sbin/smtp-sink"
DOVECOT = "/usr/sbin/dovecot"

pytestmark = pytest.mark.skipif(not os.path.exists(SINK), reason="smtp-sink not installed")


class Sink:
    """smtp-sink on host:port; extra args e.g. ["-f", "RCPT"]; dumps into dir."""

    def __init__(self, tmp, host, port, args=()):
        self.dir = os.path.join(str(tmp), "sink-%s-%d-%d" % (host, port, time.monotonic_ns()))
        os.makedirs(self.dir)
        self.proc = subprocess.Popen([SINK, "-u", "root", "-d", self.dir + "/%M.", *args,
                                      "-c", "%s:%d" % (host, port), "10"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self._up(host, port), 10, "smtp-sink on %s:%d" % (host, port))

    @staticmethod
    def _up(host, port):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False

    def messages(self):
        out = []
        for n in sorted(os.listdir(self.dir)):
            with open(os.path.join(self.dir, n), "rb") as f:
                out.append(f.read())
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def zone():
    return """outside.test. 300 MX 10 mx1.outside.test.
outside.test. 300 MX 20 mx2.outside.test.
mx1.outside.test. 300 A 127.0.0.2
mx2.outside.test. 300 A 127.0.0.3
relay.test. 300 A 127.0.0.4
"""


def port_free_on(hosts):
    for _ in range(50):
        p = free_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            with socket.socket() as s:
                try:
                    s.bind((h, p))
                except OSError:
                    ok = False
        if ok:
            return p
    raise AssertionError("no common free port")


@pytest.fixture
def env(tmp_path, sluiced_factory):
    started = []
    with DnsServer(zone()) as dns:
        port = port_free_on(["127.0.0.2", "127.0.0.3", "127.0.0.4"])

        def sink(host, args=()):
            s = Sink(tmp_path, host, port, args)
            started.append(s)
            return s

        def mta(extra=""):
            return sluiced_factory(f"""
dns_servers = {dns.addr}
smtp_tcp_port = {port}
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
smtp_connect_timeout = 5s
smtp_helo_timeout = 10s
2bounce_notice_recipient = postmaster@example.com
{extra}""").start()
        yield sink, mta, port
        for s in started:
            s.stop()


def send(s, sender, rcpts, body="Subject: hi\n\nhello\n", **kw):
    with smtplib.SMTP(s.host, s.port, timeout=10) as c:
        c.sendmail(sender, rcpts, body.replace("\n", "\r\n").encode(), **kw)


def read_dsn(path):
    with open(path, "rb") as f:
        return email.message_from_binary_file(f, policy=email.policy.compat32)


def dsn_fields(msg):
    """(per-message fields, [per-recipient fields]) from the message/delivery-status part."""
    parts = msg.get_payload()
    ds = parts[1]
    assert ds.get_content_type() == "message/delivery-status"
    blocks = ds.get_payload()
    return blocks[0], blocks[1:]


def test_relay_over_mx_falls_back_to_secondary(env):
    sink, mta, port = env
    sec = sink("127.0.0.3")          # mx1 (127.0.0.2) refuses connections
    s = mta()
    send(s, "alice@example.com", ["bob@outside.test"])
    wait_for(lambda: sec.messages(), 30, "message at mx2 (log: %s)" % s.log_text()[-2000:])
    m = sec.messages()[0]
    assert b"X-Rcpt-Args: <bob@outside.test>" in m
    assert b"Subject: hi" in m
    wait_for(lambda: "status=sent" in s.log_text(), 10, "sent log")
    log = s.log_text()
    assert "relay=mx2.outside.test[127.0.0.3]:%d" % port in log
    assert "dsn=2.0.0, status=sent (250 2.0.0 Ok" in log or "status=sent (250 " in log
    s.wait_queue_empty()


def test_421_greeting_falls_back(env):
    sink, mta, port = env
    sink("127.0.0.2", ["-Q", "connect"])
    sec = sink("127.0.0.3")
    s = mta()
    send(s, "alice@example.com", ["carol@outside.test"])
    wait_for(lambda: sec.messages(), 30, "message at mx2 (log: %s)" % s.log_text()[-2000:])


def test_5xx_bounces_with_dsn(env):
    sink, mta, port = env
    sink("127.0.0.2", ["-f", "RCPT"])
    s = mta()
    send(s, "alice@example.com", ["nobody@outside.test"],
         body="Subject: lost\nMessage-Id: <orig@example.com>\n\nbody\n",
         rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;nobody@outside.test"])
    files = s.wait_delivered("alice", 1)
    msg = read_dsn(files[0])
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"].startswith("MAILER-DAEMON@mx.test")
    assert "Return-Path: <>" in open(files[0], errors="replace").read()
    parts = msg.get_payload()
    assert parts[0].get_content_type() == "text/plain"
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert "Message-Id: <orig@example.com>" in parts[2].get_payload()
    per_msg, per_rcpt = dsn_fields(msg)
    assert per_msg["Reporting-MTA"] == "dns; mx.test"
    assert per_msg["Arrival-Date"]
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; nobody@outside.test"
    assert r["Original-Recipient"] == "rfc822;nobody@outside.test"
    assert r["Action"] == "failed"
    assert r["Status"].startswith("5.")
    assert r["Remote-MTA"] == "dns; mx1.outside.test"
    assert r["Diagnostic-Code"].startswith("smtp; 5")
    log = s.log_text()
    assert "status=bounced (host mx1.outside.test[127.0.0.2]:%d said: 5" % port in log
    assert "(in reply to RCPT TO command)" in log
    assert "sender non-delivery notification:" in log


def test_notify_never_sends_no_dsn(env):
    sink, mta, port = env
    sink("127.0.0.2", ["-f", "RCPT"])
    s = mta()
    send(s, "alice@example.com", ["x@outside.test"], rcpt_options=["NOTIFY=NEVER"])
    wait_for(lambda: "status=bounced" in s.log_text(), 30, "bounce")
    s.wait_queue_empty()
    time.sleep(0.5)
    assert s.delivered("alice") == []
    assert "non-delivery notification" not in s.log_text()


def test_null_sender_bounce_goes_to_postmaster(env):
    sink, mta, port = env
    sink("127.0.0.2", ["-f", "RCPT"])
    s = mta()
    send(s, "", ["y@outside.test"])
    files = s.wait_delivered("postmaster", 1)
    msg = read_dsn(files[0])
    assert msg.get_content_type() == "multipart/report"
    _, per_rcpt = dsn_fields(msg)
    assert per_rcpt[0]["Final-Recipient"] == "rfc822; y@outside.test"
    s.wait_queue_empty()


def test_undeliverable_postmaster_copy_is_discarded(env):
    """A bounce that bounces goes to postmaster once, from double_bounce_sender;
    when that copy fails too it is dropped (Postfix's rule), not bounced again
    in a loop."""
    sink, mta, port = env
    sink("127.0.0.2", ["-f", "RCPT"])        # every outside.test RCPT fails
    s = mta("2bounce_notice_recipient = nobody@outside.test")
    send(s, "", ["y@outside.test"])
    wait_for(lambda: s.log_text().count("status=bounced") >= 2, 30,
             "the bounce and its postmaster copy (log: %s)" % s.log_text()[-2000:])
    s.wait_queue_empty()
    log = s.log_text()
    assert re.search(r"from=<double-bounce@[^>]+>", log), log
    assert log.count("status=bounced") == 2, log
    assert s.queue_files("deferred") == []


def test_deferred_then_retried(env):
    sink, mta, port = env
    s = mta()                                # nothing listens on mx1 or mx2 yet
    send(s, "alice@example.com", ["later@outside.test"])
    wait_for(lambda: "status=deferred" in s.log_text(), 30, "deferral (log: %s)" % s.log_text())
    assert "connect to mx" in s.log_text()
    prim = sink("127.0.0.2")
    wait_for(lambda: prim.messages(), 30, "retried delivery (log: %s)" % s.log_text()[-2000:])
    s.wait_queue_empty()
    assert s.queue_files("deferred") == []


def test_relayhost_without_mx(env):
    sink, mta, port = env
    r = sink("127.0.0.4")
    s = mta(f"relayhost = [relay.test]:{port}")
    send(s, "alice@example.com", ["z@outside.test"])
    wait_for(lambda: r.messages(), 30, "message at relayhost (log: %s)" % s.log_text()[-2000:])
    # the delivery agent logs status=sent after the sink has the message: wait for the line
    want = "relay=relay.test[127.0.0.4]:%d" % port
    wait_for(lambda: want in s.log_text(), 30, want)


def test_transport_maps_and_dot_stuffing(env, tmp_path):
    sink, mta, port = env
    r = sink("127.0.0.4")
    tm = tmp_path / "transport"
    tm.write_text("elsewhere.test smtp:[127.0.0.4]:%d\n" % port)
    s = mta(f"transport_maps = texthash:{tm}")
    send(s, "alice@example.com", ["w@elsewhere.test"], body="Subject: dots\n\n.leading dot\n..two\nend\n")
    # smtp-sink creates the dump file before it has written it: wait for the end of the data
    wait_for(lambda: any(b"end" in m for m in r.messages()), 30,
             "message via transport_maps (log: %s)" % s.log_text()[-2000:])
    m = r.messages()[0]
    assert b"\n.leading dot\n..two\nend" in m.replace(b"\r\n", b"\n")


# ---- Dovecot LMTP ----

@pytest.fixture
def dovecot(tmp_path):
    if not os.path.exists("/usr/lib/dovecot/lmtp"):
        pytest.skip("dovecot-lmtpd not installed")
    import grp
    import pathlib
    import pwd
    import tempfile
    # Dovecot refuses mail access as root: the mailbox user is nobody, so
    # the directory is outside pytest's 0700 tmp_path (removed at the end).
    d = pathlib.Path(tempfile.mkdtemp(prefix="sluice-dovecot-"))
    os.chmod(d, 0o755)
    (d / "run").mkdir()
    (d / "mail").mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(d / "mail", nobody.pw_uid, nobody.pw_gid)
    me = pwd.getpwuid(os.getuid())
    (d / "users").write_text("dave@lmtp.test:{PLAIN}secret:%d:%d::%s/mail/dave::\n"
                             % (nobody.pw_uid, nobody.pw_gid, d))
    sock = d / "run" / "lmtp"
    conf = d / "dovecot.conf"
    conf.write_text(f"""
base_dir = {d}/run
state_dir = {d}/state
protocols = lmtp
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
ssl = no
default_internal_user = {me.pw_name}
default_internal_group = {grp.getgrgid(me.pw_gid).gr_name}
default_login_user = {me.pw_name}
first_valid_uid = 0
mail_location = maildir:{d}/mail/%u
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol lmtp {{
  auth_username_format = %Lu
}}
""")
    (d / "state").mkdir()
    p = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: sock.exists() or p.poll() is not None, 20, "dovecot lmtp socket")
        if p.poll() is not None:
            raise AssertionError("dovecot exited: %s %s" % (
                p.stdout.read().decode(errors="replace"),
                (d / "dovecot.log").read_text() if (d / "dovecot.log").exists() else ""))
        yield d, str(sock)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(d, ignore_errors=True)


def test_lmtp_dovecot_one_delivered_one_bounced(env, dovecot, tmp_path):
    sink, mta, port = env
    d, sock = dovecot
    tm = tmp_path / "ltransport"
    tm.write_text("lmtp.test lmtp:unix:%s\n" % sock)
    s = mta(f"transport_maps = texthash:{tm}")
    send(s, "alice@example.com", ["dave@lmtp.test", "nosuch@lmtp.test"],
         body="Subject: to dovecot\n\nhello dave\n")
    newdir = d / "mail" / "dave@lmtp.test" / "new"
    wait_for(lambda: newdir.exists() and os.listdir(newdir), 30,
             "dovecot delivery (log: %s)" % s.log_text()[-3000:])
    got = (newdir / os.listdir(newdir)[0]).read_bytes()
    assert b"hello dave" in got
    files = s.wait_delivered("alice", 1)
    msg = read_dsn(files[0])
    assert msg.get_content_type() == "multipart/report"
    _, per_rcpt = dsn_fields(msg)
    assert len(per_rcpt) == 1
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; nosuch@lmtp.test"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert r["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    log = s.log_text()
    assert "to=<dave@lmtp.test>" in log and "status=sent" in log
    assert "to=<nosuch@lmtp.test>" in log and "status=bounced" in log
    s.wait_queue_empty()
