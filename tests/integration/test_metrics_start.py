"""`sluice start` serves every daemon's /metrics on one port
(start_metrics_listen, issue 13): one `sluice start` with all five filters
(test_filter_switches' Chain, unbound on loopback), start_metrics_listen on
a free loopback port and sluice-spf with a port of its own
(spf_metrics_listen); the others are given theirs by the supervisor.

Proves: the merged text passes `promtool check metrics` (no output) and has
sluice_up 1 and process_* for sluiced and each filter under its daemon
label, and the supervisor's own process_* (daemon="sluice"); one message
moves sluice_messages_received_total{daemon="sluiced"} and each milter's
message counter by exactly one; a filter switched off with `sluice reload`
has no series left (and is back after the next reload); a filter that does
not answer (SIGSTOP) is sluice_up 0 after the 2s timeout while the others
are served; a SIGKILLed filter's restart moves its
sluice_filter_restarts_total by one and the restarted one is scraped on the
same port; other paths are 404."""

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, free_port, sigstop, wait_for
from test_filter_switches import FILTERS, MILTERS, Chain, running_chain
from test_metrics import parse, scrape, total, value

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DAEMONS = ["sluiced"] + ["sluice-" + f for f in FILTERS]
pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(BIN, b)) for b in ["sluice", "sluiced"] + ["sluice-" + f for f in FILTERS]),
    reason="sluice, sluiced and the five filters are not built")


class MetricsChain(Chain):
    """Chain with start_metrics_listen, and spf_metrics_listen of its own."""

    def write(self, on):
        if not hasattr(self, "mport"):
            self.mport, self.spf_port = free_port(), free_port()
            while self.spf_port == self.mport:
                self.spf_port = free_port()
            with open(self.conf, "a") as f:
                f.write("start_metrics_listen = 127.0.0.1:%d\nspf_metrics_listen = 127.0.0.1:%d\n"
                        % (self.mport, self.spf_port))
        super().write(on)

    def scrape(self):
        return scrape(self.mport)

    def samples(self):
        return parse(self.scrape())


@pytest.fixture(scope="module")
def chain():
    yield from running_chain(MetricsChain)


def promtool(text):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert r.returncode == 0 and not r.stdout and not r.stderr, (r.stdout, r.stderr, text)


def daemons_in(samples):
    return {dict(ls).get("daemon") for (_, ls) in samples}


def test_one_port_serves_every_daemon(chain):
    text = chain.scrape()
    promtool(text)
    s = parse(text)
    for d in DAEMONS:
        assert value(s, "sluice_up", daemon=d) == 1, (d, text)
        assert ("sluice_filter_restarts_total", frozenset({("daemon", d)})) in s, d
        assert ("process_open_fds", frozenset({("daemon", d)})) in s, d
        assert ("sluice_metrics_dropped_updates_total", frozenset({("daemon", d)})) in s, d
    assert ("process_open_fds", frozenset({("daemon", "sluice")})) in s
    assert daemons_in(s) == set(DAEMONS) | {"sluice"}
    # every series has its daemon; each family's HELP and TYPE once (promtool too)
    assert all(dict(ls).get("daemon") for (_, ls) in s)
    for fam in ("sluice_dns_queries_total", "process_open_fds"):
        assert text.count("# TYPE %s " % fam) == 1 and text.count("# HELP %s " % fam) == 1
    assert {dict(ls)["daemon"] for (n, ls) in s if n == "sluice_dns_queries_total"} == \
        {"sluice-" + f for f in FILTERS}
    # sluice-spf has a port of its own and is scraped there; the others got one of the supervisor's
    gen = open(os.path.join(chain.dir, "run", "sluice.conf")).read().split("added by `sluice start`")[1]
    assert "spf_metrics_listen" not in gen
    for name in ("dkim", "dmarc", "spam", "ratelimit"):
        assert "\n%s_metrics_listen = fd:" % name in gen, gen
    assert "\nmetrics_listen = fd:" in gen, gen
    assert value(parse(scrape(chain.spf_port)), "sluice_dns_queries_total", filter="spf") >= 0
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(chain.mport, "/")
    assert e.value.code == 404


