"""sluice-ratelimit's GeoIP attributes over the policy protocol, with
MaxMind's test databases (tests/data/geoip/README.md): a rule on
client_country defers a client the country database places in GB and lets
a client from SE pass; a rate() keyed on client_asn counts every client of
AS1221 together; a database that cannot be opened stops -n with the
parameter's name. One daemon for the module."""
import os
import re
import subprocess
import urllib.request

import pytest

from test_ratelimit_driver import REPO, RL, RlDaemon, free_port, policy

GEO = os.path.join(REPO, "tests", "data", "geoip")
RULES = ("id=NOGB; client_country=GB; action=DEFER_IF_PERMIT 4.7.1 no mail from GB today\n"
         "id=TELSTRA; client_asn=1221; action=rate(client_asn/2/3600/DEFER 4.7.1 too much from your AS)\n")


@pytest.fixture(scope="module")
def rld(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rl-geoip")
    mport = free_port()
    extra = ("ratelimit_geoip_country_db = %s/GeoIP2-Country-Test.mmdb\n"
             "ratelimit_geoip_asn_db = %s/GeoLite2-ASN-Test.mmdb\n"
             "ratelimit_metrics_listen = 127.0.0.1:%d\n" % (GEO, GEO, mport))
    d = RlDaemon(tmp, RULES, extra).start()
    d.metrics_port = mport
    yield d
    assert d.stop() in (0, None), d.log_text()[-3000:]


def test_country_rule_defers_gb_passes_se(rld):
    # 2.125.160.216: country GB (registered_country FR): deferred by the GB rule
    assert policy(rld.port, {"client_address": "2.125.160.216", "instance": "gb1"}) == \
        "DEFER_IF_PERMIT 4.7.1 no mail from GB today"
    assert policy(rld.port, {"client_address": "89.160.20.112", "instance": "se1"}) == "DUNNO"
    # the client's own claim does not override the database
    assert policy(rld.port, {"client_address": "89.160.20.112", "client_country": "GB",
                             "instance": "se2"}) == "DUNNO"
    assert policy(rld.port, {"client_address": "192.168.0.9", "instance": "lan"}) == "DUNNO"


def test_asn_key_counts_the_whole_as(rld):
    got = [policy(rld.port, {"client_address": ip, "instance": "as%d" % i})
           for i, ip in enumerate(["1.128.0.1", "1.140.7.7", "1.159.255.254"])]
    assert got[:2] == ["DUNNO", "DUNNO"]
    assert got[2].startswith("DEFER 4.7.1 too much from your AS (limit TELSTRA: 2 messages per 3600 s "
                             "for client_asn=1221"), got
    assert "key=rate:2/3600s:client_asn=1221" in rld.log_text()


def test_unopenable_database_names_the_parameter(tmp_path):
    d = RlDaemon(tmp_path, RULES, "ratelimit_geoip_country_db = %s/missing.mmdb\n" % tmp_path)
    p = subprocess.run([RL, "-c", d.conf, "-n"], capture_output=True, timeout=60)
    assert p.returncode == 1
    assert b"ratelimit_geoip_country_db: %s/missing.mmdb: " % str(tmp_path).encode() in p.stderr, p.stderr


def decisions(port):
    """{(result, action): count} of sluice_filter_requests_total for ratelimit."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    got = {}
    for m in re.finditer(r'^sluice_filter_requests_total\{([^}]*)\} (\d+)', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("filter") == "ratelimit":
            got[(labels["result"], labels["action"])] = int(m.group(2))
    return got


def test_decisions_are_counted_in_metrics(rld):
    before = decisions(rld.metrics_port)
    assert policy(rld.port, {"client_address": "2.125.160.216", "instance": "m-gb"}).startswith("DEFER_IF_PERMIT")
    assert policy(rld.port, {"client_address": "192.168.0.10", "instance": "m-lan"}) == "DUNNO"
    after = decisions(rld.metrics_port)
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert moved.get(("rule", "defer_if_permit")) == 1, (before, after)
    assert sum(v for (res, act), v in moved.items() if act == "dunno") == 1, (before, after)
    assert sum(moved.values()) == 2, (before, after)
