"""sluice report on real logs: sluiced's own (maillog_file) and a private
Postfix's, each produced here by sending mail (delivered, rejected at RCPT,
bounced and deferred by smtp-sink peers on loopback); the grand totals and
the per-sender / per-recipient counts must equal pflogsumm's on the same log,
and the counts the test sent.

Until `report` is dispatched by bin/sluice, the test builds a small driver
around report_main() from the sources (tools/report*.c)."""

import gzip
import json
import os
import re
import shutil
import smtplib
import subprocess
import time

import pytest

from conftest import BIN, REPO, free_port, wait_for

PFLOGSUMM = "/usr/sbin/pflogsumm"
SINK = "/usr/sbin/smtp-sink"

pytestmark = [pytest.mark.skipif(not os.path.exists(PFLOGSUMM), reason="pflogsumm not installed"),
              pytest.mark.skipif(not os.path.exists(SINK), reason="smtp-sink not installed")]


@pytest.fixture(scope="session")
def report(tmp_path_factory):
    """argv prefix that runs `sluice report`."""
    sluice = os.path.join(BIN, "sluice")
    if os.path.exists(sluice):
        # dispatched by bin/sluice: an empty log gives a JSON report
        p = subprocess.run([sluice, "report", "--format", "json", "/dev/null"],
                           capture_output=True, text=True)
        if p.returncode == 0 and p.stdout.lstrip().startswith("{"):
            return [sluice, "report"]
    d = tmp_path_factory.mktemp("report-driver")
    main = d / "main.c"
    # report_main() plus the three lib/log.h calls lib/util.c makes (panic/fatal),
    # so the driver needs only tools/report*.c and lib/util.c
    main.write_text('#include "lib/log.h"\n#include <stdarg.h>\n#include <stdio.h>\n'
                    "int report_main(int argc, char **argv);\n"
                    "int main(int argc, char **argv) { return report_main(argc, argv); }\n"
                    "void log_event(const char *qid, const char *fmt, ...)\n"
                    "{ va_list ap; va_start(ap, fmt); if (qid) fprintf(stderr, \"%s: \", qid);\n"
                    "  vfprintf(stderr, fmt, ap); fputc('\\n', stderr); va_end(ap); }\n"
                    "int log_to_stderr(void) { return 1; }\n"
                    "const char *log_progname(void) { return \"sluice report\"; }\n")
    exe = str(d / "sluice-report")
    srcs = sorted(os.path.join("tools", n) for n in os.listdir(os.path.join(REPO, "tools"))
                  if n.startswith("report") and n.endswith(".c"))
    cmd = ["cc", "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-I.",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-o", exe, str(main), *srcs, "lib/util.c",
           "-ljansson", "-lz", "-lm", "-lpthread"]
    subprocess.run(cmd, cwd=REPO, check=True)
    return [exe]


def run_report(report, *args):
    p = subprocess.run([*report, *args], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, TZ="UTC"))
    assert p.returncode == 0, p.stderr
    return p.stdout