def test_a_message_moves_the_counters_by_one(chain):
    before = chain.samples()
    code, text, data = chain.send()
    assert code == 250, text
    after = chain.samples()

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("sluice_messages_received_total", daemon="sluiced") == 1
    assert moved("sluice_messages_received_total") == 1
    for m in MILTERS:
        assert moved("sluice_filter_messages_total", daemon="sluice-" + m) == 1, m
    for p in ("spf", "ratelimit"):
        assert moved("sluice_filter_requests_total", daemon="sluice-" + p) >= 1, p


def test_a_filter_switched_off_disappears(chain):
    chain.reload(set(FILTERS) - {"spam"})
    try:
        text = chain.scrape()
        promtool(text)
        s = parse(text)
        assert "sluice-spam" not in daemons_in(s), text
        assert 'daemon="sluice-spam"' not in text
        assert not any(n.startswith("sluice_spam_") for (n, _) in s)
        for d in set(DAEMONS) - {"sluice-spam"}:
            assert value(s, "sluice_up", daemon=d) == 1, d
    finally:
        chain.reload(set(FILTERS))
    s = chain.samples()
    assert value(s, "sluice_up", daemon="sluice-spam") == 1
    assert ("process_open_fds", frozenset({("daemon", "sluice-spam")})) in s


def test_a_filter_that_does_not_answer_is_down(chain):
    pid = chain.status()["dkim"]["pid"]
    sigstop(pid)   # (stopped for sure: a busy machine may run it once more after the kill)
    try:
        t0 = time.monotonic()
        text = chain.scrape()
        took = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    promtool(text)
    s = parse(text)
    assert value(s, "sluice_up", daemon="sluice-dkim") == 0 and 1.5 < took < 8, (took, text)
    assert "sluice-dkim" not in {dict(ls)["daemon"] for (n, ls) in s if n != "sluice_up" and
                                 n != "sluice_filter_restarts_total"}
    for d in set(DAEMONS) - {"sluice-dkim"}:
        assert value(s, "sluice_up", daemon=d) == 1, d
    assert chain.status()["dkim"]["pid"] == pid	# stopped, not restarted
    wait_for(lambda: value(chain.samples(), "sluice_up", daemon="sluice-dkim") == 1, timeout=30,
             what="sluice-dkim answering again")


@pytest.mark.parametrize("name", ["spf", "ratelimit"])
def test_a_killed_filter_is_scraped_after_its_restart(chain, name):
    d = "sluice-" + name
    rows = chain.status()
    old, restarts = rows[name]["pid"], rows[name]["restarts"]
    before = chain.samples()
    assert value(before, "sluice_filter_restarts_total", daemon=d) == restarts
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: (lambda r: r["pid"] not in (0, old) and not r["down"] and r["restarts"] == restarts + 1)
             (chain.status()[name]), timeout=30, what="%s restarted (log: %s)" % (name, chain.log()[-3000:]))
    # restarted means its socket answers; its /metrics (the same port: spf's own, ratelimit's inherited) too
    after = wait_for(lambda: (lambda s: value(s, "sluice_up", daemon=d) == 1 and s)(chain.samples()), timeout=30,
                     what="%s scraped after its restart" % d)
    assert value(after, "sluice_filter_restarts_total", daemon=d) - \
        value(before, "sluice_filter_restarts_total", daemon=d) == 1
    for other in set(DAEMONS) - {d}:
        assert value(after, "sluice_filter_restarts_total", daemon=other) == \
            value(before, "sluice_filter_restarts_total", daemon=other), other
    # the new process: its start time moved
    assert value(after, "process_start_time_seconds", daemon=d) > value(before, "process_start_time_seconds", daemon=d)
