#include "conf/params_ratelimit.h"
#include "conf/params_table.h"

#include <stddef.h>

const struct conf_param ratelimit_params[] = {
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
