/*
 * probe.c -- gmail-probe CONFIG TARGET [MESSAGE-ID]: drives one gmail
 * target's look-up op (target_seen) the way the engine does for a
 * message in doubt after a crash, for tests/integration/test_gmail.py.
 * Prints "found" or "not found" (exit 0), or the error (exit 1).
 * Without MESSAGE-ID the message has none.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "forward/target.h"
#include "net/http.h"

int
main(int argc, char **argv)
{
	struct config		*cfg;
	struct target		*tg = NULL;
	struct target_msg	 m;
	struct mh_err		 err;
	char			 buf[1200];
	bool			 found = false;
	size_t			 i;
	int			 rc = 1;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: gmail-probe CONFIG TARGET "
		    "[MESSAGE-ID]\n");
		return 2;
	}
	http_init();
	if ((cfg = config_load(argv[1], stderr)) == NULL)
		return 1;
	mh_err_clear(&err);
	for (i = 0; i < cfg->ntargets; i++)
		if (strcmp(cfg->targets[i].name, argv[2]) == 0)
			tg = target_new(&cfg->targets[i], NULL, &err);
	if (tg == NULL) {
		fprintf(stderr, "no target %s: %s\n", argv[2], err.msg);
		goto out;
	}
	memset(&m, 0, sizeof m);
	m.fd = -1;
	m.message_id = argc == 4 ? argv[3] : NULL;
	if (!target_can_look_up(tg))
		fprintf(stderr, "the target cannot be asked\n");
	else if (target_seen(tg, &m, &found, &err) == -1)
		fprintf(stderr, "%s\n", mh_err_str(&err, buf, sizeof buf));
	else {
		printf("%s\n", found ? "found" : "not found");
		rc = 0;
	}
out:
	target_close(tg);
	config_free(cfg);
	return rc;
}
