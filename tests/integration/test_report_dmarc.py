"""sluice report on real sluice-dmarc verdicts: `sluice start` with sluice-dkim
and sluice-dmarc (the scenario and DNS of test_dmarc_start.py: p=reject,
failing alignment rejected at end of data, an aligned SPF pass delivered).
The report's DMARC results and dispositions by From domain, and its rejects,
must equal the verdict lines in the log and the traffic sent."""

import collections
import json
import os
import re
import subprocess

import pytest

from conftest import BIN, Sluiced, wait_for
from test_dmarc_sluiced import BAD_IP, GOOD_IP, Session, dkey, dmarc_dns, message  # noqa: F401
from test_report import report, run_report  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(BIN, b)) for b in ("sluice", "sluice-dkim", "sluice-dmarc")),
    reason="sluice, sluice-dkim and sluice-dmarc not built")


def test_dmarc_results_by_domain(report, tmp_path, dmarc_dns):
    conf = (f"run_directory = {tmp_path}/run\n"
            "dkim_enable = yes\ndmarc_enable = yes\n"
            f"dns_servers = {dmarc_dns.addr}\ndns_timeout = 1s\ndns_tries = 1\n"
            "smtpd_recipient_restrictions = reject_unauth_destination\n")
    s = Sluiced(tmp_path, conf)
    sup = subprocess.Popen([os.path.join(BIN, "sluice"), "start", "-f", "-c", s.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    s.proc = sup
    try:
        wait_for(s._greets, timeout=60, what="sluiced behind sluice start (log: %s)" % s.log_text())
        bad = Session(s.port, BAD_IP)
        try:
            for _ in range(2):
                code, text = bad.send(message(), "a@reject.example")
                assert code == 550, text
        finally:
            bad.close()
        good = Session(s.port, GOOD_IP)
        try:
            code, text = good.send(message(), "a@reject.example")
            assert code == 250, text
        finally:
            good.close()
        s.wait_delivered("bob", 1)
        wait_for(lambda: len(re.findall(r": removed\b", s.log_text())) >= 1, 30, "removed line")
    finally:
        subprocess.run([os.path.join(BIN, "sluice"), "stop", "-c", s.conf_path], capture_output=True,
                       timeout=90)
        try:
            sup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
    log = s.log_text()
    doc = json.loads(run_report(report, "--format", "json", s.log))
    # the verdicts straight from the log
    lines = re.findall(r"sluice-dmarc\[\d+\]: \S+: (milter=dmarc .*)$", log, re.M)
    assert lines, log[-3000:]
    results = collections.Counter(re.search(r"\bdmarc=(\S+)", l).group(1) for l in lines)
    by_dom = collections.defaultdict(collections.Counter)
    disp = collections.defaultdict(collections.Counter)
    for l in lines:
        d = re.search(r"\bheader_from=(\S+)", l)
        if d:
            by_dom[d.group(1)][re.search(r"\bdmarc=(\S+)", l).group(1)] += 1
            x = re.search(r"\bdisposition=(\S+)", l)
            if x:
                disp[d.group(1)][x.group(1)] += 1
    flt = doc["filters"]["dmarc"]
    assert flt["results"] == dict(results), (flt, lines)
    rows = {r["domain"]: r for r in flt["by_domain"]}
    assert {d: rows[d]["results"] for d in rows} == {d: dict(c) for d, c in by_dom.items()}, rows
    assert {d: rows[d]["dispositions"] for d in rows if rows[d]["dispositions"]} == \
        {d: dict(c) for d, c in disp.items()}, rows
    # what the test sent: two rejected (fail, disposition reject), one delivered (pass)
    assert rows["reject.example"]["results"] == {"fail": 2, "pass": 1}, rows
    assert rows["reject.example"]["dispositions"].get("reject") == 2, rows
    t = doc["totals"]
    assert t["rejected"] == 2 and t["delivered"] == 1, t
    assert doc["rejects"]["by_stage"] == {"END-OF-MESSAGE": 2}, doc["rejects"]
    assert doc["milter_actions"]["dmarc"]["reject"] == 2, doc["milter_actions"]
