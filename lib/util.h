/*
 * util: allocation that never returns NULL, fatal errors, small string helpers.
 * Owns nothing but process-wide exit behaviour on out-of-memory and fatal().
 * Leaves logging format to log.c (fatal/panic write through log_event()).
 */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stddef.h>
#include <stdarg.h>

/* x*alloc: like malloc & co. but exit(1) with a message on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* xasprintf: printf into a new string; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

/* panic: our bug. Logs and aborts (core). */
void panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* fatal: unusable configuration or environment at start-up. Logs, exit(1). */
void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Growable byte buffer, always NUL-terminated (buf[len] == 0). */
struct sbuf {
	char *buf;
	size_t len;
	size_t cap;
};
void sbuf_init(struct sbuf *b);
void sbuf_add(struct sbuf *b, const void *p, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_addc(struct sbuf *b, char c);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_reset(struct sbuf *b);	/* len = 0, keeps memory */
void sbuf_free(struct sbuf *b);		/* frees memory, back to init state */
/* sbuf_steal: returns the buffer (caller frees) and re-inits b. */
char *sbuf_steal(struct sbuf *b);

/* ASCII case helpers (locale-independent). */
int ascii_strcasecmp(const char *a, const char *b);
int ascii_strncasecmp(const char *a, const char *b, size_t n);
void ascii_lower(char *s);

/* write_full - write all len bytes (retrying short writes and EINTR). 0, or -1
 * with errno (EIO if the file accepted no bytes). */
int write_full(int fd, const void *buf, size_t len);

/* Monotonic and wall clock. */
long long now_ms(void);		/* CLOCK_MONOTONIC, milliseconds */
double wall_time(void);		/* gettimeofday, seconds with microseconds */

#endif
