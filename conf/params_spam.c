#include "conf/params_spam.h"
#include "conf/params_table.h"

#include <stddef.h>

const struct conf_param spam_params[] = {
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
