#!/bin/sh
# make run: start the integrated server in the foreground with the embedded
# default config conf/sluice.conf (mail for example.com into var/mail/).
set -eu
cd "$(dirname "$0")/.."
mkdir -p var/tls var/mail var/spool var/run
if [ ! -s var/tls/cert.pem ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mail.example.com" \
		-keyout var/tls/key.pem -out var/tls/cert.pem 2>/dev/null
	chmod 600 var/tls/key.pem
	echo "created a self-signed certificate in var/tls/"
fi
if [ "$(id -u)" = 0 ] && ! getent passwd sluice >/dev/null; then
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sluice
	echo "created the system user sluice (mail_owner)"
fi
bin/sluice check -c conf/sluice.conf
echo
echo "sluiced is starting on 127.0.0.1:2525 (Ctrl-C stops it). Send it a message with:"
echo "  swaks --server 127.0.0.1:2525 --from you@example.net --to user@example.com --tls"
echo "It arrives in var/mail/example.com/user/new/"
echo
exec bin/sluice start -f -c conf/sluice.conf
