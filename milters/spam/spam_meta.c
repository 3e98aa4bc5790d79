/*
 * spam_meta: meta expressions, recursive descent to a postfix program.
 * See spam_meta.h.
 */
#include "milters/spam/spam_meta.h"
#include "lib/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

enum op {
	OP_NUM, OP_REF, OP_NOT, OP_NEG, OP_ADD, OP_SUB, OP_MUL, OP_DIV,
	OP_LT, OP_GT, OP_LE, OP_GE, OP_EQ, OP_NE, OP_AND, OP_OR,
};

struct ins {
	enum op op;
	double num;	/* OP_NUM */
	size_t ref;	/* OP_REF: index into refs */
};

struct spam_meta {
	struct ins *code;
	size_t n, cap;
	char **refs;
	size_t *bound;
	size_t nrefs;
	size_t max_stack;
};

struct parser {
	const char *s;
	struct spam_meta *m;
	const char *err;
	int depth;
	size_t tokens;
};

static void emit(struct parser *p, enum op op, double num, size_t ref)
{
	struct spam_meta *m = p->m;
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->code = xrealloc(m->code, m->cap * sizeof(*m->code));
	}
	m->code[m->n++] = (struct ins){ op, num, ref };
}

static void skip_ws(struct parser *p)
{
	while (*p->s == ' ' || *p->s == '\t')
		p->s++;
}

/* accept - consume the operator tok if it is next (and not the start of a longer one). */
static int accept(struct parser *p, const char *tok)
{
	skip_ws(p);
	size_t l = strlen(tok);
	if (strncmp(p->s, tok, l) != 0)
		return 0;
	/* "<" must not take "<=", "!" must not take "!=" */
	if (l == 1 && (tok[0] == '<' || tok[0] == '>' || tok[0] == '!') && p->s[1] == '=')
		return 0;
	if (l == 1 && (tok[0] == '&' || tok[0] == '|'))
		return 0;
	p->s += l;
	if (++p->tokens > SPAM_META_MAX_TOKENS && p->err == NULL)
		p->err = "expression too long";
	return 1;
}

static void parse_or(struct parser *p);

static void parse_unary(struct parser *p)
{
	if (p->err)
		return;
	if (++p->depth > 200) {
		p->err = "expression nested too deeply";
		return;
	}
	skip_ws(p);
	if (accept(p, "!")) {
		parse_unary(p);
		emit(p, OP_NOT, 0, 0);
	} else if (accept(p, "-")) {
		parse_unary(p);
		emit(p, OP_NEG, 0, 0);
	} else if (accept(p, "(")) {
		parse_or(p);
		if (!p->err && !accept(p, ")"))
			p->err = "missing )";
	} else if (isdigit((unsigned char)*p->s) || (*p->s == '.' && isdigit((unsigned char)p->s[1]))) {
		char *end;
		double v = strtod(p->s, &end);
		p->s = end;
		p->tokens++;
		emit(p, OP_NUM, v, 0);
	} else if (isalpha((unsigned char)*p->s) || *p->s == '_') {
		const char *st = p->s;
		while (isalnum((unsigned char)*p->s) || *p->s == '_')
			p->s++;
		size_t l = (size_t)(p->s - st);
		struct spam_meta *m = p->m;
		size_t i;
		for (i = 0; i < m->nrefs; i++)
			if (strlen(m->refs[i]) == l && !strncmp(m->refs[i], st, l))
				break;
		if (i == m->nrefs) {
			m->refs = xrealloc(m->refs, (m->nrefs + 1) * sizeof(*m->refs));
			m->bound = xrealloc(m->bound, (m->nrefs + 1) * sizeof(*m->bound));
			m->refs[i] = xstrndup(st, l);
			m->bound[i] = 0;
			m->nrefs++;
		}
		p->tokens++;
		emit(p, OP_REF, 0, i);
	} else {
		p->err = *p->s ? "unexpected character" : "unexpected end of expression";
	}
	p->depth--;
}

static void parse_prod(struct parser *p)
{
	parse_unary(p);
	for (;;) {
		if (p->err)
			return;
		if (accept(p, "*")) {
			parse_unary(p);
			emit(p, OP_MUL, 0, 0);
		} else if (accept(p, "/")) {
			parse_unary(p);
			emit(p, OP_DIV, 0, 0);
		} else {
			return;
		}
	}
}

