"""postfix-policyd-spf-python and OpenDKIM + OpenDMARC behind sluiced, with the
system resolver pointed at our test zones (see conftest.py)."""

import os
import re
import socketserver
import subprocess
import threading

import dkim
import pytest

from conftest import SmtpRaw, free_port, wait_for
from dnsserver import DnsServer
from test_milter_opendkim import OpenDKIM, txt_record


def send(s, sender, rcpt, body, source):
    c = SmtpRaw("127.0.0.1", s.port, source=source)
    c.reply()
    c.cmd("EHLO client.example.org")
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    code, text = c.cmd("RCPT TO:<%s>" % rcpt)
    if code != 250:
        return "RCPT", code, text
    assert c.cmd("DATA")[0] == 354
    c.send(body.replace(b"\n", b"\r\n") + b".\r\n")
    code, text = c.reply()
    c.cmd("QUIT")
    return "DATA", code, text


class SpawnPolicy:
    """Like Postfix's spawn(8): one policyd-spf process per connection, on its stdin/stdout."""

    def __init__(self, conf_path):
        outer = self

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                p = subprocess.Popen(["/usr/bin/policyd-spf", conf_path], stdin=self.request.fileno(),
                                     stdout=self.request.fileno(), stderr=subprocess.DEVNULL)
                p.wait()

        class S(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = S(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_policyd_spf_as_check_policy_service(sluiced_factory, tmp_path):
    zone = ('example.org. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"\n'
            'client.example.org. 300 IN A 127.0.0.2\n')
    conf = tmp_path / "policyd-spf.conf"
    conf.write_text("debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\nMail_From_reject = Fail\n"
                    "skip_addresses = 192.0.2.255/32\nHeader_Type = SPF\n")
    with DnsServer(zone, port=53):
        pol = SpawnPolicy(str(conf))
        try:
            s = sluiced_factory("smtpd_recipient_restrictions = reject_unauth_destination, "
                                "check_policy_service inet:127.0.0.1:%d" % pol.port).start()
            where, code, text = send(s, "joe@example.org", "alice@example.com",
                                     b"Subject: spf pass\n\nhello\n", source="127.0.0.2")
            assert (where, code) == ("DATA", 250), text
            (p,) = s.wait_delivered("alice", 1)
            head = open(p, "rb").read().split(b"\n\n")[0].decode()
            assert re.search(r"^Received-SPF: Pass \(mailfrom\) identity=mailfrom; client-ip=127\.0\.0\.2",
                             head, re.M), head
            where, code, text = send(s, "joe@example.org", "bob@example.com",
                                     b"Subject: spf fail\n\nhello\n", source="127.0.0.3")
            assert (where, code) == ("RCPT", 550), text
            assert "5.7.23" in text and "SPF fail" in text
        finally:
            pol.stop()


def test_opendmarc_sees_opendkim_results_and_rejects_spoofing(sluiced_factory, tmp_path):
    keydir = tmp_path / "keys"
    keydir.mkdir()
    subprocess.run(["opendkim-genkey", "-D", str(keydir), "-d", "example.org", "-s", "sel", "-b", "2048"],
                   check=True, capture_output=True)
    rec = txt_record(keydir / "sel.txt")
    chunks = " ".join('"%s"' % rec[i:i + 250] for i in range(0, len(rec), 250))
    zone = ("sel._domainkey.example.org. 300 IN TXT %s\n" % chunks +
            '_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"\n'
            'example.org. 300 IN TXT "v=spf1 -all"\n'
            'example.org. 300 IN MX 10 mx.example.org.\n'
            'mx.example.org. 300 IN A 192.0.2.1\n')
    with DnsServer(zone, port=53):
        odk = tmp_path / "odk"
        odk.mkdir()
        ub = odk / "libunbound.conf"   # OpenDKIM resolves with libunbound, not resolv.conf
        ub.write_text("server:\n  do-not-query-localhost: no\n"
                      "forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@53\n")
        od = OpenDKIM(odk, keydir, "unix:%s/opendkim.sock" % odk, mode="v", resolver_conf=ub)
        ignore = tmp_path / "ignore-hosts"
        ignore.write_text("192.0.2.200\n")
        dm_conf = tmp_path / "opendmarc.conf"
        dm_sock = tmp_path / "opendmarc.sock"
        dm_conf.write_text("\n".join([
            "AuthservID mx.test", "TrustedAuthservIDs mx.test", "RejectFailures true",
            "SPFIgnoreResults true", "SPFSelfValidate false", "IgnoreHosts %s" % ignore, "Socket local:%s" % dm_sock,
            "PidFile %s/opendmarc.pid" % tmp_path, "UserID root", "Syslog false", "Background false",
            "RequiredHeaders false", "FailureReports false"]) + "\n")
        dm = subprocess.Popen(["/usr/sbin/opendmarc", "-f", "-c", str(dm_conf)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: os.path.exists(dm_sock) or dm.poll() is not None, what="opendmarc socket")
            assert dm.poll() is None, dm.stdout.read()
            s = sluiced_factory("myhostname = mx.test\nsmtpd_milters = %s, unix:%s\nmynetworks = 127.0.0.1/32"
                                % (od.socket_spec, dm_sock)).start()
            msg = (b"From: Joe <joe@example.org>\r\nTo: alice@example.com\r\nSubject: aligned\r\n"
                   b"Date: Sat, 21 Nov 2026 12:00:00 +0000\r\nMessage-ID: <dm1@example.org>\r\n\r\nhi\r\n")
            sig = dkim.sign(msg, b"sel", b"example.org", open(keydir / "sel.private", "rb").read(),
                            include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"])
            where, code, text = send(s, "joe@example.org", "alice@example.com",
                                     (sig + msg).replace(b"\r\n", b"\n"), source="127.0.0.2")
            assert (where, code) == ("DATA", 250), text
            (p,) = s.wait_delivered("alice", 1)
            head = open(p, "rb").read().split(b"\n\n")[0].decode()
            # OpenDMARC passed the message only because it read OpenDKIM's dkim=pass result
            assert re.search(r"Authentication-Results: mx.test;\s+dkim=pass", head), head
            assert re.search(r"Authentication-Results: mx.test;\s+dmarc=pass", head), head
            spoof = (b"From: Boss <ceo@example.org>\nTo: bob@example.com\nSubject: wire money\n"
                     b"Message-ID: <dm2@example.org>\n\npay now\n")
            where, code, text = send(s, "ceo@example.org", "bob@example.com", spoof, source="127.0.0.2")
            assert (where, code) == ("DATA", 550), text
            assert s.delivered("bob") == []
        finally:
            od.stop()
            dm.terminate()
            try:
                dm.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dm.kill()
