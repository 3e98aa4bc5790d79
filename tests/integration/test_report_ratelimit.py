"""sluice report on real sluice-ratelimit verdicts: sluice-ratelimit behind
sluiced (the rules and clients of test_ratelimit_sluiced.py): a SASL user
limited to 2 messages, a sender limited to 3 recipients. The report reads
both logs (sluiced's and the policy server's); its rate-limit results and
actions, and the deferrals at RCPT, must equal the verdict lines and the
traffic sent."""

import collections
import json
import os
import re

import pytest

from conftest import BIN, free_port
from test_ratelimit_driver import RlDaemon
from test_ratelimit_sluiced import RULES, Sess, make_sluiced
from test_report import report, run_report  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BIN, "sluice-ratelimit")),
                                reason="sluice-ratelimit not built")


def test_ratelimit_decisions(report, sluiced_factory, tmp_path):
    rl_port = free_port()
    d = RlDaemon(tmp_path, RULES, state=os.path.join(str(tmp_path), "state.lmdb"), port=rl_port).start()
    try:
        s = make_sluiced(sluiced_factory, tmp_path, rl_port)
        c = Sess(s, login="dave")
        for _ in range(2):
            assert c.send("dave@example.com")[2][0] == 250
        assert "alice@example.com" in c.send("dave@example.com")[1]     # over: deferred at RCPT
        c.close()
        c = Sess(s)
        ok, refused, data = c.send("many@example.com", ("alice@example.com", "bob@example.com",
                                                        "carol@example.com", "user@example.com"))
        assert len(ok) == 3 and list(refused) == ["user@example.com"] and data[0] == 250
        c.close()
        s.wait_delivered("alice", 3)
        s.stop()
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]
    doc = json.loads(run_report(report, "--format", "json", s.log, d.log))
    rl_log = d.log_text()
    lines = re.findall(r"ratelimit: state=.*$", rl_log, re.M)
    results = collections.Counter(re.search(r", result=(\w+)", l).group(1) for l in lines)
    actions = collections.Counter(re.search(r', action="?(\S+?)[" ]', l + " ").group(1).lower()
                                  for l in lines)
    flt = doc["filters"]["ratelimit"]
    assert flt["results"] == dict(results), (flt, lines)
    assert flt["actions"] == dict(actions), (flt, lines)
    assert results["over"] == 2, results                       # dave's third, many's fourth
    assert doc["totals"]["rejected"] == 2, doc["totals"]         # both 450 at RCPT
    assert doc["rejects"]["by_code"] == {"ratelimit": 2}, doc["rejects"]
    assert doc["totals"]["received"] == 3 and doc["totals"]["delivered"] == 5, doc["totals"]
