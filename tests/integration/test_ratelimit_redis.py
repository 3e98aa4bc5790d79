"""sluice-ratelimit with ratelimit_backend = redis against a real
redis-server started here (private dir, free loopback port, stopped by
PID): two daemons share one limit exactly; the same requests give the same
replies as the embedded backend; redis-server stopped (killed, or
SIGSTOPped past ratelimit_redis_timeout) -> the configured default, then
recovery; SCRIPT FLUSH (NOSCRIPT) is survived; show/reset; greylisting
through Redis; a unix socket with password and database; a wrong
password."""
import os
import signal
import threading
import time

import pytest

from test_ratelimit_driver import REDIS, Client, RedisServer, RlDaemon, policy, wait_for
from conftest import sigstop

if not os.path.exists(REDIS):
    pytest.skip("needs redis-server", allow_module_level=True)


def redis_conf(r, extra=""):
    return ("ratelimit_backend = redis\nratelimit_redis_server = 127.0.0.1:%d\n"
            "ratelimit_redis_prefix = t%d:\n%s" % (r.port, time.monotonic_ns() % 100000, extra))


@pytest.fixture
def redis(tmp_path):
    with RedisServer(tmp_path) as r:
        yield r


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


def ready(d):
    wait_for(lambda: "redis: connected" in d.log_text(), what="redis connection (%s)" % d.log_text()[-500:])


def test_two_daemons_share_one_limit_exactly(rld, redis):
    rules = ("id=OUT; sasl_username=~.; action=rate(sasl_username/60/3600/DEFER_IF_PERMIT 4.7.1 limit)\n"
             "id=ALL; action=rcpt(global/150/3600/DEFER_IF_PERMIT 4.7.1 global)\n")
    extra = redis_conf(redis)
    d1 = rld(rules, extra)
    d2 = rld(rules, extra)
    ready(d1)
    ready(d2)
    results, errors = [], []

    def client(n):
        try:
            c = Client((d1 if n % 2 else d2).port)
            for i in range(20):
                results.append(c.ask(sasl_username="joe", instance="m%d-%d" % (n, i),
                                     recipient="r@example.org"))
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(results) == 200
    # 200 messages from joe over two daemons: exactly 60 pass, the rest get joe's limit
    assert results.count("DUNNO") == 60, (results.count("DUNNO"), d1.log_text()[-2000:])
    assert all(r.startswith("DEFER_IF_PERMIT 4.7.1 limit (limit OUT: 60 messages per 3600 s")
               for r in results if r != "DUNNO")
    # the global recipient limit saw exactly the 60 accepted recipients; 90 more fit
    passed = 0
    for i in range(100):
        a = policy((d1, d2)[i % 2].port, {"instance": "g%d" % i, "recipient": "x@example.org"})
        passed += a == "DUNNO"
    assert passed == 90
    assert "result=over" in d1.log_text() and "result=over" in d2.log_text()


def test_same_replies_as_embedded(rld, redis):
    rules = ("id=MS; action=rate(sender/3/60/DEFER m)\n"
             "id=RC; action=rcpt(sender/5/60/DEFER r)\n"
             "id=SZ; protocol_state==END-OF-MESSAGE; action=size(client_address/3000/60/DEFER s)\n")
    emb = rld(rules, state="")
    red = rld(rules, redis_conf(redis))
    ready(red)
    seq = []
    for m in range(5):
        for r in range(2):
            seq.append({"sender": "a@b.c", "instance": "m%d" % m, "recipient": "u%d@x.org" % r,
                        "client_address": "192.0.2.1"})
        seq.append({"sender": "a@b.c", "instance": "m%d" % m, "protocol_state": "END-OF-MESSAGE",
                    "recipient_count": "2", "size": "900", "client_address": "192.0.2.1"})
    strip = lambda a: a.split(", retry in")[0]  # noqa: E731  (seconds may differ by one)
    got_e = [strip(policy(emb.port, q)) for q in seq]
    got_r = [strip(policy(red.port, q)) for q in seq]
    assert got_e == got_r
    assert any(a.startswith("DEFER") for a in got_e) and "DUNNO" in got_e