static void parse_sum(struct parser *p)
{
	parse_prod(p);
	for (;;) {
		if (p->err)
			return;
		if (accept(p, "+")) {
			parse_prod(p);
			emit(p, OP_ADD, 0, 0);
		} else if (accept(p, "-")) {
			parse_prod(p);
			emit(p, OP_SUB, 0, 0);
		} else {
			return;
		}
	}
}

static void parse_cmp(struct parser *p)
{
	parse_sum(p);
	if (p->err)
		return;
	static const struct { const char *tok; enum op op; } ops[] = {
		{ "<=", OP_LE }, { ">=", OP_GE }, { "==", OP_EQ }, { "!=", OP_NE },
		{ "<", OP_LT }, { ">", OP_GT },
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (accept(p, ops[i].tok)) {
			parse_sum(p);
			emit(p, ops[i].op, 0, 0);
			return;
		}
}

static void parse_and(struct parser *p)
{
	parse_cmp(p);
	while (!p->err && accept(p, "&&")) {
		parse_cmp(p);
		emit(p, OP_AND, 0, 0);
	}
}

static void parse_or(struct parser *p)
{
	if (++p->depth > 200) {
		p->err = "expression nested too deeply";
		return;
	}
	parse_and(p);
	while (!p->err && accept(p, "||")) {
		parse_and(p);
		emit(p, OP_OR, 0, 0);
	}
	p->depth--;
}

struct spam_meta *spam_meta_parse(const char *expr, const char **err_out)
{
	struct spam_meta *m = xcalloc(1, sizeof(*m));
	struct parser p = { .s = expr, .m = m };
	parse_or(&p);
	skip_ws(&p);
	if (!p.err && *p.s)
		p.err = *p.s == ')' ? "unbalanced )" : "unexpected text after expression";
	if (p.err) {
		*err_out = p.err;
		spam_meta_free(&m);
		return NULL;
	}
	/* stack depth bound: each NUM/REF pushes one */
	size_t d = 0, maxd = 0;
	for (size_t i = 0; i < m->n; i++) {
		enum op op = m->code[i].op;
		if (op == OP_NUM || op == OP_REF)
			d++;
		else if (op != OP_NOT && op != OP_NEG)
			d--;
		if (d > maxd)
			maxd = d;
	}
	m->max_stack = maxd;
	return m;
}

void spam_meta_free(struct spam_meta **mp)
{
	struct spam_meta *m = mp ? *mp : NULL;
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nrefs; i++)
		free(m->refs[i]);
	free(m->refs);
	free(m->bound);
	free(m->code);
	free(m);
	*mp = NULL;
}

size_t spam_meta_nrefs(const struct spam_meta *m)
{
	return m->nrefs;
}

const char *spam_meta_ref(const struct spam_meta *m, size_t i)
{
	return i < m->nrefs ? m->refs[i] : NULL;
}

void spam_meta_bind(struct spam_meta *m, size_t i, size_t index)
{
	if (i < m->nrefs)
		m->bound[i] = index;
}

double spam_meta_eval(const struct spam_meta *m, const double *values)
{
	double small[64];
	double *st = m->max_stack <= 64 ? small : xmalloc(m->max_stack * sizeof(double));
	size_t sp = 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct ins *in = &m->code[i];
		double a, b;
		switch (in->op) {
		case OP_NUM: st[sp++] = in->num; continue;
		case OP_REF: st[sp++] = values[m->bound[in->ref]]; continue;
		case OP_NOT: st[sp - 1] = st[sp - 1] == 0; continue;
		case OP_NEG: st[sp - 1] = -st[sp - 1]; continue;
		default: break;
		}
		b = st[--sp];
		a = st[sp - 1];
		double r = 0;
		switch (in->op) {
		case OP_ADD: r = a + b; break;
		case OP_SUB: r = a - b; break;
		case OP_MUL: r = a * b; break;
		case OP_DIV: r = b != 0 ? a / b : 0; break;
		case OP_LT: r = a < b; break;
		case OP_GT: r = a > b; break;
		case OP_LE: r = a <= b; break;
		case OP_GE: r = a >= b; break;
		case OP_EQ: r = a == b; break;
		case OP_NE: r = a != b; break;
		case OP_AND: r = a != 0 && b != 0; break;
		case OP_OR: r = a != 0 || b != 0; break;
		default: panic("spam_meta: bad op %d", in->op);
		}
		st[sp - 1] = r;
	}
	double v = sp ? st[0] : 0;
	if (st != small)
		free(st);
	return v;
}
