"""`sluice ratelimit show [KEY-PREFIX]` and `sluice ratelimit reset KEY`
against a running sluice-ratelimit, with the embedded backend (LMDB state
file) and with redis (a real redis-server on a unix socket in a temp dir):
after a few requests the counter (key, count, limit, reset time) and a
greylist entry are listed, a prefix narrows the list, `reset` clears the
counter so the next request passes, an absent key says so; -c defaults to
$SLUICE_CONF; usage errors exit 2. One daemon per backend for the module."""
import os
import re
import subprocess

import pytest

from test_ratelimit_driver import BIN, REDIS, RedisServer, RlDaemon, policy, wait_for

SLUICE = os.path.join(BIN, "sluice")
RULES = ("id=G; client_name==unknown; action=greylist\n"
         "id=L; action=rate(sender/2/3600/DEFER 4.7.1 slow down)\n")
KEY = "rate:2/3600s:sender=a@b.c"
GREY = "grey:203.0.113.0/24/s@b.c/u@example.org"


def sluice(*args, env=None):
    return subprocess.run([SLUICE, "ratelimit"] + list(args), capture_output=True, timeout=60,
                          env=env)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def rld(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rl-cli-" + request.param)
    redis = None
    extra = ""
    if request.param == "redis":
        if not os.path.exists(REDIS):
            pytest.skip("needs redis-server")
        redis = RedisServer(tmp, unix=True).start()
        extra = "ratelimit_backend = redis\nratelimit_redis_server = unix:%s\n" % redis.unix
    d = RlDaemon(tmp, RULES, extra).start()
    if redis:
        wait_for(lambda: "redis: connected" in d.log_text(), what="redis connection")
    yield d
    rc = d.stop()
    if redis:
        redis.stop()
    assert rc in (0, None), d.log_text()[-3000:]


def test_show_then_reset_lets_the_next_request_pass(rld):
    q = {"sender": "a@b.c", "client_name": "mx.example"}
    got = [policy(rld.port, dict(q, instance="m%d" % i)) for i in range(3)]
    assert got[:2] == ["DUNNO", "DUNNO"] and got[2].startswith("DEFER 4.7.1 slow down"), got
    g = {"sender": "s@b.c", "client_name": "unknown", "client_address": "203.0.113.9",
         "recipient": "u@example.org"}
    assert policy(rld.port, g).startswith("DEFER_IF_PERMIT Greylisted")

    p = sluice("-c", rld.conf, "show")
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert re.search(r"^%s count=2\.\d\d limit=2/3600s reset=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
                     % re.escape(KEY), out, re.M), out
    assert re.search(r"^%s first=\d+ last=\d+ passed=no expires=" % re.escape(GREY), out, re.M), out
    # a prefix narrows the list
    p = sluice("-c", rld.conf, "show", "grey:")
    assert p.returncode == 0 and GREY in p.stdout.decode() and KEY not in p.stdout.decode()

    p = sluice("-c", rld.conf, "reset", KEY)
    assert p.returncode == 0 and p.stdout.decode() == "%s: reset\n" % KEY, (p.stdout, p.stderr)
    # a fresh counter: two more pass, the third is over again
    got = [policy(rld.port, dict(q, instance="r%d" % i)) for i in range(3)]
    assert got[:2] == ["DUNNO", "DUNNO"] and got[2].startswith("DEFER 4.7.1 slow down"), got
    p = sluice("-c", rld.conf, "reset", "rate:no-such-key")
    assert p.returncode == 0 and p.stdout.decode() == "rate:no-such-key: not found\n"


def test_conf_from_environment_and_usage(rld):
    env = dict(os.environ, SLUICE_CONF=rld.conf)
    p = sluice("show", "rate:", env=env)
    assert p.returncode == 0 and KEY in p.stdout.decode(), (p.stdout, p.stderr)
    for bad in ([], ["show", "a", "b"], ["reset"], ["frobnicate"], ["-x", "show"]):
        p = sluice(*bad)
        assert p.returncode == 2 and b"usage: sluice ratelimit" in p.stderr, bad
    p = sluice("-c", rld.conf + ".missing", "show")
    assert p.returncode == 1 and b".missing" in p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to mail_owner")
def test_show_as_root_leaves_a_new_state_file_to_mail_owner():
    """Before the daemon ever ran, `show` as root creates the LMDB state file:
    it must belong to mail_owner, or the daemon could not open it later."""
    import pwd
    import pathlib
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(prefix="rl-owner-")      # pytest's own tmp is root-only (0700)
    try:
        check_owner(pathlib.Path(top), nobody)
    finally:
        shutil.rmtree(top)


def check_owner(tmp_path, nobody):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    os.chmod(tmp_path, 0o755)
    rules = tmp_path / "rules"
    rules.write_text(RULES)
    conf = tmp_path / "sluice.conf"
    conf.write_text("mail_owner = nobody\nratelimit_rules = %s\nratelimit_state_file = %s/rl.lmdb\n"
                    % (rules, state))
    p = sluice("-c", str(conf), "show")
    assert p.returncode == 0, p.stderr
    made = [f for f in os.listdir(state)]
    assert made, "no state file made"
    for f in made:
        assert os.stat(state / f).st_uid == nobody.pw_uid, (f, os.stat(state / f))
