"""`sluice report dmarc` on real sluice-dmarc verdicts: sluiced with
sluice-dmarc as its milter and a DNS server on loopback (the shape of
test_dmarc_sluiced.py) receives mail for four policy domains (p=reject,
p=quarantine, p=none, and the local domain), passing and failing; then the
log becomes aggregate reports.

Proves: one gzip'd report per policy domain named as RFC 9990 says; each
validates against the RFC 9990 XSD (and, with --format rfc7489, the RFC 7489
XSD) with xmllint; the rows and counts equal the verdict lines in the log
and the traffic sent; Mail::DMARC (libmail-dmarc-perl) reads every report
back with the same counts; --send --dry-run sends nothing; --send mails each
report through the real sluice-sendmail and sluiced only to destinations
that pass external destination verification (the one without a
_report._dmarc record gets nothing), at most dmarc_report_max_per_destination
per run, never to an address on dmarc_report_suppress, and a destination
refused at submission is added to that list."""

import collections
import email
import email.policy
import gzip
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import BIN, REPO, Sluiced, wait_for
from dnsserver import DnsServer
from postfix_dkim_harness import dkimpy_sign
from test_dmarc_sluiced import BAD_IP, GOOD_IP, Session, SluiceDmarc, dkey, message  # noqa: F401

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(BIN, b)) for b in ("sluice", "sluice-dmarc", "sluiced",
                                                           "sluice-sendmail")),
    reason="sluice, sluice-dmarc, sluiced and sluice-sendmail not built")

SCHEMA = os.path.join(REPO, "tests", "data", "dmarc", "schema")
NS9990 = "urn:ietf:params:xml:ns:dmarc-2.0"
# a local mailbox: the delivery status notification of the report that
# bounces (null MX) lands there
REPORTER = "reports@example.com"
RECEIVER = "example.com"
RX = re.escape(RECEIVER)

# quar.example and reject.example verify example.com as their report
# destination; none.example does not (alice must get nothing) but verifies
# nullmx.example, whose null MX (RFC 7505) bounces the report in sluiced's
# queue; example.com is the local domain (internal, no check).
ZONE = """reject.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.reject.example. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:carol@example.com,mailto:bob@example.com"
reject.example._report._dmarc.example.com. 300 IN TXT "v=DMARC1"
quar.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.quar.example. 300 IN TXT "v=DMARC1; p=quarantine; rua=mailto:bob@example.com,mailto:user@example.com,mailto:nobody@example.com"
quar.example._report._dmarc.example.com. 300 IN TXT "v=DMARC1"
none.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.none.example. 300 IN TXT "v=DMARC1; p=none; rua=mailto:alice@example.com,mailto:agg@nullmx.example"
none.example._report._dmarc.nullmx.example. 300 IN TXT "v=DMARC1"
nullmx.example. 300 IN MX 0 .
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@example.com"
elsewhere.example. 300 IN TXT "v=spf1 ip4:127.0.0.3 -all"
"""

# what the test sends: (source, From, MAIL FROM, signed, expected SMTP code)
TRAFFIC = [
    (BAD_IP, b"a@reject.example", "a@reject.example", False, 550),
    (BAD_IP, b"a@reject.example", "a@reject.example", False, 550),
    (BAD_IP, b"a@reject.example", "x@elsewhere.example", True, 250),   # aligned DKIM pass
    (BAD_IP, b"q@quar.example", "q@quar.example", False, 250),         # held
    (BAD_IP, b"n@none.example", "n@none.example", False, 250),
    (BAD_IP, b"l@example.com", "l@example.com", False, 250),
    (GOOD_IP, b"a@reject.example", "a@reject.example", False, 250),    # aligned SPF pass
    (GOOD_IP, b"a@reject.example", "a@reject.example", False, 250),
    (GOOD_IP, b"q@quar.example", "q@quar.example", False, 250),
]

# the rows that traffic must give, per policy domain: (source_ip, disposition (RFC 9990), dkim, spf) -> count
EXPECTED = {
    "reject.example": {(BAD_IP, "reject", "fail", "fail"): 2, (BAD_IP, "pass", "pass", "fail"): 1,
                       (GOOD_IP, "pass", "fail", "pass"): 2},
    "quar.example": {(BAD_IP, "quarantine", "fail", "fail"): 1, (GOOD_IP, "pass", "fail", "pass"): 1},
    "none.example": {(BAD_IP, "none", "fail", "fail"): 1},
    "example.com": {(BAD_IP, "none", "fail", "fail"): 1},
}

