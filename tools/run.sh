#!/bin/sh
# make run: start the integrated server in the foreground with the embedded
# default config conf/sluice.conf (mail for example.com into var/mail/; every
# filter on: DKIM signing for example.com and verifying, SPF, DMARC, spam,
# rate limits).
set -eu
cd "$(dirname "$0")/.."
conf=conf/sluice.conf
mkdir -p var/tls var/mail var/spool var/run var/lib
if [ ! -s var/tls/cert.pem ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mail.example.com" \
		-keyout var/tls/key.pem -out var/tls/cert.pem 2>/dev/null
	chmod 600 var/tls/key.pem
	echo "created a self-signed certificate in var/tls/"
fi
# the DKIM signing key for example.com (0600; the daemons read it as root)
if [ ! -s var/dkim/sel.private ]; then
	bin/sluice keygen -d example.com -s sel -D var/dkim >/dev/null
	echo "created the DKIM key var/dkim/sel.private; publish this TXT record to let others verify:"
	cat var/dkim/sel.txt
	echo
fi
owner=$(bin/sluice params -c "$conf" mail_owner | sed 's/^[^=]*= *//')
if [ "$(id -u)" = 0 ]; then
	if [ "$owner" = sluice ] && ! getent passwd sluice >/dev/null; then
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sluice
		echo "created the system user sluice (mail_owner)"
	fi
	# what the daemons write after dropping to mail_owner: state and queue
	chown -R "$owner" var/lib var/spool
fi
bin/sluice check -c "$conf"
listen=$(bin/sluice params -c "$conf" smtpd_listen | sed 's/^[^=]*= *//')
echo
echo "sluiced is starting on $listen with every filter (Ctrl-C stops it). Send it a message with:"
echo "  swaks --server $listen --from you@example.com --to user@example.com --tls"
echo "It arrives DKIM-signed, with the filters' headers, in var/mail/example.com/user/new/"
echo "(sluice status -c $conf: the daemons; sluice report on the log: what happened)"
echo
exec bin/sluice start -f -c "$conf"
