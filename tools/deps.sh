#!/bin/sh
# deps.sh - install (or, with --check, only test for) every Debian package
# that building, running, testing and benchmarking sluice needs.
# Idempotent; quick when everything is already installed.
set -eu

PKGS="gcc make pkg-config clang libclang-rt-14-dev
libevent-dev libssl-dev libc-ares-dev libpcre2-dev libcmocka-dev
openssl ca-certificates python3 python3-pytest python3-yaml python3-dnspython
swaks libnet-ssleay-perl libio-socket-ssl-perl unbound bind9-dnsutils postfix iproute2 procps
libmilter-dev libopendkim-dev opendkim opendkim-tools miltertest python3-dkim python3-authres
python3-spf postfix-policyd-spf-python spfquery opendmarc
libcrypt-dev dovecot-core dovecot-lmtpd
libpsl-dev publicsuffix libmail-dmarc-perl liblmdb-dev libhiredis-dev redis-server postfwd
zlib1g-dev pflogsumm libjansson-dev libgmime-3.0-dev libxml2-dev libvectorscan-dev libmaxminddb-dev spamassassin"

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = "installed" ] || missing="$missing $p"
done

if [ "${1:-}" = "--check" ]; then
	[ -z "$missing" ] && exit 0
	echo "missing packages:$missing" >&2
	exit 1
fi
[ -z "$missing" ] && { echo "deps: all packages present"; exit 0; }

if [ "$(id -u)" != 0 ]; then
	echo "deps: need root to install:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix must be installed unconfigured and must never start a system
# instance: preseed "No configuration" and forbid service starts while
# installing (policy-rc.d exit 101), unless the image already does.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
added_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	added_policy=1
fi
trap '[ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update
apt-get install -y --no-install-recommends $missing
