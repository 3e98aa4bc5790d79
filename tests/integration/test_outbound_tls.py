"""Outbound STARTTLS and AUTH: smtp_tls_security_level may/encrypt/verify
and AUTH PLAIN with smtp_sasl_password_maps, against a small threaded
Python SMTP server (ssl module, self-signed certificates from `openssl
req`) on 127.0.0.x behind the test DNS. Loopback only; the server threads
stop with the test."""

import base64
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import wait_for
from test_outbound import env, send  # noqa: F401 (env is a fixture)


def make_cert(d, name, cn):
    """Self-signed certificate for cn (also its subjectAltName); returns (cert, key)."""
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:" + cn],
                   check=True, capture_output=True)
    return cert, key


class TlsSink:
    """A minimal SMTP server: STARTTLS when given a cert, AUTH PLAIN (after
    TLS) when given credentials. Records every transaction."""

    def __init__(self, host, port, cert=None, auth=None, data_delay=0.0):
        self.data_delay = data_delay          # seconds before the reply to "."
        self.active = self.max_active = 0     # concurrent sessions
        self.lock = threading.Lock()
        self.ctx = None
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*cert)
        self.auth = auth                      # (user, password) or None
        self.messages = []                    # dicts: tls, auth, mail, rcpts, data
        self.events = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, conn):
        self.events.append("connect")
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        conn.settimeout(20)
        st = {"tls": False, "auth": None, "mail": None, "rcpts": [], "data": None}
        f = conn.makefile("rb")

        def out(line):
            conn.sendall(line.encode() + b"\r\n")

        try:
            out("220 sink.test ESMTP")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").rstrip("\r\n")
                verb = cmd.split(" ")[0].upper()
                self.events.append(cmd if not verb == "AUTH" else "AUTH")
                if verb in ("EHLO", "LHLO"):
                    ext = ["PIPELINING", "8BITMIME"]
                    if self.ctx and not st["tls"]:
                        ext.append("STARTTLS")
                    if self.auth and st["tls"]:
                        ext.append("AUTH PLAIN")
                    out("250-sink.test")
                    for e in ext[:-1]:
                        out("250-" + e)
                    out("250 " + ext[-1])
                elif verb == "STARTTLS" and self.ctx and not st["tls"]:
                    out("220 2.0.0 go ahead")
                    conn = self.ctx.wrap_socket(conn, server_side=True)
                    f = conn.makefile("rb")
                    st["tls"] = True
                    self.events.append("TLS " + conn.version())
                elif verb == "AUTH":
                    parts = cmd.split(" ")
                    raw = base64.b64decode(parts[2]) if len(parts) > 2 else b""
                    _, user, pw = (raw.split(b"\0") + [b"", b""])[:3]
                    if self.auth and (user.decode(), pw.decode()) == self.auth and st["tls"]:
                        st["auth"] = user.decode()
                        out("235 2.7.0 Authentication successful")
                    else:
                        out("535 5.7.8 Error: authentication failed")
                elif verb == "MAIL":
                    if self.auth and not st["auth"]:
                        out("530 5.7.0 Authentication required")
                        continue
                    st["mail"], st["rcpts"] = cmd, []
                    out("250 2.1.0 Ok")
                elif verb == "RCPT":
                    st["rcpts"].append(cmd)
                    out("250 2.1.5 Ok")
                elif verb == "DATA":
                    if not st["mail"] or not st["rcpts"]:
                        out("503 5.5.1 Error: need RCPT command")
                        continue
                    out("354 End data with <CR><LF>.<CR><LF>")
                    data = b""
                    while True:
                        ln = f.readline()
                        if not ln or ln == b".\r\n":
                            break
                        data += ln
                    if self.data_delay:
                        time.sleep(self.data_delay)
                    self.messages.append(dict(st, data=data))
                    st["mail"], st["rcpts"] = None, []
                    out("250 2.0.0 Ok: queued as X")
                elif verb == "RSET":
                    st["mail"], st["rcpts"] = None, []
                    out("250 2.0.0 Ok")
                elif verb == "QUIT":
                    out("221 2.0.0 Bye")
                    return
                else:
                    out("502 5.5.2 Error: command not recognized")
        except (OSError, ssl.SSLError, ValueError) as e:
            self.events.append("error %s" % e)
        finally:
            with self.lock:
                self.active -= 1
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def tls(env, tmp_path):
    sink_, mta, port = env
    sinks = []

    def start(host, **kw):
        s = TlsSink(host, port, **kw)
        sinks.append(s)
        return s

    yield start, mta, port, str(tmp_path)
    for s in sinks:
        s.stop()


