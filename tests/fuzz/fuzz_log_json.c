/*
 * fuzz_log_json: lib/log's JSON form of any message (log_format = json) is
 * one line of valid JSON: an object whose "message" is the message (when
 * it is UTF-8), whose envelope members stay the envelope's, and whose
 * other members are strings.
 */
#include "lib/log.h"
#include "lib/util.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	char *msg = xmalloc(n + 1);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (d[i])	/* a C string: log_event never sees a NUL */
			msg[m++] = (char)d[i];
	msg[m] = 0;
	char *s = log_json_render("sluice/smtpd", "4ABCDEF01", msg);
	if (strchr(s, '\n') || strchr(s, '\r'))
		abort();
	json_error_t e;
	json_t *o = json_loads(s, 0, &e);
	if (!json_is_object(o))
		abort();
	const char *v = json_string_value(json_object_get(o, "message"));
	if (!v)
		abort();
	json_t *probe = json_string(msg);	/* NULL when msg is not UTF-8 */
	if (probe && strcmp(v, msg) != 0)
		abort();
	json_decref(probe);
	if (strcmp(json_string_value(json_object_get(o, "program")), "sluice/smtpd") ||
	    strcmp(json_string_value(json_object_get(o, "queue_id")), "4ABCDEF01") ||
	    !json_is_integer(json_object_get(o, "pid")))
		abort();
	const char *k;
	json_t *val;
	json_object_foreach(o, k, val)
		if (strcmp(k, "pid") && !json_is_string(val))
			abort();
	json_decref(o);
	free(s);
	free(msg);
	return 0;
}
