/*
 * sasl: SMTP AUTH back ends for sluiced (RFC 4954, RFC 4616 PLAIN, LOGIN).
 * Owns: verifying a user name and password asynchronously against
 *   - passwdfile: a Dovecot-style passwd-file ("user:{SCHEME}hash[:...]"),
 *     read and checked by crypt_r(3) on a worker thread (hashing is slow by
 *     design and must not stall the event loop);
 *   - dovecot: Dovecot's auth client protocol on a unix socket (one
 *     connection per attempt, on the event loop; codec in sasl_dvproto).
 *   Also base64 and the PLAIN response decoding the session needs.
 * Leaves: the SMTP exchange (334 challenges, replies, delays, error
 * counting, logging) to smtp_session.c. Never logs passwords.
 */
#ifndef SLUICE_MTA_SASL_H
#define SLUICE_MTA_SASL_H

#include <stddef.h>

struct event_base;

enum sasl_result { SASL_OK, SASL_FAIL, SASL_TEMPFAIL };

/*
 * result: SASL_OK (user = the authenticated name, possibly canonicalised by
 * the back end), SASL_FAIL (wrong name or password), SASL_TEMPFAIL (back end
 * unreachable or broken; reason says why, for the log). Strings borrowed for
 * the call only. Called from the event loop, never from inside sasl_verify.
 */
typedef void (*sasl_done_fn)(void *arg, enum sasl_result result, const char *user, const char *reason);

struct sasl_server;
struct sasl_req;

/* sasl_server_new - worker thread and wake-up event on base (needs evthread_use_pthreads). */
struct sasl_server *sasl_server_new(struct event_base *base);
/* sasl_server_free - stops the worker; pending callbacks are not called. */
void sasl_server_free(struct sasl_server **sv);

struct sasl_verify_args {
	const char *type;	/* "passwdfile" or "dovecot" (smtpd_sasl_type) */
	const char *path;	/* smtpd_sasl_path */
	const char *mech;	/* "PLAIN" or "LOGIN", for the back end's log */
	const char *authzid;	/* "" or NULL: none */
	const char *user;
	const char *password;
	const char *client_addr;	/* for Dovecot's rip= (may be NULL) */
	int secured;			/* the connection is TLS */
	int timeout_s;			/* dovecot: whole exchange */
};

/*
 * sasl_verify - start one check. done(arg, ...) follows later from the loop
 * unless sasl_req_cancel() comes first. The strings are copied.
 */
struct sasl_req *sasl_verify(struct sasl_server *sv, const struct sasl_verify_args *a, sasl_done_fn done,
			     void *arg);
/* sasl_req_cancel - the callback will not be called; NULL is fine. */
void sasl_req_cancel(struct sasl_req *r);

/* sasl_type_valid - "passwdfile" or "dovecot". */
int sasl_type_valid(const char *type);

/*
 * sasl_passwdfile_lookup - the stored password field of user in the
 * passwd-file at path ("user:{SCHEME}hash:..." lines; '#' comments, blank
 * lines). Returns 1 and *hash_out (caller frees), 0 when user is absent,
 * -1 with *err_out (caller frees) when the file cannot be read.
 */
int sasl_passwdfile_lookup(const char *path, const char *user, char **hash_out, char **err_out);

/*
 * sasl_password_check - does password match stored ("{SCHEME}value", or a
 * bare crypt(3) string)? Schemes: PLAIN/CLEAR/CLEARTEXT, and CRYPT,
 * SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT, YESCRYPT through
 * crypt_r(3) (thread-safe). Returns 1 match, 0 mismatch, -1 unknown scheme
 * or a hash crypt cannot use (*err_out static).
 */
int sasl_password_check(const char *stored, const char *password, const char **err_out);

/* Base64 (RFC 4648, padding required, no whitespace). decode: 0 or -1; *out NUL-terminated, caller frees. */
int sasl_b64_decode(const char *in, size_t in_len, char **out, size_t *out_len);
char *sasl_b64_encode(const void *in, size_t len);

/*
 * sasl_plain_decode - RFC 4616 message "authzid NUL authcid NUL passwd"
 * from base64. 0 and three strings (caller frees each), or -1.
 */
int sasl_plain_decode(const char *b64, char **authzid_out, char **user_out, char **pass_out);

#endif
