"""`make install`: the tree it writes under DESTDIR (binaries, the config
that is never overwritten, man pages, systemd units, sysusers/tmpfiles),
man pages that render without warnings, sluice.conf(5) listing every
parameter the daemons accept, and units that `systemd-analyze verify`
accepts with the binaries they name in place."""

import glob
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO

MAKE = ["make", "-s", "--no-print-directory", "-C", REPO]


def make_install(**vars):
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    args = MAKE + ["install"] + ["%s=%s" % kv for kv in vars.items()]
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def daemons():
    """bin/sluice-<dir> for every milters/*/main.c and policyd/*/main.c (as the Makefile builds them)."""
    mains = glob.glob(os.path.join(REPO, "milters", "*", "main.c")) + \
        glob.glob(os.path.join(REPO, "policyd", "*", "main.c"))
    return sorted("sluice-" + os.path.basename(os.path.dirname(m)) for m in mains)


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("destdir"))
    make_install(DESTDIR=d)
    return d


def test_tree(dest):
    sbin = os.path.join(dest, "usr/local/sbin")
    for b in ["sluiced", "sluice", "sluice-sendmail"] + daemons():
        p = os.path.join(sbin, b)
        assert os.access(p, os.X_OK), p
    conf = os.path.join(dest, "etc/sluice/sluice.conf")
    assert os.path.isfile(conf)
    # sluice-spam's default rules, and the installed config names them
    rules = glob.glob(os.path.join(dest, "usr/local/share/sluice/rules/*.cf"))
    assert rules and {os.path.basename(r) for r in rules} == {
        os.path.basename(r) for r in glob.glob(os.path.join(REPO, "milters/spam/rules/*.cf"))}
    assert "spam_rules_files = /usr/local/share/sluice/rules/*.cf" in open(conf).read()
    assert os.path.isdir(os.path.join(dest, "var/lib/sluice"))
    man = os.path.join(dest, "usr/local/share/man")
    assert os.path.isfile(os.path.join(man, "man5/sluice.conf.5"))
    for b in ["sluiced", "sluice", "sluice-sendmail"] + daemons():
        assert os.path.isfile(os.path.join(man, "man8", b + ".8")), b
    units = os.path.join(dest, "usr/local/lib/systemd/system")
    assert os.path.isfile(os.path.join(units, "sluice.service"))
    for b in daemons():
        assert os.path.isfile(os.path.join(units, b + ".service")), b
    sysusers = open(os.path.join(dest, "usr/local/lib/sysusers.d/sluice.conf")).read()
    assert re.search(r"^u sluice ", sysusers, re.M)
    assert os.path.isfile(os.path.join(dest, "usr/local/lib/tmpfiles.d/sluice.conf"))
    # units name the installed paths, not DESTDIR
    text = open(os.path.join(units, "sluice.service")).read()
    assert "ExecStart=/usr/local/sbin/sluice start -f -c /etc/sluice/sluice.conf" in text
    assert dest not in text
    assert re.search(r"^Type=notify$", text, re.M) and re.search(r"^ExecReload=", text, re.M)
    assert re.search(r"^ProtectSystem=strict$", text, re.M)
    assert re.search(r"^NoNewPrivileges=yes$", text, re.M)


def test_installed_config_is_valid_and_never_overwritten(dest):
    conf = os.path.join(dest, "etc/sluice/sluice.conf")
    r = subprocess.run([os.path.join(dest, "usr/local/sbin/sluice"), "check", "-c", conf],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(conf, "a") as f:
        f.write("\n# the admin's own line\nmyhostname = mx.admin.test\n")
    before = open(conf).read()
    out = make_install(DESTDIR=dest)
    assert open(conf).read() == before
    assert "keeping" in out


def test_man_pages_render_without_warnings(dest):
    pages = glob.glob(os.path.join(dest, "usr/local/share/man/man*/*.[58]"))
    assert len(pages) >= 4
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_STDERR="1", LC_ALL="C.UTF-8")
    for p in pages:
        r = subprocess.run(["man", "--warnings", "-l", p], capture_output=True, text=True, env=env,
                           timeout=60)
        assert r.returncode == 0, (p, r.stderr)
        assert r.stderr.strip() == "", (p, r.stderr)
        name = os.path.basename(p).rsplit(".", 1)[0]
        assert name.upper() in r.stdout.splitlines()[0], (p, r.stdout[:200])


def test_sluice_conf_5_lists_every_parameter(dest):
    r = subprocess.run([os.path.join(dest, "usr/local/sbin/sluice"), "params", "-d"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    names = {l.split(" = ", 1)[0] for l in r.stdout.splitlines() if " = " in l}
    assert len(names) > 100
    page = open(os.path.join(dest, "usr/local/share/man/man5/sluice.conf.5")).read()
    documented = set(re.findall(r"^\.B (\S+)$", page, re.M))
    documented = {n.replace("\\-", "-") for n in documented}
    assert names - documented == set()
    assert documented - names == set()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd not installed")
def test_systemd_units_verify(tmp_path):
    # installed for real (no DESTDIR) into a temp prefix, so the binaries the
    # units name exist where systemd-analyze looks for them
    root = str(tmp_path)
    make_install(PREFIX=root + "/usr", SYSCONFDIR=root + "/etc/sluice", CREATE_USER="no")
    units = sorted(glob.glob(root + "/usr/lib/systemd/system/*.service"))
    assert {os.path.basename(u) for u in units} == {"sluice.service"} | {d + ".service" for d in daemons()}
    r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + units,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
