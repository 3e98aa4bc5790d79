/*
 * report_html: see report_html.h.
 */
#include "tools/report_html.h"

void report_html(FILE *out, json_t *doc)
{
	(void)doc;
	fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>sluice report</title></head>"
	      "<body><p>HTML output is not written yet; use --format text or json.</p></body></html>\n",
	      out);
}
