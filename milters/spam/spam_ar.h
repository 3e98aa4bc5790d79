/*
 * spam_ar: SPF, DKIM and DMARC results as symbols, read from
 * Authentication-Results headers whose authserv-id is one of ours
 * (spam_trusted_authserv_ids; RFC 8601 section 5: any other A-R is the
 * sender's claim and ignored).
 * Owns: the symbol names (SPF_<RESULT>, DKIM_<RESULT>, DMARC_<RESULT>, one
 * per distinct result), their scores (spam_auth_scores "DMARC_FAIL:3.0, ...";
 * symbols without a score are reported with 0).
 * Leaves: A-R parsing to proto/authres, the header list to spam_mime.
 */
#ifndef SLUICE_SPAM_AR_H
#define SLUICE_SPAM_AR_H

#include <stddef.h>

struct spam_mime;
struct spam_result;
struct spam_ar;

/* spam_ar_new - NULL with *err_out (caller frees) on a bad score item. */
struct spam_ar *spam_ar_new(const char *const *authserv_ids, size_t nids,
			    const char *const *scores, size_t nscores, char **err_out);
void spam_ar_free(struct spam_ar **a);

/* spam_ar_symbols - add the symbols of m's trusted A-R headers to r. */
void spam_ar_symbols(const struct spam_ar *a, const struct spam_mime *m, struct spam_result *r);

#endif
