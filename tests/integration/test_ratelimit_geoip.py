"""sluice-ratelimit's GeoIP attributes over the policy protocol, with
MaxMind's test databases (tests/data/geoip/README.md): a rule on
client_country defers a client the country database places in GB and lets
a client from SE pass; a rate() keyed on client_asn counts every client of
AS1221 together; a database that cannot be opened stops -n with the
parameter's name. One daemon for the module."""
import os
import subprocess

import pytest

from test_ratelimit_driver import REPO, RL, RlDaemon, policy

GEO = os.path.join(REPO, "tests", "data", "geoip")
RULES = ("id=NOGB; client_country=GB; action=DEFER_IF_PERMIT 4.7.1 no mail from GB today\n"
         "id=TELSTRA; client_asn=1221; action=rate(client_asn/2/3600/DEFER 4.7.1 too much from your AS)\n")


@pytest.fixture(scope="module")
def rld(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rl-geoip")
    extra = ("ratelimit_geoip_country_db = %s/GeoIP2-Country-Test.mmdb\n"
             "ratelimit_geoip_asn_db = %s/GeoLite2-ASN-Test.mmdb\n" % (GEO, GEO))
    d = RlDaemon(tmp, RULES, extra).start()
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
