"""Real third-party milters behind sluiced: OpenDKIM (Debian's) signs and verifies."""

import re
import subprocess

import dkim
import pytest

from conftest import SmtpRaw, free_port, wait_for
from dnsserver import DnsServer
from postfix_dkim_harness import milter_socket_up

OPENDKIM = "/usr/sbin/opendkim"


def txt_record(path):
    """The TXT value of an opendkim-genkey zone fragment (quoted strings joined)."""
    return "".join(re.findall(r'"([^"]*)"', open(path).read()))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("dkimkeys")
    subprocess.run(["opendkim-genkey", "-D", str(d), "-d", "example.com", "-s", "sel", "-b", "2048"],
                   check=True, capture_output=True)
    return d


class OpenDKIM:
    def __init__(self, tmp, keys, socket_spec, mode="sv", resolver_conf=None):
        self.tmp = tmp
        conf = tmp / "opendkim.conf"
        lines = ["Syslog no", "Background no", "Mode " + mode, "Domain example.com", "Selector sel",
                 "KeyFile %s/sel.private" % keys, "Canonicalization relaxed/relaxed",
                 "SignatureAlgorithm rsa-sha256", "Socket " + socket_spec, "PidFile %s/opendkim.pid" % tmp,
                 "UserID root", "RequireSafeKeys no", "InternalHosts 127.0.0.1", "AuthservID mx.test",
                 "AlwaysAddARHeader yes"]
        if resolver_conf:
            lines.append("ResolverConfiguration " + str(resolver_conf))
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", str(conf)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.socket_spec = socket_spec
        wait_for(self._up, what="opendkim listening")

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("opendkim exited: " + self.proc.stdout.read().decode(errors="replace"))
        return milter_socket_up(self.socket_spec)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def send(s, sender, rcpt, body, source=None):
    c = SmtpRaw("127.0.0.1", s.port, source=source)
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % rcpt)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(body.replace(b"\n", b"\r\n") + b".\r\n")
    code, text = c.reply()
    c.cmd("QUIT")
    return code, text


def test_opendkim_signs_mail_from_mynetworks(sluiced_factory, keys, tmp_path):
    od = OpenDKIM(tmp_path, keys, "inet:%d@127.0.0.1" % free_port())
    try:
        s = sluiced_factory("smtpd_milters = " + od.socket_spec).start()
        code, text = send(s, "alice@example.com", "bob@example.com",
                          b"From: Alice <alice@example.com>\nTo: bob@example.com\nSubject: signed\n"
                          b"Date: Sat, 21 Nov 2026 12:00:00 +0000\nMessage-ID: <sig1@example.com>\n\nhello\n")
        assert code == 250, text
        (p,) = s.wait_delivered("bob", 1)
        data = open(p, "rb").read()
        assert b"DKIM-Signature:" in data
        # verify with dkimpy, serving our public key as the DNS record (our trace headers on top
        # are not signed and do not matter)
        rec = txt_record(keys / "sel.txt").encode()
        ok = dkim.verify(data.replace(b"\n", b"\r\n"),
                         dnsfunc=lambda name, timeout=5: rec if name == b"sel._domainkey.example.com." else b"")
        assert ok, data.decode(errors="replace")
    finally:
        od.stop()


def test_opendkim_verifies_inbound_and_adds_authentication_results(sluiced_factory, keys, tmp_path):
    rec = txt_record(keys / "sel.txt")
    # the TXT string split into <=255-byte chunks for the zone file
    chunks = " ".join('"%s"' % rec[i:i + 250] for i in range(0, len(rec), 250))
    with DnsServer("sel._domainkey.example.com. 300 IN TXT %s\n" % chunks) as dns:
        ub = tmp_path / "libunbound.conf"
        ub.write_text("server:\n  do-not-query-localhost: no\n  trust-anchor-signaling: no\n"
                      "forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@%d\n" % dns.port)
        od = OpenDKIM(tmp_path, keys, "unix:%s/od.sock" % tmp_path, resolver_conf=ub)
        try:
            s = sluiced_factory("smtpd_milters = " + od.socket_spec + "\nmynetworks = 127.0.0.1/32").start()
            msg = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: inbound\r\n"
                   b"Message-ID: <in1@example.com>\r\n\r\nsigned by the sender\r\n")
            signed = dkim.sign(msg, b"sel", b"example.com", open(keys / "sel.private", "rb").read(),
                               include_headers=[b"From", b"To", b"Subject", b"Message-ID"])
            good = (signed + msg).replace(b"\r\n", b"\n")
            bad = (signed + msg.replace(b"signed by the sender", b"tampered body")).replace(b"\r\n", b"\n")
            # from outside mynetworks OpenDKIM verifies instead of signing
            assert send(s, "alice@example.com", "bob@example.com", good, source="127.0.0.2")[0] == 250
            assert send(s, "alice@example.com", "carol@example.com", bad, source="127.0.0.2")[0] == 250
            (pg,) = s.wait_delivered("bob", 1)
            (pb,) = s.wait_delivered("carol", 1)
            hg = open(pg, "rb").read().split(b"\n\n")[0].decode()
            hb = open(pb, "rb").read().split(b"\n\n")[0].decode()
            assert re.search(r"Authentication-Results: mx.test;\s+dkim=pass", hg), hg
            assert re.search(r"Authentication-Results: mx.test;\s+dkim=fail", hb), hb
        finally:
            od.stop()