# Mail::DMARC's reader (Receive::handle_body without its SQL store): one line per record
PERL = r"""
use strict; use warnings;
use Mail::DMARC::Report::Receive;
local $/; my $xml = <STDIN>;
my $r = Mail::DMARC::Report::Receive->new;
my $dom = XML::LibXML->load_xml(string => $xml);
$r->do_node_report_metadata($dom->findnodes("/feedback/report_metadata"));
$r->do_node_policy_published($dom->findnodes("/feedback/policy_published"));
$r->do_node_record($_) for $dom->findnodes("/feedback/record");
my $agg = $r->report->aggregate;
print "report ", $agg->policy_published->domain, " ", $agg->metadata->report_id, " ",
      $agg->metadata->begin, " ", $agg->metadata->end, "\n";
for my $rec (@{$agg->record}) {
    my $pe = $rec->row->policy_evaluated;
    print join(" ", "row", $rec->row->source_ip, $rec->row->count, $pe->disposition, $pe->dkim,
               $pe->spf, $rec->identifiers->header_from), "\n";
}
"""


@pytest.fixture(scope="module")
def dns(dkey):
    with DnsServer(ZONE + dkey.zone) as d:
        yield d


@pytest.fixture(scope="module")
def traffic(tmp_path_factory, dns, dkey):
    """One sluiced + sluice-dmarc run with TRAFFIC; -> the Sluiced (stopped, its log kept)."""
    tmp = tmp_path_factory.mktemp("dmarcagg")
    s = Sluiced(tmp, users=("alice", "bob", "carol", "user", "postmaster", "reports"))
    dm = SluiceDmarc(s.tmp, "", "unix", conf_path=s.conf_path, dns=dns)
    with open(s.conf_path, "a") as f:
        f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % dm.spec)
    dm.start()
    try:
        s.start()
        sessions = {}
        try:
            for ip, frm, mfrom, signed, want in TRAFFIC:
                if ip not in sessions:
                    sessions[ip] = Session(s.port, ip)
                body = message(b"Alice <" + frm + b">")
                if signed:
                    body = dkimpy_sign(message(b"Alice <" + frm + b">", subject=b"signed"), dkey)
                code, text = sessions[ip].send(body, mfrom)
                assert code == want, (frm, mfrom, text)
        finally:
            for c in sessions.values():
                c.close()
        n = sum(1 for t in TRAFFIC if t[4] == 250)
        wait_for(lambda: len(re.findall(r"milter=dmarc action=\S+ dmarc=", s.log_text())) == len(TRAFFIC),
                 what="one verdict line per message")
        s.wait_delivered("bob", n - 1)      # all but the held one
        yield s
    finally:
        s.stop()
        dm.stop()