def test_tls_may_uses_starttls(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.2", cert=make_cert(d, "mx1", "mx1.outside.test"))
    s = mta("smtp_tls_security_level = may")
    send(s, "alice@example.com", ["t1@outside.test"])
    wait_for(lambda: srv.messages, 30, "delivery (log: %s)" % s.log_text()[-2000:])
    m = srv.messages[0]
    assert m["tls"] is True
    assert b"Subject: hi" in m["data"]
    assert any(e.startswith("TLS TLSv1.") for e in srv.events)
    wait_for(lambda: "status=sent" in s.log_text(), 10, "sent log")


def test_tls_may_without_starttls_sends_plain(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.2")
    s = mta("smtp_tls_security_level = may")
    send(s, "alice@example.com", ["t2@outside.test"])
    wait_for(lambda: srv.messages, 30, "delivery (log: %s)" % s.log_text()[-2000:])
    assert srv.messages[0]["tls"] is False


def test_tls_encrypt_refuses_plaintext_peer(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.2")
    s = mta(only_mx1(port, d) + "smtp_tls_security_level = encrypt")
    send(s, "alice@example.com", ["t3@outside.test"])
    wait_for(lambda: "status=deferred" in s.log_text(), 30, "deferral (log: %s)" % s.log_text())
    assert "TLS is required, but was not offered by host mx1.outside.test[127.0.0.2]" in s.log_text()
    assert srv.messages == []
    assert "MAIL" not in " ".join(srv.events)


def test_tls_encrypt_with_starttls(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.2", cert=make_cert(d, "other", "other.test"))   # name not checked
    s = mta("smtp_tls_security_level = encrypt")
    send(s, "alice@example.com", ["t4@outside.test"])
    wait_for(lambda: srv.messages, 30, "delivery (log: %s)" % s.log_text()[-2000:])
    assert srv.messages[0]["tls"] is True


def test_tls_verify_accepts_matching_cert(tls):
    start, mta, port, d = tls
    cert = make_cert(d, "mx1", "mx1.outside.test")
    srv = start("127.0.0.2", cert=cert)
    s = mta(f"smtp_tls_security_level = verify\nsmtp_tls_CAfile = {cert[0]}")
    send(s, "alice@example.com", ["t5@outside.test"])
    wait_for(lambda: srv.messages, 30, "delivery (log: %s)" % s.log_text()[-2000:])
    assert srv.messages[0]["tls"] is True


def test_tls_verify_refuses_wrong_name(tls):
    start, mta, port, d = tls
    cert = make_cert(d, "wrong", "wrong.example")   # trusted, but for another name
    srv = start("127.0.0.2", cert=cert)
    s = mta(only_mx1(port, d) + f"smtp_tls_security_level = verify\nsmtp_tls_CAfile = {cert[0]}")
    send(s, "alice@example.com", ["t6@outside.test"])
    wait_for(lambda: "status=deferred" in s.log_text(), 30, "deferral (log: %s)" % s.log_text())
    log = s.log_text()
    assert "server certificate verification failed for mx1.outside.test[127.0.0.2]" in log
    assert srv.messages == []
    assert s.delivered("alice") == []          # deferred, not bounced


def test_tls_verify_refuses_untrusted_cert(tls):
    start, mta, port, d = tls
    ca = make_cert(d, "ca", "mx1.outside.test")
    srv = start("127.0.0.2", cert=make_cert(d, "mx1", "mx1.outside.test"))   # right name, other key
    s = mta(only_mx1(port, d) + f"smtp_tls_security_level = verify\nsmtp_tls_CAfile = {ca[0]}")
    send(s, "alice@example.com", ["t7@outside.test"])
    wait_for(lambda: "status=deferred" in s.log_text(), 30, "deferral (log: %s)" % s.log_text())
    assert "certificate verification failed" in s.log_text()
    assert srv.messages == []


def only_mx1(port, d):
    """transport_maps: outside.test to mx1 only (no fallback to mx2, whose
    "connection refused" would be the last reason)."""
    tm = os.path.join(d, "transport")
    with open(tm, "w") as f:
        f.write("outside.test smtp:[mx1.outside.test]:%d\n" % port)
    return f"transport_maps = texthash:{tm}\n"


def relay_conf(port, d, password):
    pm = os.path.join(d, "sasl_passwd")
    with open(pm, "w") as f:
        f.write("[relay.test]:%d relayuser:%s\n" % (port, password))
    return (f"relayhost = [relay.test]:{port}\nsmtp_tls_security_level = encrypt\n"
            f"smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = texthash:{pm}")


def test_auth_plain_to_relayhost(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.4", cert=make_cert(d, "relay", "relay.test"), auth=("relayuser", "s3cret"))
    s = mta(relay_conf(port, d, "s3cret"))
    send(s, "alice@example.com", ["a1@outside.test"])
    wait_for(lambda: srv.messages, 30, "relayed (log: %s)" % s.log_text()[-2000:])
    m = srv.messages[0]
    assert m["auth"] == "relayuser" and m["tls"] is True
    assert "relay=relay.test[127.0.0.4]:%d" % port in s.log_text()
    assert "s3cret" not in s.log_text()


def test_auth_wrong_password_defers(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.4", cert=make_cert(d, "relay", "relay.test"), auth=("relayuser", "s3cret"))
    s = mta(relay_conf(port, d, "b4dpw"))
    send(s, "alice@example.com", ["a2@outside.test"])
    wait_for(lambda: "status=deferred" in s.log_text(), 30, "deferral (log: %s)" % s.log_text())
    log = s.log_text()
    assert "SASL authentication failed; server relay.test[127.0.0.4]:%d said: 535" % port in log
    assert srv.messages == []
    assert "b4dpw" not in log


def test_connection_reuse_and_idle_close(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.2")
    s = mta()
    for k in range(3):
        send(s, "alice@example.com", ["reuse%d@outside.test" % k], body="Subject: m%d\n\nbody\n" % k)
        wait_for(lambda: len(srv.messages) == k + 1, 30, "message %d (log: %s)" % (k, s.log_text()[-2000:]))
    ev = srv.events
    assert ev.count("connect") == 1, ev
    assert sum(1 for e in ev if e.startswith("EHLO")) == 1, ev
    assert ev.count("RSET") == 2, ev
    # closed with QUIT after about 2 s idle
    wait_for(lambda: "QUIT" in srv.events, 10, "QUIT after idle (events: %s)" % srv.events)
    send(s, "alice@example.com", ["again@outside.test"])
    wait_for(lambda: len(srv.messages) == 4, 30, "message after the close")
    assert srv.events.count("connect") == 2


def test_destination_concurrency_limit(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.2", data_delay=0.3)
    s = mta("qmgr_delivery_threads = 4\ndefault_destination_concurrency_limit = 1")
    import smtplib
    with smtplib.SMTP(s.host, s.port, timeout=10) as c:
        for k in range(6):
            c.sendmail("alice@example.com", ["lim%d@outside.test" % k], b"Subject: x\r\n\r\nbody\r\n")
    wait_for(lambda: len(srv.messages) == 6, 30, "6 messages (log: %s)" % s.log_text()[-2000:])
    assert srv.max_active == 1, srv.events
    assert srv.events.count("connect") == 1        # serialised, so one reused session


def test_parallel_deliveries_without_limit(tls):
    start, mta, port, d = tls
    srv = start("127.0.0.2", data_delay=0.5)
    s = mta("qmgr_delivery_threads = 4")
    import smtplib
    with smtplib.SMTP(s.host, s.port, timeout=10) as c:
        for k in range(6):
            c.sendmail("alice@example.com", ["par%d@outside.test" % k], b"Subject: x\r\n\r\nbody\r\n")
    wait_for(lambda: len(srv.messages) == 6, 30, "6 messages (log: %s)" % s.log_text()[-2000:])
    assert 1 < srv.max_active <= 4, srv.events
