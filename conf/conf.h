/*
 * conf: sluice.conf in Postfix main.cf syntax, and typed parameter tables.
 * Owns: parsing (name = value, continuation lines that begin with white
 * space, # comments), $name / ${name} / ${name?text} / ${name:text} / $$
 * expansion, typed validation against per-daemon parameter tables, list
 * splitting. Leaves lookup tables to table.c and logging to the caller.
 *
 * Every error names "file:line: reason". A bad value for a known parameter
 * (wrong type, out of range, not one of the enum choices) is an error; an
 * unknown parameter is a warning (collected, see conf_warnings()).
 *
 * Details (added with the implementation):
 * - Expansion is lazy: "$x" sees the last definition of x anywhere in the
 *   file (or its default). ${x?text} / ${x:text} test the expanded value of
 *   x; text is expanded in turn. $(x) works like ${x}; a '$' not followed by
 *   a name, '{', '(' or '$' stays literal. A loop, an unterminated "${", or
 *   a value over 1 MiB after expansion is an error; an undefined $x
 *   expands to "" with a warning.
 * - A setting that is not in the tables is not warned about when another
 *   value refers to it (a user-defined macro, as in Postfix).
 * - CONF_ENUM values read back with the spelling used in .choices.
 * - CONF_SIZE suffixes k, m, g are powers of 1024.
 * - conf_where() is "override" for conf_override(); a failed override
 *   leaves the previous value in place. Strings returned before an
 *   override stay valid until conf_free().
 */
#ifndef SLUICE_CONF_H
#define SLUICE_CONF_H

#include <stddef.h>

enum conf_type {
	CONF_STR,	/* any text */
	CONF_INT,	/* decimal integer within [min, max] */
	CONF_BOOL,	/* yes|no|true|false|on|off|1|0 (case-insensitive) */
	CONF_TIME,	/* Postfix time: number + optional unit s|m|h|d|w (default: .unit) -> seconds */
	CONF_SIZE,	/* bytes, plain integer (Postfix style), optional k|m|g suffix accepted */
	CONF_LIST,	/* list split on commas and white space; { ... } groups stay one item */
	CONF_ENUM,	/* one of .choices ("a|b|c"), case-insensitive */
};

struct conf_param {
	const char *name;
	enum conf_type type;
	const char *def;	/* default text (may use $other); NULL = "" */
	long long min, max;	/* INT/TIME(seconds)/SIZE bounds; max == 0 means no upper bound */
	const char *choices;	/* CONF_ENUM: "accept|tempfail|reject" */
	char unit;		/* CONF_TIME default unit, 0 = 's' */
};
/* A table is an array terminated by an entry with name == NULL. */

struct conf;

/*
 * conf_load - read and validate path against the given parameter tables
 * (NULL-terminated array of tables). Parameters whose name starts with one of
 * ignore_prefixes (NULL-terminated, may be NULL) belong to other daemons and
 * are neither validated nor warned about.
 * Returns a new conf, or NULL with *err_out = "file:line: reason" (caller frees).
 */
struct conf *conf_load(const char *path, const struct conf_param *const *tables,
		       const char *const *ignore_prefixes, char **err_out);
/* conf_load_string - the same from memory; name is used in messages. */
struct conf *conf_load_string(const char *text, const char *name,
			      const struct conf_param *const *tables,
			      const char *const *ignore_prefixes, char **err_out);
/*
 * conf_override - set name = value after loading (command-line -o name=value),
 * validated like a file entry. Returns 0 or -1 with *err_out (caller frees).
 */
int conf_override(struct conf *c, const char *name, const char *value, char **err_out);
void conf_free(struct conf **c);

/* Warnings from loading ("file:line: unknown parameter foo"); borrowed. */
const char *const *conf_warnings(const struct conf *c, size_t *n_out);

/*
 * Typed getters. name must be in one of the tables given to conf_load
 * (else panic: our bug). Strings are expanded; borrowed until conf_free.
 */
