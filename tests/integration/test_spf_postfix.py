"""sluice-spf behind a REAL Postfix (Debian's 3.7, private instance in a temp
dir on loopback, tests/fixtures/postfix.py): check_policy_service over inet
and in spawn mode; SMTP clients bound to different loopback addresses
(127.0.0.x) whose senders' SPF records pass or fail them; rejected with
sluice-spf's text, or delivered with its Received-SPF header."""
import os
import shutil
import smtplib
import stat
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
import spf_driver  # noqa: E402
from dnsserver import DnsServer  # noqa: E402
from postfix import Postfix  # noqa: E402

if not os.path.exists("/usr/sbin/postfix") or os.geteuid() != 0:
    pytest.skip("needs Debian's postfix and root", allow_module_level=True)

ZONE = """
good.example.com. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
soft.example.com. 300 IN TXT "v=spf1 ip4:127.0.0.2 ~all"
mx2.example.org. 300 IN TXT "v=spf1 ip4:127.0.0.2 ip4:127.0.0.3 -all"
"""
MSG = "From: joe@good.example.com\r\nTo: sue@example.net\r\nSubject: spf test\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def dns():
    with DnsServer(ZONE) as d:
        yield d


def send(pf, source, sender, helo="mx2.example.org", rcpts=("sue@example.net",)):
    """One message from source address; returns (code, text) of the first refusal or (250, '')."""
    s = smtplib.SMTP("127.0.0.1", pf.port, source_address=(source, 0), timeout=30)
    try:
        s.helo(helo)
        s.sendmail(sender, list(rcpts), MSG)
        return 250, ""
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        return code, text.decode()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def header_of(path, name):
    with open(path, errors="replace") as f:
        head = f.read().split("\n\n", 1)[0]
    unfolded = head.replace("\n\t", " ").replace("\n ", " ")
    return [line for line in unfolded.splitlines() if line.startswith(name + ":")]


def check_pass_and_fail(pf):
    # 127.0.0.2 is designated by good.example.com: delivered with one Received-SPF
    assert send(pf, "127.0.0.2", "joe@good.example.com", rcpts=("sue@example.net", "bob@example.net")) == (250, "")
    f = pf.wait_delivered("sue@example.net", 1)[0]
    pf.wait_delivered("bob@example.net", 1)
    rs = header_of(f, "Received-SPF")
    assert len(rs) == 1, rs
    assert rs[0].startswith("Received-SPF: Pass (mx.test: domain of good.example.com designates "
                            "127.0.0.2 as permitted sender) client-ip=127.0.0.2;")
    assert "identity=mailfrom" in rs[0]
    # 127.0.0.3 is not: 550 5.7.23 with the explanation
    code, text = send(pf, "127.0.0.3", "joe@good.example.com")
    assert code == 550
    assert text.startswith("5.7.23 <sue@example.net>: Recipient address rejected: Message rejected due to: "
                           "127.0.0.3 is not one of good.example.com's designated mail servers."), text
    # softfail is delivered with a SoftFail header
    assert send(pf, "127.0.0.4", "ann@soft.example.com", helo="client.example.org") == (250, "")
    files = pf.wait_delivered("sue@example.net", 2)
    assert any(h and h[0].startswith("Received-SPF: SoftFail") for h in
               (header_of(p, "Received-SPF") for p in files))


def test_postfix_inet_policy(tmp_path, dns):
    with spf_driver.SpfDaemon(tmp_path, dns.addr, "myhostname = mx.test\nspf_skip_addresses =\n") as d:
        pf = Postfix(tmp_path, main_cf={
            "smtpd_recipient_restrictions":
                "reject_unauth_destination, check_policy_service inet:127.0.0.1:%d" % d.port})
        with pf:
            check_pass_and_fail(pf)
        log = d.log_text()
        assert "result=pass" in log and "result=fail" in log and "client=[127.0.0.3]" in log


def test_postfix_spawn_mode(tmp_path, dns):
    # spawn(8) runs sluice-spf as nobody: its config must be world-readable,
    # outside pytest's 0700 tmp directories.
    sdir = tempfile.mkdtemp(prefix="sluice-spf-spawn.")
    try:
        os.chmod(sdir, 0o755)
        log = os.path.join(sdir, "spf.log")
        open(log, "w").close()
        os.chmod(log, 0o666)
        conf = spf_driver.write_conf(sdir, dns.addr, "myhostname = mx.test\nspf_skip_addresses =\n"
                                     "mail_owner = nobody\nmaillog_file = %s\n" % log)
        os.chmod(conf, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        pf = Postfix(tmp_path, main_cf={
            "smtpd_recipient_restrictions":
                "reject_unauth_destination, check_policy_service unix:private/spfpolicy",
            "spfpolicy_time_limit": "3600s",
        }, master_cf=["spfpolicy unix - n n - 0 spawn user=nobody argv=%s -s -c %s"
                      % (spf_driver.SPF, conf)])
        with pf:
            check_pass_and_fail(pf)
        with open(log) as f:
            text = f.read()
        assert "result=pass" in text and "result=fail" in text
    finally:
        shutil.rmtree(sdir, ignore_errors=True)