def pflogsumm(path, syslog_name):
    p = subprocess.run([PFLOGSUMM, "--syslog-name=" + syslog_name, "-u", "100",
                        "-h", "100", path], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def pflogsumm_numbers(text):
    """Grand totals and the 'Senders/Recipients by message count' tables."""
    tot = {}
    for name in ("received", "delivered", "deferred", "bounced", "rejected"):
        m = re.search(r"^\s+(\d+)\s+%s\b" % name, text, re.M)
        assert m, "no %s in pflogsumm output:\n%s" % (name, text)
        tot[name] = int(m.group(1))

    def table(title):
        out = {}
        m = re.search(r"^(?:top \d+ )?%s\n-+\n((?:\s+\d+\s+\S+\n)*)" % re.escape(title), text, re.M)
        if not m:
            return out
        for line in m.group(1).splitlines():
            n, key = line.split()
            out[key] = int(n)
        return out
    return tot, table("Senders by message count"), table("Recipients by message count")


def report_numbers(doc):
    t = doc["totals"]
    tot = {k: t[k] for k in ("received", "delivered", "deferred", "bounced", "rejected")}
    senders = {r["address"]: r["messages"] for r in doc["top"]["senders"]}
    rcpts = {r["address"]: r["messages"] for r in doc["top"]["recipients"]}
    return tot, senders, rcpts


class Sink:
    def __init__(self, tmp, args):
        self.port = free_port()
        self.dir = os.path.join(str(tmp), "sink-%d" % self.port)
        os.makedirs(self.dir)
        self.proc = subprocess.Popen([SINK, "-u", "root", *args, "127.0.0.1:%d" % self.port, "10"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                import socket
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "smtp-sink on %d" % self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def sinks(tmp_path):
    """(bouncer, deferrer): smtp-sinks answering RCPT with 5xx and with 4xx."""
    b, d = Sink(tmp_path, ["-f", "RCPT"]), Sink(tmp_path, ["-r", "RCPT"])
    yield b, d
    b.stop()
    d.stop()


def send(host, port, sender, rcpts, subject="hi"):
    """sendmail; returns the recipients refused at RCPT (dict)."""
    with smtplib.SMTP(host, port, timeout=20) as c:
        try:
            return c.sendmail(sender, rcpts, ("Subject: %s\r\n\r\nhello\r\n" % subject).encode())
        except smtplib.SMTPRecipientsRefused as e:
            return e.recipients


TRAFFIC = [
    # (sender, recipients) over one SMTP session each
    ("joe@Example.ORG", ["alice@{d}", "bob@{d}"]),
    ("joe@example.org", ["carol@{d}"]),
    ("ann@example.net", ["alice@{d}", "nobody@{d}"]),        # one refused: unknown user
    ("", ["bob@{d}"]),                                         # null sender
    ("alice@{d}", ["x@bounce.test"]),                         # bounced (5xx at RCPT), DSN to alice
    ("alice@{d}", ["y@defer.test"]),                          # deferred (4xx at RCPT)
    ("ann@example.net", ["ghost@{d}"]),                       # refused: unknown user only
]


def check_same(doc, pf_text, what):
    mine = report_numbers(doc)
    theirs = pflogsumm_numbers(pf_text)
    assert mine[0] == theirs[0], "%s totals: report %s, pflogsumm %s" % (what, mine[0], theirs[0])
    assert mine[1] == theirs[1], "%s senders: report %s, pflogsumm %s" % (what, mine[1], theirs[1])
    assert mine[2] == theirs[2], "%s recipients: report %s, pflogsumm %s" % (what, mine[2], theirs[2])


def run_traffic(sluiced_factory, sinks, tmp_path, extra=""):
    """sluiced with TRAFFIC sent through it, stopped; returns it (s.log is the log)."""
    bouncer, deferrer = sinks
    tm = tmp_path / "transport"
    tm.write_text("bounce.test smtp:[127.0.0.1]:%d\ndefer.test smtp:[127.0.0.1]:%d\n"
                  % (bouncer.port, deferrer.port))
    s = sluiced_factory(f"""
transport_maps = texthash:{tm}
minimal_backoff_time = 300s
maximal_backoff_time = 600s
smtp_connect_timeout = 5s
{extra}
""").start()
    d = s.domain
    for sender, rcpts in TRAFFIC:
        send(s.host, s.port, sender.format(d=d), [r.format(d=d) for r in rcpts])
    # alice: 2 + the DSN; bob 2; carol 1
    s.wait_delivered("alice", 3)
    s.wait_delivered("bob", 2)
    s.wait_delivered("carol", 1)
    wait_for(lambda: "status=deferred" in s.log_text(), 30, "a deferral")
    wait_for(lambda: len(re.findall(r"\bremoved\b", s.log_text())) >= 6, 30, "removed lines")
    s.stop()
    return s


def check_traffic_counts(doc):
    t = doc["totals"]
    # what the test sent: 6 messages accepted (one from each session but the last),
    # 2 recipients refused; 6 local deliveries (incl. the DSN), 1 bounce, 1 deferral
    assert t["received"] == 6, doc["totals"]
    assert t["rejected"] == 2
    assert t["delivered"] == 6
    assert t["bounced"] == 1
    assert t["deferred"] == 1
    assert doc["rejects"]["by_stage"] == {"RCPT": 2}
    assert doc["rejects"]["by_code"] == {"unknown_recipient": 2}
    assert [b["dsn"][0] for b in doc["bounces"]] == ["5"]
    assert {x["transport"] for x in doc["delays"]} == {"virtual"}


def test_sluiced_json_log_counts_the_same(report, sluiced_factory, sinks, tmp_path):
    """log_format = json: every line one object; the same numbers as a plain log."""
    s = run_traffic(sluiced_factory, sinks, tmp_path, "log_format = json")
    lines = [l for l in open(s.log) if l.strip()]
    assert lines and all(json.loads(l)["program"] for l in lines)
    doc = json.loads(run_report(report, "--format", "json", s.log))
    assert doc["input"]["unreadable"] == 0
    check_traffic_counts(doc)
    # pflogsumm's keys: the domain lower-cased, the null sender as from=<>
    senders = {r["address"]: r["messages"] for r in doc["top"]["senders"]}
    assert senders == {"joe@example.org": 2, "ann@example.net": 1, "from=<>": 1,
                       "alice@example.com": 2}, senders


def test_sluiced_log_agrees_with_pflogsumm(report, sluiced_factory, sinks, tmp_path):
    s = run_traffic(sluiced_factory, sinks, tmp_path)
    log = s.log
    doc = json.loads(run_report(report, "--format", "json", log))
    t = doc["totals"]
    check_traffic_counts(doc)
    # sluiced logs Postfix's program field <syslog_name>/<service>[pid], so
    # pflogsumm reads its log as it is
    services = set(re.findall(r"^\S+\s+\d+\s+[\d:]+\s+\S+\s+sluice/(\w+)\[\d+\]: ",
                              open(log, errors="replace").read(), re.M))
    assert {"master", "smtpd", "qmgr", "virtual", "smtp", "bounce"} <= services, services
    check_same(doc, pflogsumm(log, "sluice"), "sluiced log")
    # gzip'd input reads the same; text output carries the same totals
    gz = str(tmp_path / "maillog.gz")
    with open(log, "rb") as f, gzip.open(gz, "wb") as g:
        shutil.copyfileobj(f, g)
    assert report_numbers(json.loads(run_report(report, "--format", "json", gz))) == report_numbers(doc)
    text = run_report(report, log)
    for name in ("received", "delivered", "deferred", "bounced", "rejected"):
        m = re.search(r"^\s+(\d+)\s+%s$" % name, text, re.M)
        assert m and int(m.group(1)) == t[name], (name, text)
    assert "alice@example.com" in text and "Recipient address rejected" in text
    check_html(report, log, tmp_path, t)


def check_html(report, log, tmp_path, totals):
    """--format html: one self-contained page (no script, nothing fetched), the
    charts as well-formed SVG, the same grand totals."""
    import xml.etree.ElementTree as ET
    out = str(tmp_path / "report.html")
    run_report(report, "--format", "html", "-o", out, log)
    page = open(out).read()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower()
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", page, re.I)
    svgs = re.findall(r"<svg\b.*?</svg>", page, re.S)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(svgs) == len(captions) >= 3, captions
    assert "Traffic per hour of day" in captions and "Rejects by reason" in captions
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.findall(".//{http://www.w3.org/2000/svg}rect"), svg[:200]
    for name in ("received", "delivered", "deferred", "bounced", "rejected"):
        assert '<td class="n">%d</td><td>%s</td>' % (totals[name], name) in page, name


def test_postfix_log_agrees_with_pflogsumm(report, sinks, tmp_path):
    from postfix import Postfix
    bouncer, deferrer = sinks
    tm = os.path.join(str(tmp_path), "transport")
    with open(tm, "w") as f:
        f.write("bounce.test smtp:[127.0.0.1]:%d\ndefer.test smtp:[127.0.0.1]:%d\n"
                % (bouncer.port, deferrer.port))
    os.chmod(str(tmp_path), 0o755)
    pf = Postfix(tmp_path, domains=["example.com"], users=["alice", "bob", "carol"],
                 main_cf={"transport_maps": "texthash:" + tm,
                          "relay_domains": "bounce.test, defer.test",
                          "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
                          "minimal_backoff_time": "300s", "maximal_backoff_time": "600s",
                          "queue_run_delay": "300s"})
    with pf:
        d = "example.com"
        for sender, rcpts in TRAFFIC:
            send("127.0.0.1", pf.port, sender.format(d=d), [r.format(d=d) for r in rcpts])
        pf.wait_delivered("alice@example.com", 3)
        pf.wait_delivered("bob@example.com", 2)
        pf.wait_delivered("carol@example.com", 1)
        pf.wait_log(r"status=deferred")
        pf.wait_log(r"status=bounced")
        deadline = time.monotonic() + 30
        while pf.log_text().count(": removed") < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        log = str(tmp_path / "postfix.maillog")
        shutil.copy(pf.log, log)
        name = "postfix-test-%d" % pf.port
    doc = json.loads(run_report(report, "--format", "json", log))
    t = doc["totals"]
    assert t["received"] == 6, (t, open(log).read())
    assert t["rejected"] == 2
    assert t["delivered"] == 6
    assert t["bounced"] == 1
    assert t["deferred"] == 1
    check_same(doc, pflogsumm(log, name), "Postfix log")


def test_sluiced_milter_verdicts(report, sluiced_factory, tmp_path):
    """A real libmilter filter (tests/milter/test_milter.c) rejecting at RCPT and at
    end of message, tempfailing, quarantining (hold) and discarding: the report's
    totals equal pflogsumm's but for the one deliberate difference (docs/REPORT.md):
    smtpd's RCPT-stage milter-reject counts as rejected here, not in pflogsumm."""
    milter = os.path.join(BIN, "tests", "test-milter")
    if not os.path.exists(milter):
        pytest.skip("test-milter not built")
    spec = "unix:%s/m.sock" % tmp_path
    m = subprocess.Popen([milter, "m1", spec], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert m.stdout.readline().strip() == b"ready"
        s = sluiced_factory("smtpd_milters = %s\n" % spec,
                            users=("alice", "bob", "carol", "reject-rcpt")).start()
        from conftest import SmtpRaw

        def one(rcpts, actions=None):
            c = SmtpRaw("127.0.0.1", s.port)
            c.reply()
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<ann@example.net>")
            ok = [r for r in rcpts if c.cmd("RCPT TO:<%s>" % r)[0] == 250]
            code = None
            if ok:
                c.cmd("DATA")
                hdr = b"X-Test-Actions: %s\r\n" % actions.encode() if actions else b""
                c.send(b"Subject: m\r\n" + hdr + b"\r\nhi\r\n.\r\n")
                code = c.reply()[0]
            c.cmd("QUIT")
            c.close()
            return code
        assert one(["alice@example.com"]) == 250
        assert one(["bob@example.com"], "reject") == 554
        assert one(["reject-rcpt@example.com", "carol@example.com"]) == 250
        assert one(["bob@example.com"], "quarantine") == 250
        assert one(["bob@example.com"], "discard") == 250
        assert one(["bob@example.com"], "tempfail") == 451
        s.wait_delivered("alice", 1)
        s.wait_delivered("carol", 1)
        wait_for(lambda: len(re.findall(r": removed\b", s.log_text())) >= 2, 30, "removed lines")
        s.stop()
    finally:
        m.kill()
        m.wait()
    doc = json.loads(run_report(report, "--format", "json", s.log))
    t = doc["totals"]
    assert (t["received"], t["delivered"], t["rejected"], t["held"], t["discarded"]) == (6, 2, 3, 1, 1), t
    assert doc["rejects"]["by_stage"] == {"END-OF-MESSAGE": 2, "RCPT": 1}, doc["rejects"]
    assert doc["milter_actions"]["m"]["reject"] == 2, doc["milter_actions"]  # m.sock -> "m"
    text = pflogsumm(s.log, "sluice")
    tot, _, rcpts = pflogsumm_numbers(text)
    assert tot["received"] == t["received"] and tot["delivered"] == t["delivered"], (tot, t)
    assert tot["rejected"] == t["rejected"] - 1, (tot, t)     # smtpd milter-reject at RCPT
    for name in ("held", "discarded"):
        m2 = re.search(r"^\s+(\d+)\s+%s\b" % name, text, re.M)
        assert m2 and int(m2.group(1)) == t[name], (name, text)
    assert rcpts == {r["address"]: r["messages"] for r in doc["top"]["recipients"]}
