"""check_policy_service: sluiced as a Postfix policy delegation client."""

import socket
import socketserver
import threading
import time

import pytest

from conftest import SmtpRaw, free_port, wait_for


class PolicyServer:
    """A scripted policy server: the recipient's local part picks the action."""

    def __init__(self, delay=0.0, garbage=False):
        self.requests = []
        self.connections = 0
        self.delay = delay
        self.garbage = garbage
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                outer.connections += 1
                while True:
                    attrs = {}
                    while True:
                        line = self.rfile.readline()
                        if not line:
                            return
                        line = line.decode().rstrip("\n")
                        if not line:
                            break
                        k, _, v = line.partition("=")
                        attrs[k] = v
                    outer.requests.append(attrs)
                    if outer.delay:
                        time.sleep(outer.delay)
                    if outer.garbage:
                        self.wfile.write(b"\x00\x01garbage without equals\n\n")
                        continue
                    local = attrs.get("recipient", "").split("@")[0]
                    action = {
                        "reject": "REJECT go away",
                        "code": "550 5.7.23 Message rejected due to: SPF fail",
                        "defer": "DEFER_IF_PERMIT try later",
                        "prepend": "PREPEND X-Policy: seen",
                        "hold": "HOLD",
                        "ok": "OK",
                    }.get(local, "DUNNO")
                    self.wfile.write(("action=%s\n\n" % action).encode())

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def policy():
    p = PolicyServer()
    yield p
    p.stop()


VMAP_USERS = ("alice", "bob", "reject", "code", "defer", "prepend", "hold", "ok")


def start(factory, service, extra=""):
    return factory(f"smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service {service}\n"
                   + extra, users=VMAP_USERS).start()


def session(s):
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    c.cmd("EHLO client.test")
    return c


def test_actions_and_attributes(sluiced_factory, policy):
    s = start(sluiced_factory, "inet:127.0.0.1:%d" % policy.port)
    c = session(s)
    assert c.cmd("MAIL FROM:<sender@example.net> SIZE=1234")[0] == 250
    code, text = c.cmd("RCPT TO:<reject@example.com>")
    assert code == 554 and "<reject@example.com>: Recipient address rejected: go away" in text
    code, text = c.cmd("RCPT TO:<code@example.com>")
    assert code == 550 and "5.7.23" in text and "Message rejected due to: SPF fail" in text
    code, text = c.cmd("RCPT TO:<defer@example.com>")
    assert code == 450 and "try later" in text
    assert c.cmd("RCPT TO:<prepend@example.com>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: policy\r\n\r\nhello\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    (p,) = s.wait_delivered("alice", 1)
    head = open(p, "rb").read().split(b"\n\n")[0]
    assert b"X-Policy: seen" in head
    # Postfix's attribute set; one instance for every request of the message
    rq = policy.requests
    assert len(rq) == 5
    for r in rq:
        assert r["request"] == "smtpd_access_policy" and r["protocol_state"] == "RCPT"
        assert r["protocol_name"] == "ESMTP" and r["helo_name"] == "client.test"
        assert r["client_address"] == "127.0.0.1" and r["sender"] == "sender@example.net"
        assert r["size"] == "1234" and r["server_port"] == str(s.port)
        for k in ("client_name", "reverse_client_name", "client_port", "queue_id", "sasl_username",
                  "encryption_protocol", "stress", "policy_context", "compatibility_level", "mail_version"):
            assert k in r, k
    assert len({r["instance"] for r in rq}) == 1
    assert [r["recipient"].split("@")[0] for r in rq] == ["reject", "code", "defer", "prepend", "alice"]
    # persistent: one connection carried all five requests
    assert policy.connections == 1
    assert "reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <reject@example.com>" in s.log_text()


def test_new_message_new_instance(sluiced_factory, policy):
    s = start(sluiced_factory, "127.0.0.1:%d" % policy.port)
    c = session(s)
    for _ in range(2):
        c.cmd("MAIL FROM:<s@example.net>")
        c.cmd("RCPT TO:<alice@example.com>")
        c.cmd("RSET")
    assert len({r["instance"] for r in policy.requests}) == 2


def test_server_down_gives_default_action(sluiced_factory):
    port = free_port()   # nobody listens here
    s = start(sluiced_factory, "inet:127.0.0.1:%d" % port, "smtpd_policy_service_retry_delay = 0s")
    c = session(s)
    c.cmd("MAIL FROM:<s@example.net>")
    code, text = c.cmd("RCPT TO:<alice@example.com>")
    assert code == 451 and "4.3.5" in text and "Server configuration problem" in text
    assert "problem talking to the policy server" in s.log_text()


def test_custom_default_action(sluiced_factory):
    port = free_port()
    s = start(sluiced_factory, "inet:127.0.0.1:%d" % port,
              "smtpd_policy_service_retry_delay = 0s\nsmtpd_policy_service_default_action = DUNNO")
    c = session(s)
    c.cmd("MAIL FROM:<s@example.net>")
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250


def test_slow_server_times_out_and_others_carry_on(sluiced_factory):
    slow = PolicyServer(delay=3.0)
    try:
        s = start(sluiced_factory, "inet:127.0.0.1:%d" % slow.port,
                  "smtpd_policy_service_timeout = 1s\nsmtpd_policy_service_try_limit = 1")
        c = session(s)
        c.cmd("MAIL FROM:<s@example.net>")
        c.send(b"RCPT TO:<alice@example.com>\r\n")
        # meanwhile another session is served at once (NOOP does not need the policy)
        other = session(s)
        t0 = time.monotonic()
        assert other.cmd("NOOP")[0] == 250
        assert time.monotonic() - t0 < 1.0
        code, text = c.reply()
        assert code == 451 and "4.3.5" in text
    finally:
        slow.stop()


def test_garbage_reply_gives_default_action(sluiced_factory):
    bad = PolicyServer(garbage=True)
    try:
        s = start(sluiced_factory, "inet:127.0.0.1:%d" % bad.port, "smtpd_policy_service_retry_delay = 0s")
        c = session(s)
        c.cmd("MAIL FROM:<s@example.net>")
        assert c.cmd("RCPT TO:<alice@example.com>")[0] == 451
    finally:
        bad.stop()


def test_unix_socket_service(sluiced_factory, tmp_path):
    path = str(tmp_path / "policy.sock")
    requests = []

    class H(socketserver.StreamRequestHandler):
        def handle(self):
            while True:
                attrs = {}
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    if line == b"\n":
                        break
                    k, _, v = line.decode().rstrip("\n").partition("=")
                    attrs[k] = v
                requests.append(attrs)
                self.wfile.write(b"action=REJECT unix says no\n\n")

    srv = socketserver.ThreadingUnixStreamServer(path, H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        s = start(sluiced_factory, "unix:" + path)
        c = session(s)
        c.cmd("MAIL FROM:<s@example.net>")
        code, text = c.cmd("RCPT TO:<alice@example.com>")
        assert code == 554 and "unix says no" in text
        assert requests and requests[0]["recipient"] == "alice@example.com"
    finally:
        srv.shutdown()
        srv.server_close()


def test_bad_service_address_is_a_config_error(sluiced_factory):
    s = sluiced_factory("smtpd_recipient_restrictions = check_policy_service nowhere")
    code, out = s.start(expect_fail=True)
    assert code != 0 and "check_policy_service" in out and "bad service address" in out
