"""Per-filter switches of the integrated server (`sluice start`), for each of
the five filters (issue 14): `<filter>_enable = no` + `sluice reload` stops
the filter and takes it out of sluiced's chain (its process and socket are
gone, `sluice status` no longer lists it, the next message has no trace of it
and is delivered); `<filter>_enable = yes` + reload brings it back. A filter
killed with SIGKILL: while it is down sluiced applies the filter's default
action (milter_default_action = tempfail for the milters,
smtpd_policy_service_default_action for the policy filters: 451 either way),
then `sluice start` restarts it (new pid, restarts 1 in `sluice status`) and
messages show its effect again.

One `sluice start` with all five filters and a real DNS server (unbound on
loopback) for the whole module. Messages come from 127.0.0.2: outside
mynetworks, so SPF, DMARC and spam look at it, and an internal host of
sluice-dkim, so it is signed."""

import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import BIN, SmtpRaw, Sluiced, sigstop, wait_for
from dnsserver import DnsServer
from postfix_dkim_harness import headers

FILTERS = ("dkim", "dmarc", "spam", "spf", "ratelimit")
MILTERS = ("dkim", "dmarc", "spam")
pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(BIN, b)) for b in ["sluice"] + ["sluice-" + f for f in FILTERS]),
    reason="sluice and the five filters are not built")

POLICY_DOWN = "451 4.3.5 policy filter down (test)"

ZONE = ('example.com. 300 TXT "v=spf1 ip4:127.0.0.2 -all"\n'
        '_dmarc.example.com. 300 TXT "v=DMARC1; p=none"\n')


def trace(data, name):
    """Whether the message data shows the work of filter name."""
    if name == "dkim":
        return bool(headers(data, "DKIM-Signature"))
    if name == "dmarc":
        return any("dmarc=" in h for h in headers(data, "Authentication-Results"))
    if name == "spam":
        return bool(headers(data, "X-Spam-Status"))
    if name == "spf":
        return bool(headers(data, "Received-SPF"))
    return headers(data, "X-Ratelimit-Test") == ["seen"]


