#include "conf/params_dkim.h"
#include "conf/params_table.h"

#include <stddef.h>


#define DKIM_ACTIONS "accept|reject|tempfail|quarantine|discard"

const struct conf_param dkim_params[] = {
	P("dkim_enable", CONF_BOOL, "no"),
	P("dkim_socket", CONF_STR, "inet:8891@127.0.0.1"),
	/* permissions of a unix dkim_socket: the MTA (Postfix runs smtpd as postfix) must connect */
	P("dkim_socket_mode", CONF_STR, "0666"),
	P("dkim_pid_file", CONF_STR, ""),
	P("dkim_authserv_id", CONF_STR, "$myhostname"),
	PI("dkim_max_signatures", "10", 1, 1000),
	P("dkim_allow_sha1", CONF_BOOL, "no"),
	PI("dkim_minimum_key_bits", "1024", 0, 16384),
	P("dkim_refuse_body_length", CONF_BOOL, "no"),
	P("dkim_internal_hosts", CONF_LIST, "127.0.0.1, ::1"),
	P("dkim_sign_authenticated", CONF_BOOL, "yes"),
	P("dkim_domain", CONF_LIST, ""),
	P("dkim_selector", CONF_LIST, ""),
	P("dkim_key_file", CONF_LIST, ""),
	P("dkim_subdomains", CONF_BOOL, "no"),
	P("dkim_key_table", CONF_STR, ""),
	P("dkim_signing_table", CONF_STR, ""),
	P("dkim_multiple_signatures", CONF_BOOL, "no"),
	PE("dkim_canonicalization", "relaxed/relaxed",
	   "relaxed/relaxed|relaxed/simple|simple/relaxed|simple/simple|relaxed|simple"),
	P("dkim_sign_headers", CONF_LIST, DKIM_DEFAULT_SIGN_HEADERS),
	P("dkim_oversign_headers", CONF_LIST, "From"),
	PT("dkim_signature_ttl", "0", 0, 0, 's'),
	/* answers kept in the key-record cache (OpenDKIM QueryCache); 0 = none */
	PI("dkim_query_cache_size", "10000", 0, 10000000),
	PE("dkim_on_bad_signature", "accept", DKIM_ACTIONS),
	PE("dkim_on_no_signature", "accept", DKIM_ACTIONS),
	PE("dkim_on_key_not_found", "accept", DKIM_ACTIONS),
	PE("dkim_on_dns_error", "tempfail", DKIM_ACTIONS),
	PE("dkim_on_internal_error", "tempfail", DKIM_ACTIONS),
	PE("dkim_on_policy", "accept", DKIM_ACTIONS),
	P("dkim_add_ar_on_sign", CONF_BOOL, "no"),
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
