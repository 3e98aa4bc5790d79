"""Policy `instance` behind the REAL policyd-spf (Debian's
postfix-policyd-spf-python): policyd-spf caches its verdict per `instance`,
so sluiced must never send the same instance for two messages (issue 14).

policyd-spf runs as Postfix's spawn(8) would run it: one process per policy
connection, on its stdin/stdout. It uses the system resolver only; here its
dnspython default resolver is pointed at our DNS server on loopback (the
same idea as tests/netns/ bind-mounting resolv.conf, without a namespace):
policyd-spf's own code is unchanged."""

import os
import socketserver
import subprocess
import sys
import threading

import pytest

from conftest import REPO, SmtpRaw

sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
from dnsserver import DnsServer  # noqa: E402

POLICYD_SPF = "/usr/bin/policyd-spf"
pytestmark = pytest.mark.skipif(not os.path.exists(POLICYD_SPF), reason="needs postfix-policyd-spf-python")

ZONE = ('example.org. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"\n'
        'client.example.org. 300 IN A 127.0.0.2\n')

# Runs /usr/bin/policyd-spf unchanged, with dnspython's default resolver on our server.
LAUNCH = """
import runpy, sys
import dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv[1])
dns.resolver.default_resolver = r
sys.argv = ["policyd-spf", sys.argv[2]]
runpy.run_path("%s", run_name="__main__")
""" % POLICYD_SPF


class SpawnPolicyd:
    """Like Postfix's spawn(8): one policyd-spf per connection, on its stdin/stdout."""

    def __init__(self, conf_path, dns_port):
        self.connections = 0
        outer = self

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                outer.connections += 1
                p = subprocess.Popen(["/usr/bin/python3", "-c", LAUNCH, str(dns_port), conf_path],
                                     stdin=self.request.fileno(), stdout=self.request.fileno(),
                                     stderr=subprocess.DEVNULL)
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


def session(s, sender, rcpt, source):
    """One SMTP session from source: MAIL, RCPT (and DATA if accepted), QUIT."""
    c = SmtpRaw("127.0.0.1", s.port, source=source)
    assert c.reply()[0] == 220
    c.cmd("EHLO client.example.org")
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    code, text = c.cmd("RCPT TO:<%s>" % rcpt)
    if code == 250:
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: instance\r\n\r\nhello\r\n.\r\n")
        code, text = c.reply()
    c.cmd("QUIT")
    return code, text


@pytest.fixture
def policyd(tmp_path):
    conf = tmp_path / "policyd-spf.conf"
    # skip_addresses: the default skips 127.0.0.0/8, where our clients are
    conf.write_text("debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\nMail_From_reject = Fail\n"
                    "skip_addresses = 192.0.2.255/32\nHeader_Type = SPF\n")
    with DnsServer(ZONE) as d:
        p = SpawnPolicyd(str(conf), d.port)
        yield p
        p.stop()


def test_fail_then_pass_over_one_policy_connection(sluiced_factory, policyd, monkeypatch):
    # ASan's quarantine keeps a freed session's address from being reused at
    # once, which hid the bug in the sanitizer build: reuse it as glibc does
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    # one receiver, so both sessions share its one policy connection (and
    # the second session may be allocated where the first one was)
    s = sluiced_factory("smtpd_workers = 1\n"
                        "smtpd_recipient_restrictions = reject_unauth_destination, "
                        "check_policy_service inet:127.0.0.1:%d\n" % policyd.port).start()
    for i in range(3):
        # 127.0.0.3 is not designated by example.org: SPF fail
        code, text = session(s, "joe@example.org", "bob@example.com", "127.0.0.3")
        assert code == 550 and "5.7.23" in text and "SPF fail" in text, (i, code, text)
        # 127.0.0.2 is: accepted, not the previous message's verdict
        code, text = session(s, "joe@example.org", "alice@example.com", "127.0.0.2")
        assert code == 250, (i, code, text)
    assert len(s.wait_delivered("alice", 3)) == 3
    assert policyd.connections == 1
