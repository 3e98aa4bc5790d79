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
zlib1g-dev pflogsumm libjansson-dev libgmime-3.0-dev libxml2-dev libvectorscan-dev libmaxminddb-dev spamassassin
prometheus chromium python3-pytest-xdist libxml2-utils
m4 libdb5.3 libldap-2.5-0 libnsl2 libsasl2-2 libwrap0 liblockfile1
libglib2.0-0 libicu72 libluajit-5.1-2 libsodium23 libsqlite3-0 libunwind8 libstdc++6 libssl3 zlib1g"

# Sendmail for the drop-in tests. Installing sendmail-bin would remove Postfix
# (both provide mail-transport-agent), which other tests need, so its packages
# are fetched with apt-get download and unpacked with dpkg -x into SENDMAIL_DIR
# (the tests find sendmail and the cf/ m4 macros there). The libraries it links
# are ordinary packages above.
SENDMAIL_DIR=${SLUICE_SENDMAIL_DIR:-/var/cache/sluice/sendmail}
SENDMAIL_DEBS="sendmail-bin sendmail-base sendmail-cf"
sendmail_ok() { [ -x "$SENDMAIL_DIR/usr/libexec/sendmail/sendmail" ] && [ -f "$SENDMAIL_DIR/usr/share/sendmail/cf/m4/cf.m4" ]; }
# unpack_debs DIR DEB... - apt-get download the packages and dpkg -x them into DIR
unpack_debs() {
	dir=$1
	shift
	tmp=$(mktemp -d)
	chmod 755 "$tmp"
	(cd "$tmp" && apt-get download "$@")
	mkdir -p "$dir"
	for d in "$tmp"/*.deb; do dpkg -x "$d" "$dir"; done
	rm -rf "$tmp"
}
unpack_sendmail() { unpack_debs "$SENDMAIL_DIR" $SENDMAIL_DEBS; }

# Rspamd for the spam benchmark (tests/bench/bench_spam.py). Debian's rspamd
# depends on libhyperscan5, which conflicts with libvectorscan5 (sluice-spam
# builds against it), so rspamd and libhyperscan5 are unpacked with dpkg -x into
# RSPAMD_DIR like Sendmail; the bench runs usr/bin/rspamd from there with
# LD_LIBRARY_PATH=usr/lib/<arch>:usr/lib/rspamd and its own config directory.
# Its other runtime libraries are ordinary packages above (the libjs/fonts
# dependencies are for its web UI only and are left out).
RSPAMD_DIR=${SLUICE_RSPAMD_DIR:-/var/cache/sluice/rspamd}
RSPAMD_DEBS="rspamd libhyperscan5"
rspamd_ok() { [ -x "$RSPAMD_DIR/usr/bin/rspamd" ] && [ -f "$RSPAMD_DIR/etc/rspamd/rspamd.conf" ] && ls "$RSPAMD_DIR"/usr/lib/*/libhs.so.5 >/dev/null 2>&1; }
unpack_rspamd() { unpack_debs "$RSPAMD_DIR" $RSPAMD_DEBS; }

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = "installed" ] || missing="$missing $p"
done

if [ "${1:-}" = "--check" ]; then
	[ -z "$missing" ] && sendmail_ok && rspamd_ok && exit 0
	echo "missing packages:$missing${missing:+ }$(sendmail_ok || echo "(sendmail unpacked in $SENDMAIL_DIR)")$(rspamd_ok || echo " (rspamd unpacked in $RSPAMD_DIR)")" >&2
	exit 1
fi
if [ -z "$missing" ]; then
	sendmail_ok || { [ "$(id -u)" = 0 ] && unpack_sendmail; }
	sendmail_ok || { echo "deps: cannot unpack sendmail into $SENDMAIL_DIR" >&2; exit 1; }
	rspamd_ok || { [ "$(id -u)" = 0 ] && unpack_rspamd; }
	rspamd_ok || { echo "deps: cannot unpack rspamd into $RSPAMD_DIR" >&2; exit 1; }
	echo "deps: all packages present"
	exit 0
fi

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
sendmail_ok || unpack_sendmail
rspamd_ok || unpack_rspamd