const char *conf_str(const struct conf *c, const char *name);
long long conf_int(const struct conf *c, const char *name);
int conf_bool(const struct conf *c, const char *name);
long long conf_time_s(const struct conf *c, const char *name);
long long conf_size(const struct conf *c, const char *name);
/* conf_list - items of a CONF_LIST (or any) value; *n_out items; borrowed. */
const char *const *conf_list(const struct conf *c, const char *name, size_t *n_out);
/* conf_is_set - 1 if the file (or an override) set it explicitly. */
int conf_is_set(const struct conf *c, const char *name);
/* conf_where - "file:line" of the explicit setting, or "default"; borrowed. */
const char *conf_where(const struct conf *c, const char *name);
/* conf_path - the file name given to conf_load. */
const char *conf_path(const struct conf *c);

/*
 * Relative paths. A relative path in any value (queue_directory, a table's
 * file, a key, a socket, maillog_file, ...) is relative to the base
 * directory: config_directory when it is set (itself relative to the
 * directory of the config file), else the directory of the config file.
 * Daemons and tools make it their working directory right after loading
 * the config (conf_enter_base_dir), so every module resolves a relative
 * path the same way, whatever directory they were started in.
 *
 * conf_base_dir - the base directory, absolute, symlinks resolved. Returns
 * a new string (caller frees), or NULL with *err_out = "where: config_directory
 * DIR: reason" (caller frees).
 */
char *conf_base_dir(const struct conf *c, char **err_out);
/* conf_enter_base_dir - chdir() to conf_base_dir(c); 0 or -1 with *err_out (caller frees). */
int conf_enter_base_dir(const struct conf *c, char **err_out);
/* conf_abs_path - path when absolute, else base/path; a new string (caller frees). */
char *conf_abs_path(const char *base, const char *path);

/*
 * conf_split_list - split text like Postfix: commas and white space separate,
 * "{ ... }" groups are one item (the braces kept). Caller frees with
 * conf_list_free(). Exposed for tables and per-milter settings.
 */
char **conf_split_list(const char *text, size_t *n_out);
void conf_list_free(char **list, size_t n);

/*
 * conf_parse_time - "300s", "5d", "10" (unit def_unit) -> seconds.
 * Returns 0 or -1 with *err_out (static string).
 */
int conf_parse_time(const char *s, char def_unit, long long *secs_out, const char **err_out);

/*
 * Added for table.c (and anyone reading Postfix-syntax files).
 *
 * conf_read_file - read all of path into a new NUL-terminated buffer
 * (*text_out, caller frees; *len_out excludes the NUL, the text may itself
 * contain NUL bytes, which conf_lines reports). Files over max_bytes are an
 * error. Returns 0 or -1 with *err_out = "path: reason" (caller frees).
 */
int conf_read_file(const char *path, size_t max_bytes, char **text_out, size_t *len_out,
		   char **err_out);

/*
 * conf_lines - Postfix logical lines (as readlline(3) in main.cf and tables):
 * lines whose first non-blank character is '#' and blank lines are skipped;
 * a line that begins with white space continues the previous logical line
 * (joined with one space); \r\n line ends are accepted; leading and
 * trailing white space is removed. A continuation line with nothing to
 * continue, a NUL byte, or a logical line over max_line_bytes is an error.
 * name is used in messages ("name:line: reason"); text is borrowed.
 */
#define CONF_MAX_LINE_BYTES (1024 * 1024)
struct conf_lines;
struct conf_lines *conf_lines_new(const char *text, size_t len, const char *name,
				  size_t max_line_bytes);
/*
 * conf_lines_next - 1 with *line_out (borrowed until the next call) and
 * *lineno_out (line number where the logical line starts), 0 at the end,
 * -1 with *err_out (caller frees).
 */
int conf_lines_next(struct conf_lines *r, const char **line_out, int *lineno_out,
		    char **err_out);
void conf_lines_free(struct conf_lines **r);

#endif
