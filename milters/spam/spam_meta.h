/*
 * spam_meta: SpamAssassin meta rule expressions.
 * Owns: parsing "expr" of `meta NAME expr` into a small stack program and
 * evaluating it. Grammar (Perl precedence, all left-associative):
 *   or  := and ( "||" and )*
 *   and := cmp ( "&&" cmp )*
 *   cmp := sum [ ( "<" | ">" | "<=" | ">=" | "==" | "!=" ) sum ]
 *   sum := prod ( ("+" | "-") prod )*
 *   prod:= un ( ("*" | "/") un )*
 *   un  := "!" un | "-" un | "(" or ")" | NUMBER | NAME
 * NAME is a rule name ([A-Za-z_][A-Za-z0-9_]*); its value is the rule's
 * hit count (0 when it did not hit). Comparisons and ! && || give 0 or 1;
 * x/0 is 0.
 * Leaves: which rule a name means (the caller binds names to indexes).
 */
#ifndef SLUICE_SPAM_META_H
#define SLUICE_SPAM_META_H

#include <stddef.h>

struct spam_meta;

/*
 * spam_meta_parse - compile expr. Returns NULL with *err_out (static text)
 * on a syntax error. At most SPAM_META_MAX_TOKENS tokens.
 */
#define SPAM_META_MAX_TOKENS 4096
struct spam_meta *spam_meta_parse(const char *expr, const char **err_out);
void spam_meta_free(struct spam_meta **m);

/* Names the expression refers to (in order of first use); borrowed. */
size_t spam_meta_nrefs(const struct spam_meta *m);
const char *spam_meta_ref(const struct spam_meta *m, size_t i);
/* spam_meta_bind - reference i means values[index] at evaluation time. */
void spam_meta_bind(struct spam_meta *m, size_t i, size_t index);

/* spam_meta_eval - value of the expression; values indexed as bound. */
double spam_meta_eval(const struct spam_meta *m, const double *values);

#endif
