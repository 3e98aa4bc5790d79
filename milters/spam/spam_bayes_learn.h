/*
 * spam_bayes_learn: what `sluice-spam learn --spam|--ham|--forget PATH...`
 * does with its paths.
 * Owns: telling a path's kind (a Maildir: its cur/ and new/; another
 * directory: its regular files, not descending; an mbox file: every
 * message after a "From " line, quoting left as it is since '>' is no
 * word character; any other file: one message), reading messages, the per-message counters and the progress
 * callback.
 * Leaves: tokens, the store and the class decision to spam_bayes; option
 * parsing and printing to main.c.
 */
#ifndef SLUICE_SPAM_BAYES_LEARN_H
#define SLUICE_SPAM_BAYES_LEARN_H

#include <stddef.h>
#include <stdint.h>

#include "milters/spam/spam_bayes.h"

struct spam_bayes_progress {
	const char *path;	/* the file being read (borrowed, for the call only) */
	const char *error;	/* this file or message failed: why (borrowed), else NULL */
	uint64_t messages;	/* messages read so far */
	uint64_t learned;	/* learned now (or moved from the other class) */
	uint64_t already;	/* already learned as that class */
	uint64_t forgotten;	/* --forget: removed */
	uint64_t unknown;	/* --forget: had not been learned */
	uint64_t errors;	/* files that could not be read */
};

/* Called after every message and after every file that failed. */
typedef void (*spam_bayes_progress_fn)(void *arg, const struct spam_bayes_progress *p);

/*
 * spam_bayes_learn_paths - learn (op) every message under paths[0..n).
 * A file that cannot be read is counted in errors, reported through fn
 * (may be NULL) and skipped. A store failure stops: -1 with *err_out
 * (caller frees). *total_out (may be NULL) gets the final counters.
 * Returns 0 when the store took every message read.
 */
int spam_bayes_learn_paths(struct spam_bayes *b, enum spam_bayes_op op, const char *const *paths,
			   size_t n, spam_bayes_progress_fn fn, void *arg,
			   struct spam_bayes_progress *total_out, char **err_out);

/*
 * spam_bayes_learn_buffer - learn every message of one file's bytes
 * (mbox or single message), counting into *p (not reset) and calling fn.
 * For tests and for reading standard input. 0, or -1 with *err_out.
 */
int spam_bayes_learn_buffer(struct spam_bayes *b, enum spam_bayes_op op, const char *path,
			    const char *data, size_t len, spam_bayes_progress_fn fn, void *arg,
			    struct spam_bayes_progress *p, char **err_out);

/*
 * spam_bayes_mbox_next - the next message of an mbox buffer: from *pos,
 * the body after a "From " line up to the next "From " line that follows an
 * empty line (or the end). *msg_out and *len_out point into data (the "From "
 * line skipped, quoting left in place). 1, or 0 at the end.
 */
int spam_bayes_mbox_next(const char *data, size_t len, size_t *pos, const char **msg_out,
			 size_t *len_out);

#endif
