"""sluice-ratelimit end to end over the Postfix policy protocol (embedded
LMDB backend): limits per SASL user with the rule's text, recipients vs
messages, SIGHUP and restart keep counters, spawn mode, malformed input,
many clients, -n, show/reset, dry run, greylisting with a short delay."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from test_ratelimit_driver import (RL, Client, RlDaemon, free_port, policy, policy_bytes, read_reply,
                                   wait_for, write_conf)

SASL_RULES = """# outbound: 3 messages per hour per SASL user
id=OUT; sasl_username=~.; action=rate(sasl_username/3/3600/DEFER_IF_PERMIT 4.7.1 sending limit reached)
"""


@pytest.fixture
def rld(tmp_path):
    started = []

    def make(rules="", extra="", **kw):
        d = RlDaemon(tmp_path, rules, extra, **kw).start()
        started.append(d)
        return d

    yield make
    for d in started:
        assert d.stop() in (0, None), d.log_text()[-3000:]


def msg(c, user, inst, rcpts=("a@example.org",)):
    """One message's RCPT requests on connection c; returns the actions."""
    return [c.ask(sasl_username=user, instance=inst, recipient=r, sender=user + "@example.com",
                  client_address="192.0.2.10", queue_id="Q" + inst) for r in rcpts]


def test_sasl_limit_exact_then_defer(rld):
    d = rld(SASL_RULES)
    c = Client(d.port)
    for i in range(3):
        assert msg(c, "joe", "m%d" % i, ("a@example.org", "b@example.org")) == ["DUNNO", "DUNNO"]
    act = msg(c, "joe", "m3")[0]
    assert act.startswith("DEFER_IF_PERMIT 4.7.1 sending limit reached (limit OUT: 3 messages per "
                          "3600 s for sasl_username=joe, retry in "), act
    assert msg(c, "ann", "m4") == ["DUNNO"]
    assert c.ask(instance="m5", recipient="x@example.org") == "DUNNO"  # no SASL user: no limit
    c.close()
    log = d.log_text()
    assert "Qm3: ratelimit: state=RCPT, instance=m3, client=[192.0.2.10], sasl_username=joe" in log
    assert "rule=OUT, limit=rate, key=rate:3/3600s:sasl_username=joe" in log and "result=over" in log
    # issue 13's common keys at the end of the line (docs/EVENTS.md)
    assert re.search(r"Qm3: ratelimit: .*, result=over, action=\"[^\"]*\", filter=ratelimit, "
                     r"client_ip=192\.0\.2\.10, sender=\S+, recipient=\S+, reason=ratelimit_over, ms=\d+$",
                     log, re.M), log
    assert log.count("result=under") == 4  # the first RCPT of each message and ann
    assert log.count("result=none") == 4   # later RCPTs of counted messages, no SASL user


def test_recipients_vs_messages(rld):
    d = rld("id=RC; action=rcpt(sender/5/3600/450 4.7.1 too many recipients)\n"
            "id=MS; action=rate(sender/2/3600/450 4.7.1 too many messages)\n")
    c = Client(d.port)
    # message 1: 3 recipients; message 2: 2 recipients; message 3: refused by the message limit
    assert [c.ask(sender="s@x.org", instance="a", recipient="r%d@y.org" % i) for i in range(3)] == ["DUNNO"] * 3
    assert [c.ask(sender="s@x.org", instance="b", recipient="r%d@y.org" % i) for i in range(2)] == ["DUNNO"] * 2
    act = c.ask(sender="s@x.org", instance="c", recipient="r@y.org")
    assert act.startswith("450 4.7.1 too many recipients (limit RC: 5 recipients"), act
    c.close()
    d2 = rld("id=MS; action=rate(sender/2/3600/450 4.7.1 too many messages)\n")
    c = Client(d2.port)
    for inst in ("a", "b"):
        assert [c.ask(sender="s@x.org", instance=inst, recipient="r%d@y.org" % i) for i in range(4)] == ["DUNNO"] * 4
    assert c.ask(sender="s@x.org", instance="c").startswith("450 4.7.1 too many messages (limit MS: 2 messages")
    c.close()


