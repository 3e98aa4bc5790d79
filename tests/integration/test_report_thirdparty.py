"""sluice report on the logs of real OpenDKIM, OpenDMARC and policyd-spf runs.

Those three log only through syslog(3) and the build machine has no syslog
daemon, so the test gives them one: it re-runs this file (`--inside DIR`)
in a private network + mount namespace where /dev is an overlay of the real
one with /dev/log a datagram socket this script reads (the host's /dev is
not touched), /etc/resolv.conf names 127.0.0.1 and unbound (tests/fixtures/
dnsserver.py) answers on 127.0.0.1:53 with the zone below. There it drives:

- policyd-spf (Debian's postfix-policyd-spf-python) with one Postfix policy
  request per case on stdin: SPF pass, fail (rejected), softfail, none;
- OpenDKIM (signing for example.com, verifying) and OpenDMARC (p=reject for
  reject.example, p=none for example.org) through miltertest, the milter
  test driver of OpenDKIM's tools: a message signed, the signed copy
  verified (pass), a tampered copy (fail), an unsigned one; OpenDMARC on
  DMARC pass (an aligned DKIM pass in a trusted Authentication-Results) and
  fail (p=reject).

Each datagram becomes one syslog-file line ("Mmm dd hh:mm:ss host prog[pid]:
msg"), as rsyslog writes it. `sluice report` must count exactly the verdicts
sent. SLUICE_UPDATE_FIXTURES=1 keeps the log as tests/data/report/
thirdparty.log (the unit test's real-run lines of these three programs).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OPENDKIM, OPENDMARC, MILTERTEST = "/usr/sbin/opendkim", "/usr/sbin/opendmarc", "/usr/bin/miltertest"
POLICYD_SPF = "/usr/bin/policyd-spf"
TOOLS = (OPENDKIM, OPENDMARC, MILTERTEST, POLICYD_SPF, "/usr/sbin/opendkim-genkey", "/usr/sbin/unbound")

ZONE = """
example.org. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
soft.example. 300 IN TXT "v=spf1 ~all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=none"
_dmarc.reject.example. 300 IN TXT "v=DMARC1; p=reject"
reject.example. 300 IN TXT "v=spf1 -all"
"""

# (client ip, sender) -> the SPF result policyd-spf gives
SPF_CASES = [("192.0.2.7", "alice@example.org", "pass"),
             ("198.51.100.9", "mallory@example.org", "fail"),
             ("198.51.100.9", "ann@soft.example", "softfail"),
             ("198.51.100.9", "bob@nospf.example", "none")]


# ---------------------------------------------------------------- inside

def lua_str(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def milter_script(sock, qid, ip, sender, headers, body, out=None):
    """A miltertest script: one message through the milter at sock; with out,
    the DKIM-Signature it added is written there."""
    lines = ['conn = mt.connect(%s, 40, 0.25)' % lua_str("unix:" + sock),
             'if conn == nil then error("connect") end',
             'mt.conninfo(conn, "client.test", %s)' % lua_str(ip),
             'mt.macro(conn, SMFIC_MAIL, "i", %s)' % lua_str(qid),
             'mt.mailfrom(conn, %s)' % lua_str("<%s>" % sender),
             'mt.macro(conn, SMFIC_RCPT, "i", %s)' % lua_str(qid),
             'mt.rcptto(conn, "<bob@example.com>")']
    for k, v in headers:
        lines.append("mt.header(conn, %s, %s)" % (lua_str(k), lua_str(v)))
    lines.append("mt.eoh(conn)")
    if body is not None:   # (OpenDMARC negotiates no body)
        lines.append("mt.bodystring(conn, %s)" % lua_str(body))
    lines.append("mt.eom(conn)")
    if out:
        lines += ['local s = mt.getheader(conn, "DKIM-Signature", 0)',
                  'if s == nil then error("not signed") end',
                  'local f = io.open(%s, "w")' % lua_str(out), "f:write(s)", "f:close()"]
    lines.append("mt.disconnect(conn)")
    return "\n".join(lines) + "\n"


def run_miltertest(d, name, script):
    path = os.path.join(d, name + ".lua")
    with open(path, "w") as f:
        f.write(script)
    r = subprocess.run([MILTERTEST, "-s", path], timeout=60, capture_output=True)
    if r.returncode:
        raise RuntimeError("miltertest %s: %s" % (name, (r.stdout + r.stderr).decode(errors="replace")))


def inside(d):
    """Runs in the namespace: drive the three programs, write d/maillog."""
    sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
    from dnsserver import DnsServer

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open(os.path.join(d, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", os.path.join(d, "resolv.conf"), "/etc/resolv.conf"], check=True)
    ov = os.path.join(d, "devov")
    os.makedirs(ov)
    subprocess.run(["mount", "-t", "tmpfs", "none", ov], check=True)
    os.makedirs(ov + "/u")
    os.makedirs(ov + "/w")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=/dev,upperdir=%s/u,workdir=%s/w" % (ov, ov), "/dev"], check=True)
    if os.path.lexists("/dev/log"):
        os.unlink("/dev/log")
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind("/dev/log")
    os.chmod("/dev/log", 0o666)
    got = []
    END = b"<0>end of the test's log"

    def reader():   # (a thread: with nobody reading, syslog(3) blocks once the queue is full)
        while True:
            data = log.recv(65536)
            if data == END:
                break
            got.append(data.decode("utf-8", "replace"))
    rd = threading.Thread(target=reader, daemon=True)
    rd.start()

    subprocess.run(["opendkim-genkey", "-D", d, "-d", "example.com", "-s", "sel", "-b", "1024"], check=True)
    key_txt = open(os.path.join(d, "sel.txt")).read()
    p = "".join(part.split('"')[1] for part in key_txt.split("\n") if '"' in part)
    zone = ZONE + 'sel._domainkey.example.com. 300 IN TXT "%s"\n' % p

    with DnsServer(zone, port=53):
        # policyd-spf: one process per request, as Postfix's spawn(8) runs it
        conf = os.path.join(d, "policyd-spf.conf")
        with open(conf, "w") as f:
            f.write("debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\nMail_From_reject = Fail\n"
                    "PermError_reject = False\nTempError_Defer = False\nskip_addresses = 127.0.0.0/8\n")
        for i, (ip, sender, _) in enumerate(SPF_CASES):
            req = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                   "client_address=%s\nclient_name=client.test\nhelo_name=client.test\nsender=%s\n"
                   "recipient=bob@example.com\nqueue_id=\ninstance=%x.1\n\n" % (ip, sender, 0xabc0 + i))
            subprocess.run([POLICYD_SPF, conf], input=req.encode(), check=True, timeout=60,
                           capture_output=True)

        # OpenDKIM: sign, then verify the signed copy, a tampered copy and an unsigned one
        dsock = os.path.join(d, "opendkim.sock")
        with open(os.path.join(d, "opendkim.conf"), "w") as f:
            f.write("Syslog yes\nSyslogSuccess yes\nLogWhy yes\nMode sv\nDomain example.com\nSelector sel\nKeyFile %s/sel.private\n"
                    "Socket local:%s\nPidFile %s/opendkim.pid\nUserID root\nCanonicalization relaxed/simple\n"
                    "InternalHosts 192.0.2.1\nAuthservID mx.example.com\nRequireSafeKeys no\n"
                    "ResolverConfiguration %s/libunbound.conf\n" % (d, dsock, d, d))
        with open(os.path.join(d, "libunbound.conf"), "w") as f:   # OpenDKIM resolves through libunbound
            f.write("server:\n  do-not-query-localhost: no\n  trust-anchor-signaling: no\n"
                    "forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@53\n")
        dk = subprocess.Popen([OPENDKIM, "-f", "-x", os.path.join(d, "opendkim.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hdrs = [("From", "Joe <joe@example.com>"), ("To", "bob@example.com"), ("Subject", "hello"),
                ("Date", "Wed, 02 Dec 2026 10:00:00 +0000"), ("Message-ID", "<m1@example.com>")]
        body = "Hello Bob.\r\n"
        sig = os.path.join(d, "sig.txt")
        try:
            run_miltertest(d, "sign", milter_script(dsock, "4ASIGN0001", "192.0.2.1", "joe@example.com",
                                                    hdrs, body, out=sig))
            signed = [("DKIM-Signature", open(sig).read().strip())] + hdrs
            run_miltertest(d, "pass", milter_script(dsock, "4AVRFY0002", "203.0.113.5", "joe@example.com",
                                                    signed, body))
            run_miltertest(d, "fail", milter_script(dsock, "4AVRFY0003", "203.0.113.5", "joe@example.com",
                                                    signed, "Hello Bob, changed.\r\n"))
            run_miltertest(d, "none", milter_script(dsock, "4AVRFY0004", "203.0.113.5", "joe@example.com",
                                                    hdrs, body))
        finally:
            dk.kill()   # (SIGTERM: libmilter takes 5 s to stop; every line is written by now)
            dk.wait(20)

        # OpenDMARC: trusts the Authentication-Results of mx.example.com
        msock = os.path.join(d, "opendmarc.sock")
        with open(os.path.join(d, "opendmarc.conf"), "w") as f:
            f.write("Syslog true\nSocket local:%s\nPidFile %s/opendmarc.pid\nUserID root\n"
                    "AuthservID mx.example.com\nTrustedAuthservIDs mx.example.com\nRejectFailures true\n"
                    "SPFSelfValidate false\nSPFIgnoreResults false\nIgnoreAuthenticatedClients false\n" % (msock, d))
        dm = subprocess.Popen([OPENDMARC, "-f", "-c", os.path.join(d, "opendmarc.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ok = [("Authentication-Results", "mx.example.com; dkim=pass header.d=example.org header.s=s1; "
                   "spf=pass smtp.mailfrom=olga@example.org"),
                  ("From", "Olga <olga@example.org>"), ("To", "bob@example.com"), ("Subject", "dmarc pass"),
                  ("Date", "Wed, 02 Dec 2026 10:00:00 +0000"), ("Message-ID", "<m2@example.org>")]
            bad = [("Authentication-Results", "mx.example.com; dkim=none; spf=fail smtp.mailfrom=eve@reject.example"),
                   ("From", "Eve <eve@reject.example>"), ("To", "bob@example.com"), ("Subject", "dmarc fail"),
                   ("Date", "Wed, 02 Dec 2026 10:00:00 +0000"), ("Message-ID", "<m3@reject.example>")]
            run_miltertest(d, "dmarc-pass", milter_script(msock, "4ADMRC0005", "192.0.2.7", "olga@example.org",
                                                          ok, None))
            run_miltertest(d, "dmarc-fail", milter_script(msock, "4ADMRC0006", "198.51.100.9",
                                                          "eve@reject.example", bad, None))
        finally:
            dm.kill()
            dm.wait(20)
    # a datagram socket keeps order: once the reader sees this, it has every line before it
    end = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    end.sendto(END, "/dev/log")
    rd.join(30)
    assert not rd.is_alive(), "the log reader did not finish"
    host = "mx"
    with open(os.path.join(d, "maillog"), "w") as f:
        for g in got:
            # "<PRI>Mmm dd hh:mm:ss prog[pid]: msg" -> "Mmm dd hh:mm:ss host prog[pid]: msg"
            g = g.rstrip("\n")
            if g.startswith("<"):
                g = g[g.index(">") + 1:]
            f.write("%s %s %s\n" % (g[:15], host, g[16:]))


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--inside":
    inside(sys.argv[2])
    sys.exit(0)


# ---------------------------------------------------------------- the test

import pytest  # noqa: E402

from test_report import report, run_report  # noqa: E402,F401  (fixture)

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(t) for t in TOOLS) or os.geteuid() != 0,
    reason="needs root (namespaces) and opendkim, opendkim-tools, opendmarc, postfix-policyd-spf-python, unbound")


@pytest.fixture(scope="module")
def thirdparty_log(tmp_path_factory):
    d = tmp_path_factory.mktemp("thirdparty")
    os.chmod(str(d), 0o755)
    p = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                        sys.executable, os.path.abspath(__file__), "--inside", str(d)],
                       capture_output=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")[-3000:]
    log = os.path.join(str(d), "maillog")
    if os.environ.get("SLUICE_UPDATE_FIXTURES") == "1":
        shutil.copyfile(log, os.path.join(REPO, "tests", "data", "report", "thirdparty.log"))
    return log


def test_thirdparty_verdicts_counted(report, thirdparty_log):  # noqa: F811
    text = open(thirdparty_log).read()
    doc = json.loads(run_report(report, "--format", "json", thirdparty_log))
    assert doc["input"]["unreadable"] == 0, text
    f = doc["filters"]
    # policyd-spf: one verdict per request; fail is a reject, the rest prepend a header
    assert f["spf"]["results"] == {r: 1 for _, _, r in SPF_CASES}, (f.get("spf"), text)
    assert f["spf"]["actions"] == {"prepend": 3, "reject": 1}, (f["spf"], text)
    # OpenDKIM: one signature added, one pass, one bad signature, one unsigned
    assert f["dkim"]["results"] == {"signed": 1, "pass": 1, "fail": 1, "none": 1}, (f.get("dkim"), text)
    # OpenDMARC: example.org pass, reject.example fail
    assert f["dmarc"]["results"] == {"pass": 1, "fail": 1}, (f.get("dmarc"), text)
    by = {r["domain"]: r["results"] for r in f["dmarc"]["by_domain"]}
    assert by == {"example.org": {"pass": 1}, "reject.example": {"fail": 1}}, by
