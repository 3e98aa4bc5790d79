#include "conf/params_dmarc.h"
#include "conf/params_table.h"

#include <stddef.h>

const struct conf_param dmarc_params[] = {
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