def test_end_of_message_counting(rld):
    d = rld("id=SZ; protocol_state==END-OF-MESSAGE; action=size(client_address/10000/3600/DEFER too big)\n"
            "id=RC; protocol_state==END-OF-MESSAGE; action=rcpt(client_address/4/3600/DEFER too many)\n")
    eom = dict(protocol_state="END-OF-MESSAGE", client_address="192.0.2.1")
    assert policy(d.port, dict(eom, instance="a", size="6000", recipient_count="2")) == "DUNNO"
    assert policy(d.port, dict(eom, instance="b", size="5000", recipient_count="1")).startswith(
        "DEFER too big (limit SZ: 10000 bytes per 3600 s for client_address=192.0.2.1")
    assert policy(d.port, dict(eom, instance="c", size="100", recipient_count="3")).startswith(
        "DEFER too many (limit RC: 4 recipients")
    assert policy(d.port, dict(eom, instance="d", size="100", recipient_count="2")) == "DUNNO"
    assert policy(d.port, dict(client_address="192.0.2.1", instance="e")) == "DUNNO"  # not EOM


def test_reload_and_restart_keep_counters(rld, tmp_path):
    state = os.path.join(str(tmp_path), "state.lmdb")
    d = rld(SASL_RULES, state=state)
    c = Client(d.port)
    for i in range(2):
        assert msg(c, "joe", "m%d" % i) == ["DUNNO"]
    c.close()
    # SIGHUP with a new rule added: joe's counter is kept
    with open(d.rules, "a") as f:
        f.write("id=BLOCK; sender==evil@example.com; action=REJECT go away\n")
    d.reload()
    assert "configuration reloaded" in d.log_text()
    assert policy(d.port, {"sender": "evil@example.com"}) == "REJECT go away"
    assert policy(d.port, {"sasl_username": "joe", "instance": "m2"}) == "DUNNO"
    assert policy(d.port, {"sasl_username": "joe", "instance": "m3"}).startswith("DEFER_IF_PERMIT 4.7.1")
    # a bad rule file on reload keeps the old rules
    with open(d.rules, "a") as f:
        f.write("id=BAD; action=rate(x)\n")
    d.reload()
    assert "reload failed, keeping the old configuration" in d.log_text()
    assert ".rules:4: action=rate(x): expected KEY/N/SECONDS/ACTION" in d.log_text()
    assert policy(d.port, {"sender": "evil@example.com"}) == "REJECT go away"
    # restart: the LMDB state file keeps joe's count
    with open(d.rules, "w") as f:
        f.write(SASL_RULES)
    assert d.stop() == 0
    d2 = RlDaemon(tmp_path, SASL_RULES, state=state).start()
    try:
        assert policy(d2.port, {"sasl_username": "joe", "instance": "m4"}).startswith("DEFER_IF_PERMIT")
        assert policy(d2.port, {"sasl_username": "bob", "instance": "m5"}) == "DUNNO"
        # show and reset from the command line
        p = d2.run("show", "rate:")
        assert p.returncode == 0, p.stderr
        out = p.stdout.decode()
        assert "rate:3/3600s:sasl_username=joe count=3.00 limit=3/3600s reset=" in out, out
        assert "sasl_username=bob count=1.00" in out
        p = d2.run("reset", "rate:3/3600s:sasl_username=joe")
        assert p.returncode == 0 and b"reset" in p.stdout
        assert policy(d2.port, {"sasl_username": "joe", "instance": "m6"}) == "DUNNO"
    finally:
        assert d2.stop() == 0, d2.log_text()[-2000:]


def test_memory_only_state_and_dry_run(rld):
    d = rld("id=L; action=rate(client_address/1/60/DEFER slow)\n",
            "ratelimit_dry_run = yes\n", state="")
    assert policy(d.port, {"client_address": "192.0.2.1"}) == "DUNNO"
    assert policy(d.port, {"client_address": "192.0.2.1"}) == "DUNNO"
    assert 'dry_run=yes, would="DEFER slow (limit L: 1 messages per 60 s' in d.log_text()


