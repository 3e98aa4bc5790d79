"""sluice-dmarc behind a REAL Postfix (Debian's 3.7, private instance from
tests/fixtures/postfix.py) after sluice-dkim, smtpd_milters over unix and
inet sockets, SPF/DMARC/DKIM records on a real DNS server on loopback.

Proves the drop-in with Postfix's milter client (not ours): p=reject with
failing alignment -> Postfix's 550 5.7.1; p=quarantine -> Postfix's hold
queue; aligned SPF or DKIM pass -> delivered with dmarc=pass; a forged
`Authentication-Results: mx.test; dkim=pass` is not trusted, in both
dmarc_self_validate modes; OpenDMARC's historic bypass inputs are refused
and the daemon keeps running (same pid); state does not leak between
messages of one SMTP session."""

import os
import re
import shutil
import tempfile

import pytest

from postfix import Postfix
from postfix_dkim_harness import SluiceDkim
from test_dmarc_sluiced import (BAD_IP, BYPASSES, GOOD_IP, HELO_RSPF, Session, SluiceDmarc,  # noqa: F401
                                dkey, dmarc_dns, main_cases, message, our_ar, read)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix needs root")


def hold_count(pf):
    d = os.path.join(pf.queue, "hold")
    n = 0
    for _root, _dirs, files in os.walk(d):
        n += len(files)
    return n


def make_stack(request_param, dmarc_dns, dmarc_conf=""):
    # Postfix's smtpd (user postfix) and virtual (nobody) must reach the sockets and
    # Maildirs: a 0755 directory outside pytest's 0700 tree.
    tmp = tempfile.mkdtemp(prefix="sluice-dmarc-pf-")
    os.chmod(tmp, 0o755)
    kind = request_param
    dk_spec = "unix:" + os.path.join(tmp, "dkim.sock") if kind == "unix" else None
    if dk_spec is None:
        from test_dmarc_sluiced import free_port
        dk_spec = "inet:127.0.0.1:%d" % free_port()
    dk = SluiceDkim(tmp, "", dk_spec, dns=dmarc_dns, umask=0).start()
    dm = SluiceDmarc(tmp, dmarc_conf, kind, dns=dmarc_dns).start()
    pf = Postfix(tmp, domains=["example.com"], users=["bob", "carol"], mynetworks="127.0.0.1/32",
                 main_cf={"smtpd_milters": "%s, %s" % (dk.spec, dm.spec),
                          "milter_default_action": "tempfail",
                          "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"})
    return tmp, dk, dm, pf


@pytest.fixture(scope="module", params=["unix", "inet"])
def pfstack(request, dmarc_dns):
    tmp, dk, dm, pf = make_stack(request.param, dmarc_dns)
    try:
        pf.start()
        yield pf, dk, dm
    finally:
        pf.stop()
        dk.stop()
        dm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def delivered(pf, user="bob"):
    d = os.path.join(pf.mail, "example.com", user, "new")
    try:
        return sorted(os.path.join(d, n) for n in os.listdir(d))
    except FileNotFoundError:
        return []


def test_postfix_main_cases(pfstack, dkey):
    pf, dk, dm = pfstack
    main_cases(pf.port, dkey, lambda: delivered(pf), lambda: hold_count(pf), dm.output)
    # Postfix logged our reply and the hold
    log = pf.log_text()
    assert re.search(r"milter-reject: END-OF-MESSAGE .*5\.7\.1 rejected by DMARC policy for "
                     r"reject\.example", log), log[-3000:]
    assert re.search(r"milter-hold: END-OF-MESSAGE", log), log[-3000:]
    assert dm.alive()


def test_postfix_historic_bypasses_keep_running(pfstack):
    pf, dk, dm = pfstack
    pid = dm.proc.pid
    sess = Session(pf.port, BAD_IP, helo="helo.reject.example")
    try:
        for name, body, sender in BYPASSES:
            code, text = sess.send(body, sender)
            assert code == 550 and "5.7.1" in text, (name, code, text)
    finally:
        sess.close()
    assert dm.alive() and dm.proc.pid == pid
    n = len(delivered(pf))
    code, text = Session(pf.port, GOOD_IP).send(message(), "a@reject.example")
    assert code == 250, text
    from conftest import wait_for
    files = wait_for(lambda: len(delivered(pf)) == n + 1 and delivered(pf), what="delivery")
    assert "dmarc=pass" in our_ar(read(files[-1]))[0]


