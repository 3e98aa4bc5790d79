/*
 * spf_int: internals shared by proto/spf.c (driver, query slots, results,
 * explanation, set-up) and proto/spf_eval.c (records, terms, validated
 * names). Not a contract: only spf*.c include it; users include proto/spf.h.
 */
#ifndef SLUICE_PROTO_SPF_INT_H
#define SLUICE_PROTO_SPF_INT_H

#include <netinet/in.h>
#include <arpa/inet.h>

#include "proto/spf.h"

#define SPF_MAX_DEPTH 24	/* include nesting; the term limit stops loops first */
#define SPF_MAX_SLOTS 48	/* live questions; a batch is at most SPF_MAX_BATCH */
#define SPF_MAX_BATCH 32	/* cap on max_mx_names / max_ptr_names */
#define PROBLEM_MAX 64

enum slot_kind { K_SPF, K_EXP, K_ADDR, K_MX, K_PTR };
enum slot_state { S_FREE = 0, S_UNSENT, S_SENT, S_DONE };

/* One question and the digest of its answer (answers are borrowed). */
struct spf_slot {
	unsigned id;
	enum slot_state st;
	enum slot_kind kind;
	enum dns_type type;
	char name[SPF_NAME_MAX + 1];
	unsigned cidr;		/* K_ADDR: prefix length to compare */
	enum dns_status status;
	size_t n;		/* RRs of the asked type */
	int match;		/* K_ADDR: an address within cidr of the client */
	size_t ntxt;		/* K_SPF: v=spf1 records; K_EXP: TXT RRs */
	int too_long;		/* K_SPF/K_EXP: the text was over the limit */
	char *text;		/* K_SPF: the v=spf1 record; K_EXP: the one TXT */
	size_t text_len;
	char **names;		/* K_MX, K_PTR: first names (capped) */
	size_t nnames;
};

enum frame_state { F_FETCH, F_WAIT_REC, F_EVAL };

struct spf_frame {
	char domain[SPF_NAME_MAX + 1];
	int domain_ok;		/* a queryable name (else treated as NXDOMAIN) */
	int redirected;		/* reached by redirect=: none means permerror (6.1) */
	struct spf_record rec;
	enum frame_state st;
	size_t pos;		/* current term */
	int sub;		/* progress inside the current term */
	int slot;
	int batch[SPF_MAX_BATCH];
	size_t nbatch;
	char target[SPF_NAME_MAX + 1];	/* expanded domain-spec of the term */
	int target_ok;
	enum spf_result child;	/* result of the include just finished */
};

enum vn_state { VN_NONE, VN_PTR, VN_ADDRS, VN_DONE };

/* Validated domain names of the client address (5.5, 7.3 %{p}). */
struct spf_vn {
	enum vn_state st;
	int slot;
	enum dns_status ptr_status;
	size_t n;
	char *names[SPF_MAX_BATCH];
	int slots[SPF_MAX_BATCH];
	int ok[SPF_MAX_BATCH];
};

enum phase { P_EVAL, P_EXP, P_DONE };

struct spf_check {
	struct spf_limits lim;
	char *s, *l, *o, *h, *r, *dflt_exp;
	long long t;
	int v6;
	unsigned char ip[16];	/* 4 bytes used for IPv4 */
	char ip_i[72], ip_c[INET6_ADDRSTRLEN], ptr_name[80];
	char domain0[SPF_NAME_MAX + 1];
	struct spf_frame *fr[SPF_MAX_DEPTH];
	size_t depth;
	struct spf_slot slot[SPF_MAX_SLOTS];
	unsigned next_id;
	struct spf_vn vn;
	unsigned dns_terms, voids;
	enum phase phase;
	int exp_sub, exp_slot;
	char *exp_text;		/* the fetched explain-string */
	enum spf_result result;
	char *mech, *reason, *expl;
	char problem[PROBLEM_MAX];
};

/* Step functions return 1 when they made progress, 0 when blocked on answers. */

/* spf.c: query slots. name NULL (unusable) is answered NXDOMAIN at once. */
int spf_slot_new(struct spf_check *c, enum slot_kind kind, enum dns_type type,
		 const char *name, unsigned cidr);
void spf_slot_free(struct spf_check *c, int i);
int spf_status_temp(enum dns_status s);		/* SERVFAIL, TIMEOUT, ERROR */
int spf_addr_match(const unsigned char *a, const unsigned char *b, unsigned bits);

/* spf.c: results. */
void spf_set_reason(struct spf_check *c, const char *domain, const char *msg,
		    const char *problem);
int spf_frame_finish(struct spf_check *c, enum spf_result res, const struct spf_term *t,
		     const char *reason, const char *problem);
int spf_frame_match(struct spf_check *c, const struct spf_term *t);
int spf_frame_next(struct spf_frame *f);
struct spf_frame *spf_frame_push(struct spf_check *c, const char *domain, int ok);

/* spf_eval.c */
int spf_vn_step(struct spf_check *c);
int spf_expand(struct spf_check *c, const char *domain, const char *s, int flags,
	       struct sbuf *out, int *rc_out, int *progress_out);
int spf_frame_record(struct spf_check *c, struct spf_frame *f);
int spf_frame_eval(struct spf_check *c, struct spf_frame *f);

#endif