def test_greylisting(rld):
    d = rld("id=G; client_name==unknown; action=greylist\n",
            "greylist_delay = 2s\ngreylist_auto_allow_clients = 1\n")
    a = {"client_address": "198.51.100.7", "client_name": "unknown", "sender": "x@a.example",
         "recipient": "u@example.org"}
    assert policy(d.port, a) == ("DEFER_IF_PERMIT Greylisted, see "
                                 "https://postgrey.schweikert.ch/help/example.org.html")
    assert policy(d.port, a).startswith("DEFER_IF_PERMIT Greylisted")  # retry too early
    time.sleep(2.2)
    assert policy(d.port, a) == "DUNNO"
    # one passed triplet auto-allows the client's /24 (greylist_auto_allow_clients = 1)
    assert policy(d.port, dict(a, client_address="198.51.100.8", sender="new@b.example")) == "DUNNO"
    assert policy(d.port, dict(a, client_name="mx.example.net")) == "DUNNO"  # rule not met
    log = d.log_text()
    assert "result=greylisted," in log and "result=greylisted_early" in log
    assert "greylist=passed" in log and "greylist=auto_allowed" in log


@pytest.mark.parametrize("junk", [
    b"request=smtpd_access_policy\nsender=a@b.c\n",                               # no blank line
    b"request=smtpd_access_policy\nsender=" + b"x" * 70000 + b"\n\n",              # oversized
    b"\x00\x01\x02\xff garbage \x00\n\n",                                          # binary
    b"no equals sign here\n\n",
], ids=["no-blank-line", "oversized", "binary", "no-equals"])
def test_malformed_closes_without_reply(rld, junk):
    d = rld(SASL_RULES)
    other = Client(d.port)
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            assert s.recv(4096) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
    assert d.alive()
    assert other.ask(sasl_username="joe", instance="x") == "DUNNO"
    other.close()
    assert "warning: ratelimit:" in d.log_text()


def test_pipelined_byte_at_a_time_and_concurrency(rld):
    d = rld("id=G; action=rate(global/1000/3600/DEFER busy)\n")
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in policy_bytes({"instance": "one"}):
            s.send(bytes([b]))
        assert read_reply(s) == "action=DUNNO\n\n"
        s.sendall(b"".join(policy_bytes({"instance": "p%d" % i}) for i in range(3)))
        buf = b""
        while buf.count(b"\n\n") < 3:
            buf += s.recv(65536)
        assert buf == b"action=DUNNO\n\n" * 3
    results, errors = [], []

    def client(n):
        try:
            c = Client(d.port)
            for i in range(25):
                results.append(c.ask(instance="c%d-%d" % (n, i)))
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    # 4 before + 1000 requests against a global limit of 1000: exactly 996 more pass
    assert results.count("DUNNO") == 996
    assert len([r for r in results if r.startswith("DEFER busy (limit G: 1000 messages")]) == 4


