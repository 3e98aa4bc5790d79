/*
 * report_html: the report document (report_stats' JSON) -> one
 * self-contained HTML page (inline CSS and SVG charts; no scripts, fonts or
 * anything fetched from elsewhere).
 * Owns the page layout and the charts; leaves the numbers to report_stats.
 */
#ifndef SLUICE_REPORT_HTML_H
#define SLUICE_REPORT_HTML_H

#include <jansson.h>
#include <stdio.h>

/* report_html - write the page for doc to out. */
void report_html(FILE *out, json_t *doc);

#endif
