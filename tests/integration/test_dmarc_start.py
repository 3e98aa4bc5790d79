"""sluice-dmarc in the integrated server started by `sluice start`
(dkim_enable = yes, dmarc_enable = yes): the supervisor runs both filters and
wires smtpd_milters = sluice-dkim, sluice-dmarc; p=reject with failing
alignment -> 550 5.7.1, an aligned SPF pass -> delivered with dmarc=pass, a
forged A-R with our authserv-id is not trusted, and the filter survives."""

import os
import re
import subprocess

import pytest

from conftest import BIN, Sluiced, wait_for
from test_dmarc_sluiced import (BAD_IP, FORGED_AR, GOOD_IP, Session, dkey, dmarc_dns,  # noqa: F401
                                message, our_ar, read)

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(BIN, b)) for b in ("sluice", "sluice-dkim", "sluice-dmarc")),
    reason="sluice, sluice-dkim and sluice-dmarc not built")


def test_sluice_start_runs_dmarc_after_dkim(tmp_path, dmarc_dns):
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
        gen = open(tmp_path / "run" / "sluice.conf").read()
        assert re.search(r"smtpd_milters = unix:\S+/dkim\.sock,? unix:\S+/dmarc\.sock", gen), gen
        # the chain strips forged A-R and verifies DKIM ahead: DMARC trusts our own header
        assert re.search(r"^dmarc_self_validate = no$", gen, re.M), gen
        bad = Session(s.port, BAD_IP)
        try:
            code, text = bad.send(message(), "a@reject.example")
            assert code == 550 and "5.7.1" in text and "reject.example" in text, text
            code, text = bad.send(message(extra=FORGED_AR), "a@reject.example")
            assert code == 550, text
        finally:
            bad.close()
        code, text = Session(s.port, GOOD_IP).send(message(), "a@reject.example")
        assert code == 250, text
        (p,) = s.wait_delivered("bob", 1)
        ar = our_ar(read(p))
        assert len(ar) == 1 and "dmarc=pass" in ar[0], ar
        assert re.search(r"milter=dmarc action=reject dmarc=fail .*header_from=reject\.example",
                         s.log_text()), s.log_text()[-3000:]
    finally:
        subprocess.run([os.path.join(BIN, "sluice"), "stop", "-c", s.conf_path], capture_output=True,
                       timeout=90)
        try:
            sup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