def test_spawn_mode(tmp_path):
    conf = write_conf(tmp_path, SASL_RULES, state="")
    data = b"".join(policy_bytes({"sasl_username": "joe", "instance": "s%d" % i}) for i in range(4))
    p = subprocess.run([RL, "-c", conf, "-s"], input=data, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode().split("\n\n")
    assert out[:3] == ["action=DUNNO"] * 3
    assert out[3].startswith("action=DEFER_IF_PERMIT 4.7.1 sending limit reached")
    a, b = socket.socketpair()
    proc = subprocess.Popen([RL, "-c", conf, "-s"], stdin=b, stdout=b)
    b.close()
    a.sendall(policy_bytes({"sasl_username": "joe"}))
    assert read_reply(a) == "action=DUNNO\n\n"
    a.sendall(b"junk without equals\n\n")
    a.settimeout(10)
    assert a.recv(100) == b""
    assert proc.wait(timeout=10) == 0
    a.close()


def test_check_mode_help_version(tmp_path):
    good = write_conf(tmp_path, SASL_RULES, name="good.conf")
    assert subprocess.run([RL, "-c", good, "-n"]).returncode == 0
    bad = write_conf(tmp_path, "id=A; action=OK\n\nid=B; sender=~/(/; action=OK\n", name="bad.conf")
    p = subprocess.run([RL, "-c", bad, "-n"], capture_output=True)
    assert p.returncode == 1 and b"bad.conf.rules:3: sender=~/(/: bad regular expression" in p.stderr, p.stderr
    bad2 = write_conf(tmp_path, "", "ratelimit_algorithm = leaky\n", name="bad2.conf")
    p = subprocess.run([RL, "-c", bad2, "-n"], capture_output=True)
    assert p.returncode == 1 and b"ratelimit_algorithm" in p.stderr
    p = subprocess.run([RL, "--version"], capture_output=True)
    assert p.returncode == 0 and p.stdout.startswith(b"sluice-ratelimit (sluice) ")
    p = subprocess.run([RL, "--help"], capture_output=True)
    assert p.returncode == 0 and b"usage: sluice-ratelimit" in p.stdout
    # a state file that cannot be created stops the start with its name
    p = subprocess.run([RL, "-c", write_conf(tmp_path, "", name="s.conf", state="/nonexistent/x.lmdb"),
                        "-f"], capture_output=True, timeout=30)
    assert p.returncode == 1 and b"/nonexistent/x.lmdb" in p.stdout + p.stderr


def test_workers_share_state(rld, tmp_path):
    d = rld("id=G; action=rate(global/300/3600/DEFER busy)\n", "ratelimit_workers = 2\n")
    results, errors = [], []

    def client(n):
        try:
            c = Client(d.port)
            for i in range(20):
                results.append(c.ask(instance="w%d-%d" % (n, i)))
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert results.count("DUNNO") == 300 and len(results) == 400
    # (which worker accepts which connection is the kernel's business: not asserted)
    # SIGHUP reaches the workers; SIGTERM stops them all
    with open(d.rules, "w") as f:
        f.write("id=B; sender==x@y.z; action=REJECT no\n")
    d.reload()
    wait_for(lambda: d.log_text().count("configuration reloaded") >= 2, what="both workers reloaded")
    assert policy(d.port, {"sender": "x@y.z"}) == "REJECT no"
    assert d.stop() == 0
    assert d.log_text().count("ratelimit: stopped:") == 2
    # memory-only state cannot be shared between workers
    p = subprocess.run([RL, "-c", write_conf(tmp_path, "", "ratelimit_workers = 2\n", name="w.conf", state=""),
                        "-f"], capture_output=True, timeout=30)
    assert p.returncode == 1 and b"ratelimit_workers > 1 needs a ratelimit_state_file" in p.stdout + p.stderr


def test_relative_paths_from_the_config_directory(tmp_path):
    """Relative ratelimit_rules / state / log paths are relative to the config file's
    directory, whatever directory the daemon starts in (-c relative too); reload works."""
    cdir = tmp_path / "etc"
    cdir.mkdir()
    (cdir / "rules.cf").write_text("id=L; action=rate(sender/1/3600/DEFER x)\n")
    port = free_port()
    (cdir / "rl.conf").write_text("mail_owner = root\nmaillog_file = rl.log\nratelimit_rules = rules.cf\n"
                                  "ratelimit_state_file = state.lmdb\n"
                                  "ratelimit_socket = inet:127.0.0.1:%d\n" % port)
    proc = subprocess.Popen([RL, "-c", "etc/rl.conf", "-f"], cwd=str(tmp_path))
    try:
        wait_for(lambda: (cdir / "rl.log").exists() and "listening" in (cdir / "rl.log").read_text(),
                 what="listening")
        assert policy(port, {"sender": "a@b.c"}) == "DUNNO"
        assert policy(port, {"sender": "a@b.c"}).startswith("DEFER x")
        assert (cdir / "state.lmdb").exists()
        (cdir / "rules.cf").write_text("id=B; sender==a@b.c; action=REJECT changed\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in (cdir / "rl.log").read_text(), what="reload")
        assert policy(port, {"sender": "a@b.c"}) == "REJECT changed"
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