def test_redis_down_default_then_recovery(rld, redis, tmp_path):
    rules = "id=L; action=rate(sender/100/60/DEFER x)\n"
    d_dunno = rld(rules, redis_conf(redis, "ratelimit_redis_timeout = 1s\n"))
    d_defer = rld(rules, redis_conf(redis, "ratelimit_on_backend_error = defer\n"))
    ready(d_dunno)
    ready(d_defer)
    assert policy(d_dunno.port, {"sender": "a@b.c"}) == "DUNNO"
    port = redis.port
    redis.stop()
    assert policy(d_dunno.port, {"sender": "a@b.c"}) == "DUNNO"
    assert policy(d_defer.port, {"sender": "a@b.c"}) == ("DEFER_IF_PERMIT 4.3.0 Rate limit service "
                                                         "temporarily unavailable")
    assert "result=backend_error" in d_defer.log_text()
    assert "redis: connection lost" in d_defer.log_text() or "not connected" in d_defer.log_text()
    # back on the same port: both reconnect (back-off at most 5 s) and count again
    r2 = RedisServer(tmp_path, port=port).start()
    try:
        wait_for(lambda: d_defer.log_text().count("redis: connected") >= 2, timeout=15, what="reconnect")
        assert policy(d_defer.port, {"sender": "a@b.c"}) == "DUNNO"
        wait_for(lambda: d_dunno.log_text().count("redis: connected") >= 2, timeout=15, what="reconnect")
        assert policy(d_dunno.port, {"sender": "z@b.c"}) == "DUNNO"
        assert "result=under" in d_dunno.log_text().split("redis: connected")[-1]
    finally:
        r2.stop()


def test_script_flush_show_reset_greylist(rld, redis):
    d = rld("id=G; client_name==unknown; action=greylist\n"
            "id=L; action=rate(sender/2/3600/DEFER x)\n",
            redis_conf(redis, "greylist_delay = 1s\n"))
    ready(d)
    assert policy(d.port, {"sender": "a@b.c", "client_name": "mx.example"}) == "DUNNO"
    assert b"+OK" in redis.command("SCRIPT", "FLUSH")
    assert policy(d.port, {"sender": "a@b.c", "client_name": "mx.example"}) == "DUNNO"  # EVAL again
    assert policy(d.port, {"sender": "a@b.c", "client_name": "mx.example"}).startswith("DEFER x (limit L")
    p = d.run("show")
    assert p.returncode == 0, p.stderr
    assert "rate:2/3600s:sender=a@b.c count=2.00 limit=2/3600s" in p.stdout.decode(), p.stdout
    p = d.run("reset", "rate:2/3600s:sender=a@b.c")
    assert p.returncode == 0 and b"reset" in p.stdout
    assert policy(d.port, {"sender": "a@b.c", "client_name": "mx.example"}) == "DUNNO"
    g = {"sender": "s@b.c", "client_name": "unknown", "client_address": "203.0.113.9",
         "recipient": "u@example.org"}
    assert policy(d.port, g).startswith("DEFER_IF_PERMIT Greylisted")
    assert "grey:203.0.113.0/24/s@b.c/u@example.org" in d.run("show", "grey").stdout.decode()
    time.sleep(1.1)
    assert policy(d.port, g) == "DUNNO"


def test_unix_socket_password_db(rld, tmp_path):
    with RedisServer(tmp_path, password="s3cret", unix=True) as r:
        d = rld("id=L; action=rate(sender/1/3600/DEFER x)\n",
                "ratelimit_backend = redis\nratelimit_redis_server = unix:%s\n"
                "ratelimit_redis_password = s3cret\nratelimit_redis_db = 3\n" % r.unix)
        ready(d)
        assert policy(d.port, {"sender": "a@b.c"}) == "DUNNO"
        assert policy(d.port, {"sender": "a@b.c"}).startswith("DEFER x")
        out = r.command("EVAL", "redis.call('SELECT', 3) return redis.call('KEYS', '*')", "0")
        assert b"sluice:rl:rate:1/3600s:sender=a@b.c" in out, out
        # a wrong password: not connected, the default answers
        d2 = rld("id=L; action=rate(sender/1/3600/DEFER x)\n",
                 "ratelimit_backend = redis\nratelimit_redis_server = unix:%s\n"
                 "ratelimit_redis_password = wrong\nratelimit_on_backend_error = defer\n" % r.unix)
        wait_for(lambda: "redis:" in d2.log_text() and "warning" in d2.log_text(), what="auth failure")
        assert policy(d2.port, {"sender": "z@b.c"}).startswith("DEFER_IF_PERMIT 4.3.0")


def test_stopped_server_times_out_then_recovers(rld, redis):
    d = rld("id=L; action=rate(sender/100/3600/DEFER x)\n",
            redis_conf(redis, "ratelimit_redis_timeout = 1s\nratelimit_on_backend_error = defer\n"))
    ready(d)
    assert policy(d.port, {"sender": "a@b.c"}) == "DUNNO"
    sigstop(redis.proc.pid)  # TCP stays open, nothing answers
    try:
        t = time.monotonic()
        assert policy(d.port, {"sender": "a@b.c"}).startswith("DEFER_IF_PERMIT 4.3.0")
        assert time.monotonic() - t < 4
        assert "no reply within ratelimit_redis_timeout" in d.log_text()
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: d.log_text().count("redis: connected") >= 2, timeout=15, what="reconnect")
    assert policy(d.port, {"sender": "a@b.c"}) == "DUNNO"
    assert "result=under" in d.log_text().split("redis: connected")[-1]
