"""sluice-spf end to end over the Postfix policy protocol: the real daemon on
loopback (inet and unix sockets, spawn mode on pipes), DNS from unbound on
loopback serving a small zone. Replies, options, one result per message,
malformed input, concurrency, reload and stop."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
import spf_driver  # noqa: E402
from spf_driver import SpfDaemon, policy, policy_bytes, read_reply  # noqa: E402
from dnsserver import DnsServer  # noqa: E402

ZONE = """
example.com. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 include:_inc.example.com -all"
_inc.example.com. 300 IN TXT "v=spf1 a:relay.example.com ~all"
relay.example.com. 300 IN A 203.0.113.9
soft.example.com. 300 IN TXT "v=spf1 ~all"
neutral.example.com. 300 IN TXT "v=spf1 ?all"
perm.example.com. 300 IN TXT "v=spf1 ip4:192.0.2.1 bogus:thing -all"
exp.example.com. 300 IN TXT "v=spf1 -all exp=why.example.com"
why.example.com. 300 IN TXT "Go away %{i}"
mx.example.com. 300 IN TXT "v=spf1 a -all"
mx.example.com. 300 IN A 192.0.2.5
badhelo.example.net. 300 IN TXT "v=spf1 -all"
wl.example.org. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
nospf.example.com. 300 IN A 192.0.2.99
slow.example.com. 300 IN TXT "v=spf1 include:t.timeout.example.com -all"
"""


@pytest.fixture(scope="module")
def dns():
    with DnsServer(ZONE, deny=["timeout.example.com"]) as d:
        yield d


@pytest.fixture
def spfd(tmp_path, dns):
    started = []

    def make(extra="", **kw):
        d = SpfDaemon(tmp_path, dns.addr, extra, **kw).start()
        started.append(d)
        return d

    yield make
    for d in started:
        assert d.stop() == 0, d.log_text()[-2000:]


def req(ip="192.0.2.7", sender="joe@example.com", helo="client.example.org", **kw):
    a = {"client_address": ip, "sender": sender, "helo_name": helo,
         "recipient": "sue@example.net", "queue_id": "4ABC123", "instance": "i%d" % time.monotonic_ns()}
    a.update(kw)
    return a


def test_pass_prepends_received_spf(spfd):
    d = spfd()
    act = policy(d.port, req())
    assert act == ("PREPEND Received-SPF: Pass (receiver.com: domain of example.com designates "
                   "192.0.2.7 as permitted sender) client-ip=192.0.2.7; "
                   "envelope-from=\"joe@example.com\"; helo=client.example.org; receiver=receiver.com; "
                   "mechanism=\"ip4:192.0.2.0/24\"; identity=mailfrom")
    log = d.log_text()
    assert "4ABC123: spf: identity=joe@example.com, scope=mailfrom, client=[192.0.2.7]" in log
    assert "result=pass, mechanism=ip4:192.0.2.0/24" in log and "time_ms=" in log and "lookups=" in log
    # issue 13's common keys at the end of the line (docs/EVENTS.md)
    assert re.search(r"instance=i\d+, filter=spf, client_ip=192\.0\.2\.7, sender=joe@example\.com, "
                     r"recipient=sue@example\.net, reason_code=spf_pass, ms=\d+$", log, re.M), log


def test_fail_rejects_with_explanation(spfd):
    d = spfd()
    act = policy(d.port, req(ip="198.51.100.7", helo="client.example.org"))
    assert act.startswith("550 5.7.23 Message rejected due to: 198.51.100.7 is not one of "
                          "example.com's designated mail servers. Please see http://www.openspf.net/Why?s=mfrom;")
    act = policy(d.port, req(ip="198.51.100.7", sender="a@exp.example.com", helo="client.example.org"))
    assert act.startswith("550 5.7.23 Message rejected due to: Go away 198.51.100.7.")


def test_include_a_and_softfail(spfd):
    d = spfd()
    assert "Pass" in policy(d.port, req(ip="203.0.113.9", helo="relay.example.org"))
    act = policy(d.port, req(ip="203.0.113.10", sender="x@soft.example.com", helo="relay.example.org"))
    assert act.startswith("PREPEND Received-SPF: SoftFail (receiver.com: transitioning domain of soft.example.com")
    d2 = spfd("spf_mail_from_reject = Softfail\n")
    assert policy(d2.port, req(ip="203.0.113.10", sender="x@soft.example.com",
                               helo="relay.example.org")).startswith("550 5.7.23")
    d3 = spfd("spf_mail_from_reject = SPF_Not_Pass\n")
    assert policy(d3.port, req(ip="203.0.113.10", sender="x@neutral.example.com",
                               helo="relay.example.org")).startswith("550 5.7.23")
    d4 = spfd("spf_mail_from_reject = False\n")
    assert policy(d4.port, req(ip="198.51.100.7", helo="client.example.org")).startswith(
        "PREPEND Received-SPF: Fail")


def test_helo_fail_rejects_first(spfd):
    d = spfd()
    act = policy(d.port, req(ip="198.51.100.7", helo="badhelo.example.net", sender="a@soft.example.com"))
    assert act.startswith("550 5.7.23 Message rejected due to: 198.51.100.7 is not one of "
                          "badhelo.example.net's designated mail servers")
    assert "s=helo;id=badhelo.example.net" in act
    d2 = spfd("spf_helo_reject = Null\n")  # HELO fail counts only for the null sender
    assert policy(d2.port, req(ip="198.51.100.7", helo="badhelo.example.net",
                               sender="a@soft.example.com")).startswith("PREPEND Received-SPF: SoftFail")
    act = policy(d2.port, req(ip="198.51.100.7", helo="badhelo.example.net", sender=""))
    assert act.startswith("550 5.7.23")
    d3 = spfd("spf_helo_reject = No_Check\n")
    assert policy(d3.port, req(ip="198.51.100.7", helo="badhelo.example.net",
                               sender="a@soft.example.com")).startswith("PREPEND Received-SPF: SoftFail")


def test_null_sender_uses_helo(spfd):
    d = spfd()
    act = policy(d.port, req(ip="192.0.2.5", sender="", helo="mx.example.com"))
    assert act.startswith("PREPEND Received-SPF: Pass (receiver.com: domain of mx.example.com designates "
                          "192.0.2.5 as permitted sender) client-ip=192.0.2.5; helo=mx.example.com;")
    assert act.endswith("identity=helo")


def test_permerror_and_temperror_options(spfd):
    d = spfd()
    assert policy(d.port, req(ip="192.0.2.50", sender="a@perm.example.com", helo="h.example.org")
                  ).startswith("PREPEND Received-SPF: PermError (receiver.com: permanent error")
    d2 = spfd("spf_permerror_reject = yes\nspf_temperror_defer = yes\n")
    act = policy(d2.port, req(ip="192.0.2.50", sender="a@perm.example.com", helo="h.example.org"))
    assert act.startswith("550 5.7.24 Message rejected due to: SPF Permanent Error:")
    act = policy(d2.port, req(ip="192.0.2.50", sender="a@slow.example.com", helo="h.example.org"))
    assert act.startswith("DEFER_IF_PERMIT 4.7.24 Message deferred due to: SPF Temporary Error:")


def test_lookup_time_deadline(spfd):
    d = spfd("spf_lookup_time = 1s\ndns_timeout = 5s\nspf_temperror_defer = yes\n")
    t = time.monotonic()
    act = policy(d.port, req(ip="192.0.2.50", sender="a@slow.example.com", helo="h.example.org"))
    assert time.monotonic() - t < 4
    assert act.startswith("DEFER_IF_PERMIT 4.7.24") and "spf_lookup_time" in act


def test_none_and_ar_header(spfd):
    d = spfd("spf_header_type = AR\nspf_authserv_id = mx.test\n")
    act = policy(d.port, req(ip="192.0.2.7"))
    assert act.startswith("PREPEND Authentication-Results: mx.test; spf=pass (domain of example.com "
                          "designates 192.0.2.7 as permitted sender) smtp.mailfrom=example.com (")
    act = policy(d.port, req(ip="192.0.2.7", sender="a@nospf.example.com", helo="nospf.example.com"))
    assert act.startswith("PREPEND Authentication-Results: mx.test; spf=none")


def test_one_result_per_message(spfd):
    d = spfd()
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(policy_bytes(req(instance="m1")))
        assert read_reply(s).startswith("action=PREPEND Received-SPF: Pass")
        s.sendall(policy_bytes(req(instance="m1", recipient="bob@example.net")))
        assert read_reply(s) == "action=DUNNO\n\n"
        s.sendall(policy_bytes(req(instance="m2", ip="198.51.100.7", helo="c.example.org")))
        first = read_reply(s)
        assert first.startswith("action=550 5.7.23")
        s.sendall(policy_bytes(req(instance="m2", ip="198.51.100.7", helo="c.example.org")))
        assert read_reply(s) == first


def test_skips(spfd):
    d = spfd("spf_whitelist = 198.51.100.0/24\nspf_domain_whitelist = wl.example.org\n")
    act = policy(d.port, req(ip="127.0.0.1"))
    assert act.startswith("PREPEND X-Comment: SPF check N/A for local connections - client-ip=127.0.0.1;")
    assert policy(d.port, req(ip="::1")).startswith("PREPEND X-Comment: SPF check N/A")
    assert policy(d.port, req(ip="198.51.100.7")).startswith(
        "PREPEND X-Comment: SPF skipped for whitelisted relay - ")
    assert policy(d.port, req(ip="192.0.2.7", sasl_username="joe")) == "DUNNO"
    d2 = spfd("spf_domain_whitelist = wl.example.org\nspf_skip_sasl = no\n")
    assert policy(d2.port, req(ip="198.51.100.8", helo="c.example.org")).startswith(
        "PREPEND X-Comment: SPF skipped for whitelisted relay domain - ")
    assert policy(d2.port, req(ip="192.0.2.7", sasl_username="joe")).startswith("PREPEND Received-SPF: Pass")
    d3 = spfd("spf_reject_not_pass_domains = neutral.example.com\n")
    act = policy(d3.port, req(ip="192.0.2.7", sender="a@neutral.example.com", helo="c.example.org"))
    assert act.startswith("550 5.7.23 Message rejected due to: Receiver policy for SPF Neutral.")


def test_byte_at_a_time_and_pipelined(spfd):
    d = spfd()
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in policy_bytes(req()):
            s.send(bytes([b]))
        assert read_reply(s).startswith("action=PREPEND Received-SPF: Pass")
        # three requests in one write: three replies, in order
        s.sendall(policy_bytes(req(ip="198.51.100.7", helo="c.example.org")) + policy_bytes(req())
                  + policy_bytes(req(ip="127.0.0.1")))
        buf = b""
        while buf.count(b"\n\n") < 3:
            buf += s.recv(65536)
        replies = buf.decode().split("\n\n")[:3]
        assert replies[0].startswith("action=550 5.7.23")
        assert replies[1].startswith("action=PREPEND Received-SPF: Pass")
        assert replies[2].startswith("action=PREPEND X-Comment")


@pytest.mark.parametrize("junk", [
    b"request=smtpd_access_policy\nclient_address=192.0.2.7\nsender=joe@example.com\n",  # no blank line
    b"request=smtpd_access_policy\nclient_address=" + b"1" * 70000 + b"\n\n",              # oversized
    b"\x00\x01\x02\xff\xfe garbage \x00\n\n",                                                # binary junk
    b"no equals sign here\n\n",
    b"=value\n\n",
], ids=["no-blank-line", "oversized", "binary", "no-equals", "empty-name"])
def test_malformed_closes_without_reply(spfd, junk):
    d = spfd()
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            assert s.recv(4096) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while we were still sending: also no reply
    assert d.alive()
    assert policy(d.port, req()).startswith("PREPEND Received-SPF: Pass")
    assert "warning: spf:" in d.log_text()


def test_many_concurrent_clients(spfd):
    d = spfd()
    errors, counts = [], []

    def client(n):
        try:
            with socket.create_connection(("127.0.0.1", d.port), timeout=30) as s:
                for i in range(20):
                    ok = (i + n) % 2 == 0
                    s.sendall(policy_bytes(req(ip="192.0.2.%d" % (i + 1) if ok else "198.51.100.%d" % (i + 1),
                                               helo="c%d.example.org" % n)))
                    r = read_reply(s)
                    if not r.startswith("action=PREPEND Received-SPF: Pass" if ok else "action=550 5.7.23"):
                        errors.append(r)
                    counts.append(1)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(counts) == 1000


def test_unix_socket(spfd, tmp_path):
    path = str(tmp_path / "spf.sock")
    d = spfd(socket_spec="unix:" + path)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(policy_bytes(req()))
        assert read_reply(s).startswith("action=PREPEND Received-SPF: Pass")


def test_spawn_mode(tmp_path, dns):
    conf = spf_driver.write_conf(tmp_path, dns.addr)
    data = policy_bytes(req()) + policy_bytes(req(ip="198.51.100.7", helo="c.example.org"))
    p = subprocess.run([spf_driver.SPF, "-c", conf, "-s"], input=data, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode().split("\n\n")
    assert out[0].startswith("action=PREPEND Received-SPF: Pass")
    assert out[1].startswith("action=550 5.7.23")
    # spawn mode on a socketpair, as Postfix's spawn(8) gives it
    a, b = socket.socketpair()
    proc = subprocess.Popen([spf_driver.SPF, "-c", conf, "-s"], stdin=b, stdout=b)
    b.close()
    a.sendall(policy_bytes(req()))
    assert read_reply(a).startswith("action=PREPEND Received-SPF: Pass")
    a.sendall(b"junk without equals\n\n")
    a.settimeout(10)
    assert a.recv(100) == b""
    assert proc.wait(timeout=10) == 0
    a.close()


def test_reload_and_check_mode(spfd, tmp_path, dns):
    d = spfd()
    assert policy(d.port, req(ip="203.0.113.10", sender="x@soft.example.com",
                              helo="r.example.org")).startswith("PREPEND")
    with open(d.conf, "a") as f:
        f.write("spf_mail_from_reject = Softfail\n")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "configuration reloaded" not in d.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert policy(d.port, req(ip="203.0.113.10", sender="x@soft.example.com",
                              helo="r.example.org")).startswith("550 5.7.23")
    assert subprocess.run([spf_driver.SPF, "-c", d.conf, "-n"]).returncode == 0
    bad = spf_driver.write_conf(tmp_path, dns.addr, "spf_helo_reject = Maybe\n", name="bad.conf")
    p = subprocess.run([spf_driver.SPF, "-c", bad, "-n"], capture_output=True)
    assert p.returncode == 1 and b"spf_helo_reject" in p.stderr
    bad2 = spf_driver.write_conf(tmp_path, dns.addr, "spf_skip_addresses = 300.1.1.1/8\n", name="bad2.conf")
    assert subprocess.run([spf_driver.SPF, "-c", bad2, "-n"], capture_output=True).returncode == 1


def test_graceful_stop_answers_in_flight(spfd):
    d = spfd("dns_timeout = 2s\n")
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(policy_bytes(req(ip="192.0.2.50", sender="a@slow.example.com", helo="h.example.org")))
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        r = read_reply(s)
        assert r.startswith("action=PREPEND Received-SPF: TempError")
    assert d.proc.wait(timeout=10) == 0