def run_dmarc(s, *args, check=True):
    r = subprocess.run([os.path.join(BIN, "sluice"), "report", "dmarc", "-c", s.conf_path,
                        "--org-name", "Sluice Test", "--email", REPORTER] + list(args) + [s.log],
                       capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def reports(outdir):
    """{domain: [(file name, xml bytes)]}: a run may straddle a UTC midnight (two periods)."""
    got = collections.defaultdict(list)
    for name in sorted(os.listdir(outdir)):
        m = re.fullmatch(RX + r"!([a-z0-9.-]+)!(\d+)!(\d+)\.xml\.gz", name)
        assert m, name
        begin, end = int(m.group(2)), int(m.group(3))
        assert begin % 86400 == 0 and end == begin + 86399, name   # UTC days
        with gzip.open(os.path.join(outdir, name)) as f:
            got[m.group(1)].append((name, f.read()))
    return got


def xmllint(path, xsd):
    r = subprocess.run(["xmllint", "--noout", "--schema", os.path.join(SCHEMA, xsd), path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def rows_9990(xml):
    root = ET.fromstring(xml)
    assert root.tag == "{%s}feedback" % NS9990

    def q(e, path):
        return e.find("/".join("{%s}%s" % (NS9990, x) for x in path.split("/")))

    rows = collections.Counter()
    for rec in root.findall("{%s}record" % NS9990):
        ip = q(rec, "row/source_ip").text
        pe = [q(rec, "row/policy_evaluated/" + k).text for k in ("disposition", "dkim", "spf")]
        rows[(ip, pe[0], pe[1], pe[2])] += int(q(rec, "row/count").text)
    return root, rows


def mail_dmarc(xml):
    """Mail::DMARC's view: (domain, report_id, begin, end) and Counter of (ip, dkim, spf) -> count."""
    plain = re.sub(rb'<(/?)dmarc:feedback', rb'<\1feedback', xml)
    plain = re.sub(rb' xmlns(:dmarc)?="[^"]*"', b"", plain, count=1)
    r = subprocess.run(["perl", "-e", PERL], input=plain, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    head, rows = None, collections.Counter()
    for line in r.stdout.decode().splitlines():
        f = line.split()
        if f[0] == "report":
            head = tuple(f[1:])
        else:
            rows[(f[1], f[4], f[5])] += int(f[2])
    return head, rows


@pytest.fixture(scope="module")
def perl_ok():
    if not shutil.which("xmllint"):
        pytest.skip("xmllint (libxml2-utils) not installed")
    if subprocess.run(["perl", "-MMail::DMARC::Report::Receive", "-e1"], capture_output=True).returncode:
        pytest.skip("Mail::DMARC (libmail-dmarc-perl) not installed")


@pytest.mark.parametrize("fmt", ["rfc9990", "rfc7489"])
def test_reports_validate_and_round_trip(traffic, tmp_path, perl_ok, fmt):
    s = traffic
    out = tmp_path / "out"
    r = run_dmarc(s, "--format", fmt, "-o", str(out))
    got = reports(out)
    assert set(got) == set(EXPECTED), r.stdout + r.stderr
    # the log's own verdict lines, per policy domain (what the reports must count)
    lines = re.findall(r"sluice-dmarc\[\d+\]: \S+: (milter=dmarc action=.*)$", s.log_text(), re.M)
    from_log = collections.Counter(re.search(r"\bpolicy_domain=(\S+)", l).group(1) for l in lines)
    assert from_log == {d: sum(v.values()) for d, v in EXPECTED.items()}, lines
    for dom, files in got.items():
        total = collections.Counter()
        md = collections.Counter()
        for name, xml in files:
            path = tmp_path / name.replace("!", "_").replace(".gz", "")
            path.write_bytes(xml)
            xmllint(str(path), "rua-rfc9990.xsd" if fmt == "rfc9990" else "rua-rfc7489.xsd")
            head, rows = mail_dmarc(xml)
            m = re.fullmatch(RX + r"!([^!]+)!(\d+)!(\d+)\.xml\.gz", name)
            assert head == (dom, "%s.%s@%s" % (m.group(2), dom, RECEIVER), m.group(2), m.group(3)), head
            md += rows
            if fmt == "rfc9990":
                root, rows9990 = rows_9990(xml)
                total += rows9990
            else:
                assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n'
                                      b'<dmarc:feedback xmlns:dmarc="http://dmarc.org/dmarc-xml/0.1">')
        want = EXPECTED[dom]
        if fmt == "rfc9990":
            assert total == want, (dom, total)
        # Mail::DMARC counts the same messages per (source, dkim, spf)
        want_md = collections.Counter()
        for (ip, _disp, dk, sp), n in want.items():
            want_md[(ip, dk, sp)] += n
        assert md == want_md, (dom, md)
    assert "verdicts counted %d," % sum(sum(v.values()) for v in EXPECTED.values()) in r.stderr, r.stderr


def test_send_verified_limited_suppressed(traffic, tmp_path):
    s = traffic
    sup = tmp_path / "suppress"
    sup.write_text("# by hand\nuser@example.com\n")
    conf = tmp_path / "send.conf"
    # the traffic's configuration (DNS, sendmail_socket) plus the report limits
    conf.write_text(open(s.conf_path).read() +
                    "\ndmarc_report_max_per_destination = 1\ndmarc_report_suppress = %s\n" % sup)

    def send(*extra):
        r = subprocess.run([os.path.join(BIN, "sluice"), "report", "dmarc", "-c", str(conf),
                            "--org-name", "Sluice Test", "--email", REPORTER, "-o", str(tmp_path / "out"),
                            "--send"] + list(extra) + [s.log], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        st = {}
        for m in re.finditer(r"^send " + RX + r"!([^!]+)!\d+!\d+\.xml\.gz: to=(\S+) verification=(\S+) "
                             r"status=(\S+)", r.stdout, re.M):
            st.setdefault((m.group(1), m.group(2)), []).append((m.group(3), m.group(4)))
        return r, {k: v[0] for k, v in st.items()}

    before = {u: len(s.delivered(u)) for u in ("alice", "bob", "carol", "user", "postmaster")}
    r, st = send("--dry-run")
    assert st == {
        ("example.com", "postmaster@example.com"): ("internal", "dry_run"),
        ("none.example", "alice@example.com"): ("refused", "not_verified"),
        ("none.example", "agg@nullmx.example"): ("verified", "dry_run"),
        ("quar.example", "bob@example.com"): ("verified", "dry_run"),
        ("quar.example", "user@example.com"): ("verified", "suppressed"),
        ("quar.example", "nobody@example.com"): ("verified", "dry_run"),
        ("reject.example", "carol@example.com"): ("verified", "dry_run"),
        ("reject.example", "bob@example.com"): ("verified", "over_limit"),
    }, r.stdout
    r, st = send()
    assert st == {
        ("example.com", "postmaster@example.com"): ("internal", "sent"),
        ("none.example", "alice@example.com"): ("refused", "not_verified"),
        ("none.example", "agg@nullmx.example"): ("verified", "sent"),
        ("quar.example", "bob@example.com"): ("verified", "sent"),
        ("quar.example", "user@example.com"): ("verified", "suppressed"),
        ("quar.example", "nobody@example.com"): ("verified", "bounced"),
        ("reject.example", "carol@example.com"): ("verified", "sent"),
        ("reject.example", "bob@example.com"): ("verified", "over_limit"),
    }, r.stdout + r.stderr
    assert "suppress: nobody@example.com added" in r.stdout
    assert "nobody@example.com" in sup.read_text().splitlines()
    # what arrived: one report each for postmaster, bob (quar.example) and carol (reject.example)
    for user, dom in (("postmaster", "example.com"), ("bob", "quar.example"), ("carol", "reject.example")):
        files = s.wait_delivered(user, before[user] + 1)
        msg = email.message_from_binary_file(open(files[-1], "rb"), policy=email.policy.default)
        assert msg["From"] == REPORTER and msg["To"] == "%s@example.com" % user
        subj = " ".join(msg["Subject"].split())
        assert re.fullmatch(r"Report Domain: %s Submitter: %s Report-ID: <\d+\.%s@%s>"
                            % (re.escape(dom), RX, re.escape(dom), RX), subj), subj
        assert msg["Return-Path"] == "<%s>" % REPORTER
        (att,) = [p for p in msg.iter_attachments() if p.get_content_type() == "application/gzip"]
        name = att.get_filename()
        assert re.fullmatch(r"%s!%s!\d+!\d+\.xml\.gz" % (RX, re.escape(dom)), name), name
        assert att.get_content() == open(tmp_path / "out" / name, "rb").read()
    s.wait_queue_empty()
    for user in ("alice", "user"):
        assert len(s.delivered(user)) == before[user], user
    assert len(s.delivered("bob")) == before["bob"] + 1     # not the over-limit second report
    # the next run skips the refused address, and the one whose report bounced in the queue
    wait_for(lambda: re.search(r"to=<agg@nullmx\.example>.* status=bounced", s.log_text()),
             what="the report to the null MX domain bounced")
    s.wait_delivered("reports", 1)        # the delivery status notification
    r, st = send("--dry-run")
    assert st[("quar.example", "nobody@example.com")] == ("verified", "suppressed"), r.stdout
    assert st[("none.example", "agg@nullmx.example")] == ("verified", "suppressed"), r.stdout
    assert "agg@nullmx.example" not in sup.read_text()      # a dry run changes nothing
    r, st = send()
    assert "suppress: agg@nullmx.example added (a report to it bounced)" in r.stdout, r.stdout
    assert st[("none.example", "agg@nullmx.example")] == ("verified", "suppressed"), r.stdout
    assert sup.read_text().splitlines()[-1] == "agg@nullmx.example"


def test_json_log_gzipped(tmp_path, dns, perl_ok):
    """log_format = json, the log gzip'd (as logrotate leaves it): the same reports."""
    s = Sluiced(tmp_path / "j", "log_format = json\n")
    dm = SluiceDmarc(s.tmp, "", "unix", conf_path=s.conf_path, dns=dns)
    with open(s.conf_path, "a") as f:
        f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % dm.spec)
    dm.start()
    try:
        s.start()
        for ip, want in ((BAD_IP, 550), (GOOD_IP, 250)):
            c = Session(s.port, ip)
            try:
                code, text = c.send(message(), "a@reject.example")
                assert code == want, text
            finally:
                c.close()
        wait_for(lambda: s.log_text().count('"milter":"dmarc"') == 2, what="two JSON verdicts")
    finally:
        s.stop()
        dm.stop()
    text = s.log_text()
    assert all(l.startswith("{") for l in text.splitlines()), text[:500]
    gz = tmp_path / "maillog.1.gz"
    with gzip.open(gz, "wb") as f:
        f.write(text.encode())
    out = tmp_path / "out"
    r = subprocess.run([os.path.join(BIN, "sluice"), "report", "dmarc", "-c", s.conf_path, "--org-name",
                        "Sluice Test", "--email", REPORTER, "-o", str(out), str(gz)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = reports(out)
    assert list(got) == ["reject.example"], got
    total, md = collections.Counter(), collections.Counter()
    for name, xml in got["reject.example"]:
        path = tmp_path / "r.xml"
        path.write_bytes(xml)
        xmllint(str(path), "rua-rfc9990.xsd")
        total += rows_9990(xml)[1]
        md += mail_dmarc(xml)[1]
    assert total == {(BAD_IP, "reject", "fail", "fail"): 1, (GOOD_IP, "pass", "fail", "pass"): 1}
    assert md == {(BAD_IP, "fail", "fail"): 1, (GOOD_IP, "fail", "pass"): 1}