@pytest.mark.parametrize("kind", ["unix"])
def test_postfix_trusted_mode_with_forged_headers(dmarc_dns, dkey, kind):
    """dmarc_self_validate = no (OpenDMARC's model): sluice-dkim ahead removes
    forged A-R with our id and its own A-R is trusted; a forged dkim=pass
    and a HELO-scope Received-SPF still do not pass."""
    tmp, dk, dm, pf = make_stack(kind, dmarc_dns,
                                 "dmarc_self_validate = no\ndmarc_trust_received_spf = yes")
    try:
        pf.start()
        main_cases(pf.port, dkey, lambda: delivered(pf), lambda: hold_count(pf), dm.output)
        sess = Session(pf.port, BAD_IP, helo="helo.reject.example")
        try:
            code, text = sess.send(message(extra=HELO_RSPF), "a@reject.example")
            assert code == 550, text
        finally:
            sess.close()
        log = dm.output()
        assert re.search(r"dkim=reject\.example/s1/pass dkim_source=trusted", log), log[-3000:]
        assert dm.alive()
    finally:
        pf.stop()
        dk.stop()
        dm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- after OpenDKIM

class OpenDKIMVerifier:
    """Debian's OpenDKIM (Mode v, AuthservID mx.test, its DNS = our server)."""

    def __init__(self, tmp, kind, dns, extra=()):
        import subprocess
        from test_dmarc_sluiced import free_port
        self.sock = ("local:" + os.path.join(tmp, "od.sock")) if kind == "unix" else \
            "inet:%d@127.0.0.1" % free_port()
        self.spec = ("unix:" + self.sock[6:]) if kind == "unix" else \
            "inet:127.0.0.1:" + self.sock[5:].split("@")[0]
        conf = os.path.join(tmp, "opendkim.conf")
        with open(conf, "w") as f:
            f.write("\n".join(["Syslog no", "Background no", "Mode v", "Socket " + self.sock,
                               "UMask 000", "PidFile %s/od.pid" % tmp, "UserID root",
                               "AuthservID mx.test", "Nameservers 127.0.0.1@%d" % dns.port]
                              + list(extra)) + "\n")
        self.out = open(os.path.join(tmp, "od.out"), "wb")
        self.proc = subprocess.Popen(["/usr/sbin/opendkim", "-f", "-x", conf], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        from conftest import wait_for
        from postfix_dkim_harness import milter_socket_up
        wait_for(lambda: self.proc.poll() is None and milter_socket_up(self.spec), 20,
                 "opendkim on " + self.sock)

    def stop(self):
        import subprocess
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


@pytest.mark.parametrize("kind,mode", [("unix", "yes"), ("inet", "no")])
def test_postfix_after_opendkim(dmarc_dns, dkey, kind, mode):
    """smtpd_milters = OpenDKIM, sluice-dmarc. With dmarc_self_validate = no
    the DKIM result is OpenDKIM's A-R (its header.b prefix matched against
    the signature); with yes we verify ourselves. Same main cases.
    With no, OpenDKIM must remove every A-R claiming our id (RemoveARAll
    yes; by default it removes only those with DKIM results, and a forged
    `mx.test; spf=pass` would be trusted, as by OpenDMARC): checked."""
    tmp = tempfile.mkdtemp(prefix="sluice-dmarc-od-")
    os.chmod(tmp, 0o755)
    od = OpenDKIMVerifier(tmp, kind, dmarc_dns, ["RemoveARAll yes"] if mode == "no" else [])
    dm = SluiceDmarc(tmp, "dmarc_self_validate = %s" % mode, kind, dns=dmarc_dns).start()
    pf = Postfix(tmp, domains=["example.com"], users=["bob", "carol"], mynetworks="127.0.0.1/32",
                 main_cf={"smtpd_milters": "%s, %s" % (od.spec, dm.spec),
                          "milter_default_action": "tempfail",
                          "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"})
    try:
        pf.start()
        main_cases(pf.port, dkey, lambda: delivered(pf), lambda: hold_count(pf), dm.output)
        log = dm.output()
        src = "self" if mode == "yes" else "trusted"
        assert re.search(r"dkim=reject\.example/s1/pass dkim_source=%s" % src, log), log[-3000:]
        forged_spf = b"Authentication-Results: mx.test; spf=pass smtp.mailfrom=a@reject.example\n"
        code, text = Session(pf.port, BAD_IP).send(message(extra=forged_spf), "a@reject.example")
        assert code == 550 and "5.7.1" in text, text
        # OpenDKIM's own A-R is there too (so the trusted one was OpenDKIM's)
        files = delivered(pf)
        assert any(re.search(r"dkim=pass .*header\.d=reject\.example", v) and "dmarc=" not in v
                   for p in files for v in our_ar(read(p), "dkim")), files
        assert dm.alive()
    finally:
        pf.stop()
        dm.stop()
        od.stop()
        shutil.rmtree(tmp, ignore_errors=True)
