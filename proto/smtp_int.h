/*
 * smtp_int: private glue between proto/smtp.c (framing, DATA/BDAT decoder)
 * and proto/smtp_cmd.c (one command line -> struct smtp_cmd).
 * Not for use outside proto/smtp*.c; the contract is proto/smtp.h.
 */
#ifndef SLUICE_PROTO_SMTP_INT_H
#define SLUICE_PROTO_SMTP_INT_H

#include "lib/util.h"
#include "proto/smtp.h"

/* Storage behind the borrowed strings of one COMMAND/BAD_COMMAND/LINE item. */
struct smtp_cmd_ws {
	struct sbuf line;	/* the line as received */
	struct sbuf arg;	/* argument, trailing blanks removed */
	struct sbuf work;	/* copy of arg cut into parameter tokens */
	struct sbuf text;	/* generated reply text */
	char *path_storage;	/* from smtp_parse_path */
};

void smtp_cmd_ws_init(struct smtp_cmd_ws *ws);
void smtp_cmd_ws_free(struct smtp_cmd_ws *ws);

/*
 * smtp_cmd_parse - parse one command line (len bytes at raw, without its
 * line end) into *item: COMMAND or BAD_COMMAND. Strings live in ws until
 * the next call.
 */
void smtp_cmd_parse(struct smtp_cmd_ws *ws, const char *raw, size_t len, struct smtp_item *item);

#endif
