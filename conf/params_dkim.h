/*
 * params_dkim: the dkim_* parameters of sluice-dkim (issue 4).
 * Owns names, types, defaults and ranges; the meaning of each is in
 * docs/DKIM.md. Defaults follow OpenDKIM where an option has an
 * OpenDKIM counterpart (On-* actions, Canonicalization, OversignHeaders).
 */
#ifndef SLUICE_CONF_PARAMS_DKIM_H
#define SLUICE_CONF_PARAMS_DKIM_H

#include "conf/conf.h"

extern const struct conf_param dkim_params[];

/* Default signed-header list (close to OpenDKIM's default SignHeaders). */
#define DKIM_DEFAULT_SIGN_HEADERS \
	"From, Reply-To, Subject, Date, To, Cc, Resent-Date, Resent-From, Resent-To, " \
	"Resent-Cc, In-Reply-To, References, List-Id, List-Help, List-Unsubscribe, " \
	"List-Subscribe, List-Post, List-Owner, List-Archive, Message-ID, Sender, " \
	"MIME-Version, Content-Type, Content-Transfer-Encoding, Content-ID, " \
	"Content-Description, Content-Language, Content-Disposition"

#endif
