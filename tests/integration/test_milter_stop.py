"""sluice-dkim, sluice-dmarc and sluice-spam stop on SIGTERM through
lib/milterd's signal thread: a message in flight when the signal comes is
finished with its normal reply (the MTA side here is a raw milter-protocol
client, so the test decides when the signal comes: after the headers,
before the body and the end of message), the stop is logged ("<name>:
SIGTERM: stopping (1 messages in flight)", then the daemon's own stop line),
the process exits with status 0 and its unix socket is gone. A SIGTERM with
nothing in flight ends the process too (waited for by PID, no time
asserted)."""

import os
import signal
import socket
import struct

import pytest

from conftest import wait_for
from dnsserver import DnsServer
from filterd import BIN, FilterDaemon
from test_spam_sluiced import SluiceSpam

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(BIN, "sluice-" + m)) for m in ("dkim", "dmarc", "spam")),
    reason="the milters are not built")

# reject.example: SPF passes only for 127.0.0.2, DMARC p=reject
ZONE = """reject.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.reject.example. 300 IN TXT "v=DMARC1; p=reject"
"""

EXIT_TIMEOUT = 60   # generous: a loaded machine, ASan; never asserted as a time

# SMFIC_* commands (libmilter's mfdef.h) and the replies that end a command
OPTNEG, CONNECT, MACRO, MAIL, RCPT, HEADER, EOH, BODY, EOM, QUIT = b"OCDMRLNBEQ"
FINAL = set(b"acrtyd")  # accept, continue, reject, tempfail, replycode, discard


class MilterClient:
    """The MTA side of the milter protocol (version 6), offering no protocol
    flags: the milter must answer every command but the macros. Replies are
    (command byte, data)."""

    def __init__(self, spec):
        if spec.startswith("unix:"):
            self.s = socket.socket(socket.AF_UNIX)
            self.s.connect(spec[5:])
        else:
            host, port = spec.split(":")[1:]
            self.s = socket.create_connection((host, int(port)))
        self.s.settimeout(EXIT_TIMEOUT)

    def send(self, cmd, data=b""):
        self.s.sendall(struct.pack(">I", len(data) + 1) + bytes([cmd]) + data)

    def _exact(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise AssertionError("milter closed the connection (after %r)" % b)
            b += chunk
        return b

    def read(self):
        n = struct.unpack(">I", self._exact(4))[0]
        p = self._exact(n)
        return p[0], p[1:]

    def call(self, cmd, data=b""):
        """One command; -> its final reply, after any modifications (.mods)."""
        self.send(cmd, data)
        self.mods = []
        while True:
            r = self.read()
            if r[0] in FINAL:
                return r
            self.mods.append(r)

    def begin(self, ip, sender, headers):
        """Negotiation, connection from ip, MAIL, RCPT, the headers and their end."""
        self.send(OPTNEG, struct.pack(">III", 6, 0x1FF, 0))
        r = self.read()
        assert r[0] == OPTNEG, r
        assert self.call(CONNECT, b"client.test\0" + b"4" + struct.pack(">H", 4242) +
                         ip.encode() + b"\0")[0] == ord("c")
        self.send(MACRO, bytes([MAIL]) + b"i\0STOPQID1\0")
        assert self.call(MAIL, b"<" + sender.encode() + b">\0")[0] == ord("c")
        assert self.call(RCPT, b"<bob@example.com>\0")[0] == ord("c")
        for name, value in headers:
            assert self.call(HEADER, name.encode() + b"\0" + value.encode() + b"\0")[0] == ord("c")
        assert self.call(EOH)[0] == ord("c")

    def finish(self, body):
        """The body and the end of message; -> the final reply (modifications in .mods)."""
        assert self.call(BODY, body)[0] == ord("c")
        return self.call(EOM)

    def close(self):
        try:
            self.send(QUIT)
        except OSError:
            pass
        self.s.close()


def headers_for(sender, subject):
    return [("From", sender), ("To", "bob@example.com"), ("Subject", subject),
            ("Date", "Sat, 21 Nov 2026 12:00:00 +0000"), ("Message-ID", "<stop1@%s>" % sender.split("@")[1])]


def log_text(d):
    return open(d.log, errors="replace").read() if os.path.exists(d.log) else ""


@pytest.fixture(scope="module")
def dns():
    with DnsServer(ZONE) as d:
        yield d


def daemon(name, tmp, dns):
    if name == "spam":
        return SluiceSpam(tmp, "mynetworks = 127.0.0.1/32\n", "unix")
    return FilterDaemon(name, tmp, "", "unix", dns=dns, conf_name=name + ".conf")


# per milter: the client address, the envelope sender/From, the body, and what
# the normal end-of-message reply is (reply command, a piece of its data or
# of one modification)
CASES = {
    # verifying (not an internal host), unsigned: an Authentication-Results header
    "dkim": ("192.0.2.1", "olga@example.org", b"Hello.\r\n", ord("c"), b"dkim=none"),
    # SPF fails for 127.0.0.3 and nothing is signed: DMARC p=reject
    "dmarc": ("127.0.0.3", "eve@reject.example", b"Hello.\r\n", ord("y"), b"550"),
    # the test rules' T_REJECT_ME (score 20)
    "spam": ("192.0.2.1", "olga@example.org", b"reject-me-please\r\n", ord("y"), b"550"),
}

STOP_LINE = {"dkim": "dkim: stopped; public keys decoded", "dmarc": "dmarc: stopped (0 messages unfinished)",
             "spam": "spam: stopped"}


@pytest.mark.parametrize("name", ["dkim", "dmarc", "spam"])
def test_message_in_flight_finishes_then_exit_0(name, tmp_path, dns):
    d = daemon(name, tmp_path, dns).start()
    try:
        ip, sender, body, final, piece = CASES[name]
        c = MilterClient(d.spec)
        c.begin(ip, sender, headers_for(sender, "stop test"))
        d.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "%s: SIGTERM: stopping (1 messages in flight)" % name in log_text(d),
                 EXIT_TIMEOUT, "%s's stopping line" % name)
        # a new client finds no socket: no new sessions once stopping
        assert not os.path.exists(d.sock_path)
        assert d.proc.poll() is None
        r = c.finish(body)
        assert r[0] == final, (r, c.mods)
        assert piece in r[1] + b"".join(m[1] for m in c.mods), (r, c.mods)
        c.close()
        assert d.proc.wait(EXIT_TIMEOUT) == 0, d.output()
        text = log_text(d)
        assert STOP_LINE[name] in text, text
        assert text.index("SIGTERM: stopping") < text.index(STOP_LINE[name])
    finally:
        d.stop()


@pytest.mark.parametrize("name", ["dkim", "dmarc", "spam"])
def test_sigterm_idle_exits_0(name, tmp_path, dns):
    d = daemon(name, tmp_path, dns).start()
    try:
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(EXIT_TIMEOUT) == 0, d.output()
        text = log_text(d)
        assert "%s: SIGTERM: stopping (0 messages in flight)" % name in text, text
        assert STOP_LINE[name] in text, text
        assert not os.path.exists(d.sock_path)
    finally:
        d.stop()