class Chain:
    """sluiced + the five filters under `sluice start -f`, in a temp dir."""

    def __init__(self, dns):
        self.dir = tempfile.mkdtemp(prefix="sluice-switches.")
        os.chmod(self.dir, 0o755)
        self.n = itertools.count(1)
        subprocess.run([os.path.join(BIN, "sluice"), "keygen", "-d", "example.com", "-s", "sel", "-D",
                        os.path.join(self.dir, "keys")], check=True, capture_output=True)
        rules = os.path.join(self.dir, "ratelimit.rules")
        with open(rules, "w") as f:
            f.write("id=MARK; action=PREPEND X-Ratelimit-Test: seen\n")
        d = self.dir
        self.base = (f"run_directory = {d}/run\ndata_directory = {d}\n"
                     f"dns_servers = {dns.addr}\ndns_timeout = 1s\ndns_tries = 1\n"
                     "mynetworks = 127.0.0.1/32\nsmtpd_recipient_restrictions = reject_unauth_destination\n"
                     "milter_default_action = tempfail\ngraceful_stop_timeout = 20s\n"
                     f"smtpd_policy_service_default_action = {POLICY_DOWN}\n"
                     "smtpd_policy_service_try_limit = 1\n"
                     "dkim_domain = example.com\ndkim_selector = sel\n"
                     f"dkim_key_file = {d}/keys/sel.private\ndkim_internal_hosts = 127.0.0.2\n"
                     "spf_skip_addresses = 127.0.0.1\n"
                     f"spam_bayes_db = {d}/bayes.lmdb\nspam_scan_outbound = yes\nspam_dns_timeout = 1s\n"
                     f"ratelimit_rules = {rules}\nratelimit_state_file = {d}/ratelimit.lmdb\n")
        self.s = Sluiced(self.dir, self.base)
        self.conf = self.s.conf_path
        self.write(set(FILTERS))
        with open(os.path.join(d, "stderr.log"), "wb") as err:
            self.sup = subprocess.Popen([os.path.join(BIN, "sluice"), "start", "-f", "-c", self.conf],
                                        stdout=subprocess.DEVNULL, stderr=err)
        self.s.proc = self.sup
        try:
            wait_for(lambda: "started:" in self.log() or self.sup.poll() is not None, timeout=90,
                     what="sluice start (log: %s)" % self.log())
            assert "started: 5 filter(s) and sluiced, all answering" in self.log(), self.log()
        except BaseException:
            self.stop()
            raise

    def write(self, on):
        """sluice.conf with the filters in on switched on, the others off."""
        with open(self.conf, "a") as f:
            f.write("".join("%s_enable = %s\n" % (n, "yes" if n in on else "no") for n in FILTERS))

    def log(self):
        return self.s.log_text()

    def sluice(self, *args):
        return subprocess.run([os.path.join(BIN, "sluice")] + list(args) + ["-c", self.conf],
                              capture_output=True, text=True, timeout=60)

    def status(self):
        r = self.sluice("status")
        assert r.returncode == 0, r.stdout + r.stderr
        rows = {}
        for line in r.stdout.splitlines()[2:]:
            p = line.split()
            rows[p[0]] = {"pid": int(p[1]), "restarts": int(p[4]), "down": "(down)" in line}
        return rows

    def mta_children(self):
        mta = self.status()["sluiced"]["pid"]
        kids = set()
        for p in os.listdir("/proc"):
            try:
                with open("/proc/%s/stat" % p) as f:
                    if p.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == mta:
                        kids.add(int(p))
            except (OSError, ValueError, IndexError):
                pass
        return kids

    def reload(self, on, meanwhile=None, chain=None):
        """Switch to the filters in on and `sluice reload`; returns once the
        supervisor says the reload is done: sluiced's receivers from before
        it are gone (only its queue manager, which reloads in place, is
        left), so every receiver runs the new chain, and the filters
        switched off have exited. meanwhile() runs once the supervisor has
        taken the reload and must let it finish. chain: the filters expected
        in sluiced's chain afterwards (default: on)."""
        taken = "reload -- configuration %s;" % self.conf
        started = self.log().count(taken)
        done = self.log().count("reload done --")
        before = self.mta_children()
        self.write(on)
        r = self.sluice("reload")
        assert r.returncode == 0, r.stdout + r.stderr
        if meanwhile:
            wait_for(lambda: self.log().count(taken) > started, timeout=60,
                     what="reload taken (log: %s)" % self.log()[-3000:])
            meanwhile()
        wait_for(lambda: self.log().count("reload done --") > done, timeout=60,
                 what="reload done (log: %s)" % self.log()[-3000:])
        want = ", ".join(n for n in FILTERS if n in (on if chain is None else chain)) or "none"
        assert self.log().rsplit("reload done --", 1)[1].split("\n", 1)[0].endswith(
            "filters in sluiced's chain: " + want), self.log()[-2000:]
        assert len(before & self.mta_children()) <= 1, (before, self.mta_children())

    def session(self, ehlo=True):
        """A new SMTP session from 127.0.0.2, after EHLO."""
        c = SmtpRaw("127.0.0.1", self.s.port, source="127.0.0.2", timeout=30)
        assert c.reply()[0] == 220
        if ehlo:
            assert c.cmd("EHLO client.test")[0] == 250
        return c

    def send(self, held=None):
        """One message from 127.0.0.2, in a new session or on held (left
        open); (code, text, delivered data or None). code is the first
        reply that is not a success."""
        n = next(self.n)
        c = held or self.session(ehlo=False)
        try:
            for line in ([] if held else ["EHLO client.test"]) + ["MAIL FROM:<alice@example.com>",
                                                                   "RCPT TO:<bob@example.com>"]:
                code, text = c.cmd(line)
                if code != 250:
                    return code, text, None
            code, text = c.cmd("DATA")
            if code != 354:
                return code, text, None
            c.send(b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: switches %d\r\n"
                   b"Date: Wed, 02 Dec 2026 12:00:00 +0000\r\nMessage-ID: <sw%d@example.com>\r\n\r\n"
                   b"Hello Bob, lunch at noon?\r\n.\r\n" % (n, n))
            code, text = c.reply()
            if code != 250:
                return code, text, None
        finally:
            if not held:
                c.cmd("QUIT")
                c.close()
        tag = b"Message-ID: <sw%d@example.com>" % n

        def found():
            for p in self.s.delivered("bob"):
                data = open(p, "rb").read()
                if tag in data:
                    return data
            return None
        try:
            return code, text, wait_for(found, timeout=30, what="delivery of message %d" % n)
        except AssertionError as e:   # the log as it is at the timeout, not as it was at the 250
            raise AssertionError("%s (log: %s; queue: %s; stderr: %s)" % (
                e, self.log()[-6000:], self.queue_state(), self.stderr_text()[-3000:]))

    def stderr_text(self):
        """what the supervisor and its children wrote to stderr (sanitizer reports)"""
        try:
            with open(os.path.join(self.dir, "stderr.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def queue_state(self):
        """the files in each queue directory (for a failure's message)"""
        q = self.s.queue
        out = {}
        for sub in ("incoming", "active", "deferred", "hold", "corrupt"):
            try:
                out[sub] = sorted(os.listdir(os.path.join(q, sub)))
            except OSError:
                pass
        return out

    def stop(self):
        self.sluice("stop")
        try:
            self.sup.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.sup.kill()
            self.sup.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def running_chain(cls=Chain):
    """a cls (Chain or a subclass) over its own DNS server, stopped after"""
    with DnsServer(ZONE) as dns:
        c = cls(dns)
        try:
            yield c
        finally:
            c.stop()


@pytest.fixture(scope="module")
def chain():
    yield from running_chain()


def gone(pid):
    """pid has exited and been reaped (or is a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_every_filter_works_in_the_chain(chain):
    code, text, data = chain.send()
    assert code == 250, text
    for name in FILTERS:
        assert trace(data, name), (name, data[:3000])
    assert "Pass" in headers(data, "Received-SPF")[0]


@pytest.mark.parametrize("name", FILTERS)
def test_switch_off_and_on(chain, name):
    run = os.path.join(chain.dir, "run")
    sock = os.path.join(run, name + ".sock")
    old = chain.status()[name]["pid"]
    assert old > 0 and os.path.exists(sock)
    others = set(FILTERS) - {name}
    # a session open across the reload: its receiver keeps the old chain
    # until the session ends, and the filter runs until then
    held = chain.session()

    def on_held_session():
        code, text, data = chain.send(held)
        assert code == 250, text
        for other in FILTERS:
            assert trace(data, other), (other, data[:3000])
        assert "reload done" not in chain.log().rsplit("switched: -" + name, 1)[1]
        assert held.cmd("QUIT")[0] == 221
        held.close()
    chain.reload(others, meanwhile=on_held_session)
    try:
        # the process, the socket, the status line and the wiring are gone
        assert gone(old)
        assert not os.path.exists(sock)
        rows = chain.status()
        assert name not in rows and set(rows) == others | {"sluiced"}, rows
        assert not any(r["down"] for r in rows.values()), rows
        assert sock not in open(os.path.join(run, "sluice.conf")).read().split("added by `sluice start`")[1]
        # the next message: delivered, no trace of it, every other filter still there
        code, text, data = chain.send()
        assert code == 250, text
        assert not trace(data, name), data[:3000]
        for other in others:
            assert trace(data, other), (other, data[:3000])
        assert "%s (pid %d) stopped: switched off" % (name, old) in chain.log()
    finally:
        chain.reload(set(FILTERS))
    rows = chain.status()
    assert rows[name]["pid"] not in (0, old) and not rows[name]["down"], rows
    assert os.path.exists(sock)
    assert "%s switched on: ready on unix:%s" % (name, sock) in chain.log()
    code, text, data = chain.send()
    assert code == 250, text
    for other in FILTERS:
        assert trace(data, other), (other, data[:3000])


@pytest.mark.parametrize("name", FILTERS)
def test_killed_filter_is_restarted_and_its_default_action_applies_while_down(chain, name):
    rows = chain.status()
    old, restarts = rows[name]["pid"], rows[name]["restarts"]

    def restarted(old, n):
        wait_for(lambda: (lambda r: r["pid"] not in (0, old) and not r["down"] and r["restarts"] == n)
                 (chain.status()[name]), timeout=30, what="%s restarted (log: %s)" % (name, chain.log()[-3000:]))
        new = chain.status()[name]["pid"]
        assert "%s restarted (pid %d)" % (name, new) in chain.log()
        assert "warning: %s (pid %d) killed by signal 9; restarting in" % (name, old) in chain.log()
        # the next message has the filter's effect again (for the policy
        # filters: sluiced's kept connections to the old one are not used)
        code, text, data = chain.send()
        assert code == 250, (text, chain.log()[-3000:])
        for other in FILTERS:
            assert trace(data, other), (other, data[:3000])
        return new

    # SIGKILL: `sluice start` restarts it (after its backoff)
    os.kill(old, signal.SIGKILL)
    old = restarted(old, restarts + 1)

    # while it is down, its default action: the supervisor is held, so that
    # the window in which sluiced meets the dead socket is ours, not the backoff's
    mark = len(chain.log())
    sigstop(chain.sup.pid)
    try:
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: gone(old), what="%s killed" % name)
        code, text, data = chain.send()
    finally:
        os.kill(chain.sup.pid, signal.SIGCONT)
    assert data is None and code == 451, (code, text)
    sock = os.path.join(chain.dir, "run", name + ".sock")
    log = chain.log()[mark:]
    if name in MILTERS:
        assert re.search(r"warning: milter unix:%s: .*; default_action=tempfail" % re.escape(sock), log), log
    else:
        assert "policy filter down (test)" in text, text
        assert re.search(r"warning: policy service unix:%s: .*\(try 1 of 1\)" % re.escape(sock), log), log
    restarted(old, restarts + 2)


def test_a_filter_switched_on_that_does_not_come_up_stays_out(chain):
    # sluice-ratelimit exits at start without its rules file: the reload
    # leaves it out of sluiced's chain (mail flows without it) and says so
    others = set(FILTERS) - {"ratelimit"}
    chain.reload(others)
    rules = os.path.join(chain.dir, "ratelimit.rules")
    with open(chain.conf, "a") as f:
        f.write("ratelimit_rules = %s/missing.rules\n" % chain.dir)
    try:
        chain.reload(set(FILTERS), chain=others)
        assert "ratelimit stays out of sluiced's chain" in chain.log(), chain.log()[-3000:]
        rows = chain.status()
        assert set(rows) == others | {"sluiced"}, rows
        assert not os.path.exists(os.path.join(chain.dir, "run", "ratelimit.sock"))
        code, text, data = chain.send()
        assert code == 250, text
        assert not trace(data, "ratelimit") and all(trace(data, n) for n in others), data[:3000]
    finally:
        with open(chain.conf, "a") as f:
            f.write("ratelimit_rules = %s\n" % rules)
        chain.reload(set(FILTERS))
    code, text, data = chain.send()
    assert code == 250, text
    assert all(trace(data, n) for n in FILTERS), data[:3000]
