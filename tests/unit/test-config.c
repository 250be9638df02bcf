/* test-config.c -- config_load diagnostics, defaults, printing, secrets */
#include <stdint.h>
#include <sys/stat.h>

#include "check.h"
#include "config/config.h"
#include "log.h"

static char	tmpdir[] = "/tmp/mh-test-config-XXXXXX";

/* Writes text to tmpdir/name with mode; returns a static path. */
static const char *
write_cfg(const char *name, const char *text, mode_t mode)
{
	static char	path[4][256];
	static int	n;
	char		*p = path[n++ % 4];
	FILE		*f;

	snprintf(p, sizeof path[0], "%s/%s", tmpdir, name);
	if ((f = fopen(p, "w")) == NULL) {
		perror(p);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
	chmod(p, mode);
	return p;
}

/* Loads path; *diag gets everything written to diag (caller frees). */
static struct config *
load(const char *path, char **diag)
{
	struct config	*cfg;
	size_t		 len;
	FILE		*f = open_memstream(diag, &len);

	cfg = config_load(path, f);
	fclose(f);
	return cfg;
}

/* "PATH:LINE: msg" in a rotating static buffer. */
static const char *
at(const char *path, int line, const char *msg)
{
	static char	buf[4][512];
	static int	n;
	char		*b = buf[n++ % 4];

	snprintf(b, sizeof buf[0], "%s:%d: %s", path, line, msg);
	return b;
}

/* How many lines diag has. */
static int
nlines(const char *diag)
{
	int	n = 0;

	for (; *diag != '\0'; diag++)
		n += *diag == '\n';
	return n;
}

#define GOOD_TARGETS							\
	"[target:home]\n"		/* 1 */				\
	"type = lmtp\n"			/* 2 */				\
	"socket = /run/dovecot/lmtp\n"	/* 3 */				\
	"recipient = me@example.org\n"	/* 4 */

static const char good[] =
	"; a full config\n"						/* 1 */
	"[general]\n"							/* 2 */
	"concurrency = 8\n"						/* 3 */
	"log_level = debug\n"						/* 4 */
	"timeout = 2m\n"						/* 5 */
	"state = /var/tmp/st.db\n"					/* 6 */
	"\n"								/* 7 */
	"[target:home]\n"						/* 8 */
	"type = lmtp\n"							/* 9 */
	"socket = /run/dovecot/lmtp\n"					/* 10 */
	"recipient = me@example.org, you@example.org\n"			/* 11 */
	"\n"								/* 12 */
	"[target:gmail]\n"						/* 13 */
	"type = smtp\n"							/* 14 */
	"host = smtp.gmail.com\n"					/* 15 */
	"user = me@gmail.com\n"						/* 16 */
	"password_command = echo x\n"					/* 17 */
	"recipient = me@gmail.com\n"					/* 18 */
	"envelope_from = empty\n"					/* 19 */
	"received = no\n"						/* 20 */
	"\n"								/* 21 */
	"[target:relay]\n"						/* 22 */
	"type = smtp\n"							/* 23 */
	"host = relay.example\n"					/* 24 */
	"tls = starttls\n"						/* 25 */
	"recipient = me@example.org\n"					/* 26 */
	"envelope_from = bounce@example.org\n"				/* 27 */
	"\n"								/* 28 */
	"[target:lmtp-tcp]\n"						/* 29 */
	"type = lmtp\n"							/* 30 */
	"host = 127.0.0.1\n"						/* 31 */
	"recipient = me@example.org\n"					/* 32 */
	"\n"								/* 33 */
	"[account:old-isp]\n"						/* 34 */
	"protocol = pop3\n"						/* 35 */
	"host = pop.old-isp.example\n"					/* 36 */
	"user = joe\n"							/* 37 */
	"password = hunter2-secret\n"					/* 38 */
	"delete_after = 30d\n"						/* 39 */
	"target = home\n"						/* 40 */
	"max_size = 10M\n"						/* 41 */
	"\n"								/* 42 */
	"[account:pop-stls]\n"						/* 43 */
	"protocol = pop3\n"						/* 44 */
	"host = pop.example\n"						/* 45 */
	"tls = starttls\n"						/* 46 */
	"user = joe\n"							/* 47 */
	"password_file = /nonexistent/pw\n"				/* 48 */
	"target = gmail\n"						/* 49 */
	"keep = no\n"							/* 50 */
	"\n"								/* 51 */
	"[account:work]\n"						/* 52 */
	"protocol = imap\n"						/* 53 */
	"host = imap.work.example\n"					/* 54 */
	"user = joe\n"							/* 55 */
	"password_command = pass show work\n"				/* 56 */
	"target = relay\n"						/* 57 */
	"fingerprint = abcdef0123456789abcdef0123456789"
	    "abcdef0123456789abcdef0123456789\n"			/* 58 */
	"idle = yes\n"							/* 59 */
	"mark_seen = yes\n"						/* 60 */
	"move_to = Archive\n"						/* 61 */
	"interval = 1h30m\n"						/* 62 */
	"\n"								/* 63 */
	"[account:plain]\n"						/* 64 */
	"protocol = imap\n"						/* 65 */
	"host = 127.0.0.1\n"						/* 66 */
	"tls = none\n"							/* 67 */
	"allow_plaintext_auth = yes\n"					/* 68 */
	"user = joe\n"							/* 69 */
	"password_file = ~/pw\n"					/* 70 */
	"target = lmtp-tcp\n"						/* 71 */
	"folders = INBOX, Lists/dev , Spam\n"				/* 72 */
	"enabled = no\n"						/* 73 */
	"timeout = 10s\n";						/* 74 */

static void
t_good_full(void)
{
	const char			*p;
	struct config			*cfg;
	const struct cfg_account	*a;
	char				*diag = NULL;

	setenv("HOME", "/home/tester", 1);
	p = write_cfg("good.ini", good, 0600);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	CHECK_STR(diag, "");
	if (cfg == NULL)
		return;
	CHECK(cfg->general.concurrency == 8);
	CHECK(cfg->general.log_level == LOG_LVL_DEBUG);
	CHECK(cfg->general.timeout == 120);
	CHECK(cfg->general.interval == 300);		/* default */
	CHECK(cfg->general.log == CFG_LOG_STDERR);
	CHECK_STR(cfg->general.state, "/var/tmp/st.db");
	CHECK(cfg->has_inline_secret);
	CHECK(cfg->ntargets == 4 && cfg->naccounts == 4);

	/* lmtp on a socket: tls none, no port. */
	CHECK_STR(cfg->targets[0].name, "home");
	CHECK(cfg->targets[0].line == 8);
	CHECK(cfg->targets[0].type == CFG_TARGET_LMTP);
	CHECK(cfg->targets[0].ep.tls == CFG_TLS_NONE);
	CHECK(cfg->targets[0].ep.host == NULL);
	CHECK_STR(cfg->targets[0].ep.socket, "/run/dovecot/lmtp");
	CHECK(cfg->targets[0].smtp.nrecipients == 2);
	CHECK_STR(cfg->targets[0].smtp.recipients[1], "you@example.org");
	CHECK(cfg->targets[0].received);
	CHECK(cfg->targets[0].smtp.envfrom == CFG_ENVFROM_ORIGINAL);
	/* smtp defaults: implicit tls, 465. */
	CHECK(cfg->targets[1].ep.tls == CFG_TLS_IMPLICIT);
	CHECK(cfg->targets[1].ep.port == 465);
	CHECK(cfg->targets[1].smtp.envfrom == CFG_ENVFROM_EMPTY);
	CHECK(!cfg->targets[1].received);
	CHECK_STR(cfg->targets[1].ep.secret.command, "echo x");
	/* smtp starttls: 587. */
	CHECK(cfg->targets[2].ep.tls == CFG_TLS_STARTTLS);
	CHECK(cfg->targets[2].ep.port == 587);
	CHECK(cfg->targets[2].smtp.envfrom == CFG_ENVFROM_ADDRESS);
	CHECK_STR(cfg->targets[2].smtp.envelope_from, "bounce@example.org");
	/* lmtp over TCP: none, 24. */
	CHECK(cfg->targets[3].ep.tls == CFG_TLS_NONE);
	CHECK(cfg->targets[3].ep.port == 24);

	a = config_account(cfg, "old-isp");
	CHECK(a != NULL && a == &cfg->accounts[0]);
	if (a != NULL) {
		CHECK(a->line == 34);
		CHECK(a->protocol == CFG_PROTO_POP3);
		CHECK(a->ep.tls == CFG_TLS_IMPLICIT && a->ep.port == 995);
		CHECK(a->keep && a->enabled);
		CHECK(a->delete_after == 30 * 86400);
		CHECK(a->max_size == 10 << 20);
		CHECK(a->target == &cfg->targets[0]);
		CHECK(a->timeout == 120);	/* general's */
		CHECK(a->interval == 0);	/* 0 = general's */
		CHECK(a->nfolders == 0);	/* pop3 */
		CHECK_STR(a->ep.secret.password, "hunter2-secret");
	}
	a = config_account(cfg, "pop-stls");
	CHECK(a != NULL && a->ep.port == 110 && !a->keep);
	CHECK(a != NULL && a->target == &cfg->targets[1]);
	a = config_account(cfg, "work");
	CHECK(a != NULL);
	if (a != NULL) {
		CHECK(a->ep.tls == CFG_TLS_IMPLICIT && a->ep.port == 993);
		CHECK(a->nfolders == 1);
		CHECK_STR(a->folders[0], "INBOX");
		CHECK(a->idle && a->mark_seen);
		CHECK_STR(a->move_to, "Archive");
		CHECK(a->interval == 5400);
		CHECK_STR(a->ep.fingerprint, "AB:CD:EF:01:23:45:67:89:AB:CD:EF:"
		    "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:"
		    "67:89");
	}
	a = config_account(cfg, "plain");
	CHECK(a != NULL);
	if (a != NULL) {
		CHECK(a->ep.tls == CFG_TLS_NONE && a->ep.port == 143);
		CHECK(a->ep.allow_plaintext_auth);
		CHECK(!a->enabled);
		CHECK(a->timeout == 10);
		CHECK(a->nfolders == 3);
		CHECK(a->nfolders == 3 && strcmp(a->folders[1], "Lists/dev")
		    == 0);
		CHECK_STR(a->ep.secret.file, "/home/tester/pw");
		CHECK(a->target == &cfg->targets[3]);
	}
	CHECK(config_account(cfg, "nope") == NULL);
	CHECK_STR(cfg_tls_name(CFG_TLS_STARTTLS), "starttls");
	CHECK_STR(cfg_protocol_name(CFG_PROTO_IMAP), "imap");
	CHECK_STR(cfg_target_type_name(CFG_TARGET_LMTP), "lmtp");
	config_free(cfg);
	free(diag);
}

#define CPS_ACCOUNT	"[account:a]\nprotocol = imap\nhost = h\n"	\
	"tls = starttls\nuser = u\npassword_command = true\ntarget = home\n"

/* Two accounts on one mailbox share its record of what was delivered:
   a warning naming both (the second target would never get a message
   the first took); other folders of the same login are fine. */
static void
t_shared_mailbox(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("shared.ini", GOOD_TARGETS
	    "[account:a]\nprotocol = imap\nhost = Mail.Example\n"	/* 5 */
	    "tls = starttls\nuser = u\npassword_command = true\n"
	    "target = home\n"
	    "[account:b]\nprotocol = imap\nhost = mail.example\n"	/* 12 */
	    "tls = starttls\nuser = u\npassword_command = true\n"
	    "folders = Archive, inbox\ntarget = home\n"
	    "[account:c]\nprotocol = imap\nhost = mail.example\n"	/* 20 */
	    "tls = starttls\nuser = u\npassword_command = true\n"
	    "folders = Sent\ntarget = home\n", 0600);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);		/* a warning, not an error */
	CHECK_CONTAINS(diag, "warning: ");
	CHECK_CONTAINS(diag, ":12: [account:b] reads INBOX of u@mail.example, "
	    "as [account:a] (line 5) does");
	CHECK(strstr(diag, "[account:c]") == NULL);
	CHECK(nlines(diag) == 1);
	config_free(cfg);
	free(diag);
}

/* concurrency_per_server: 1..64, default concurrency 32. */
static void
t_concurrency_per_server(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("cps.ini", "[general]\nconcurrency_per_server = 2\n"
	    GOOD_TARGETS CPS_ACCOUNT, 0600);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	if (cfg != NULL) {
		CHECK(cfg->general.concurrency_per_server == 2);
		CHECK(cfg->general.concurrency == 32);
		config_free(cfg);
	}
	free(diag);
	diag = NULL;
	p = write_cfg("cps0.ini", "[general]\nconcurrency_per_server = 0\n"
	    GOOD_TARGETS CPS_ACCOUNT, 0600);
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 2, "bad value '0' for "
	    "'concurrency_per_server': expected a whole number 1..64"));
	config_free(cfg);
	free(diag);
}

/* The minimum: defaults for everything else, no [general]. */
static void
t_minimal_defaults(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	setenv("XDG_STATE_HOME", "/xdg/state", 1);
	p = write_cfg("min.ini", GOOD_TARGETS
	    "[account:a]\n"
	    "protocol = imap\n"
	    "host = h\n"
	    "tls = starttls\n"
	    "user = u\n"
	    "password_command = true\n"
	    "target = home\n", 0644);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	CHECK_STR(diag, "");	/* no inline password: no warning */
	if (cfg != NULL) {
		CHECK(cfg->general.interval == 300);
		CHECK(cfg->general.concurrency == 32);
		CHECK(cfg->general.concurrency_per_server == 4);
		CHECK(cfg->general.timeout == 60);
		CHECK(cfg->general.log_level == LOG_LVL_INFO);
		CHECK_STR(cfg->general.state, "/xdg/state/mailhaul/state.db");
		CHECK(cfg->accounts[0].ep.port == 143);
		CHECK(cfg->accounts[0].timeout == 60);
		CHECK(cfg->accounts[0].keep && cfg->accounts[0].enabled);
		CHECK(!cfg->accounts[0].mark_seen);
		CHECK(!cfg->has_inline_secret);
	}
	config_free(cfg);
	free(diag);
}

static void
t_unknown_key(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("typo.ini", GOOD_TARGETS
	    "[account:x]\n"			/* 5 */
	    "protocol = pop3\n"			/* 6 */
	    "host = h\n"			/* 7 */
	    "user = u\n"			/* 8 */
	    "pasword = secret\n"		/* 9 */
	    "password_command = true\n"		/* 10 */
	    "target = home\n"			/* 11 */
	    "frobnicate = 1\n", 0600);		/* 12 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 9, "unknown key 'pasword' in "
	    "[account:x]; did you mean 'password'?"));
	CHECK_CONTAINS(diag, at(p, 12, "unknown key 'frobnicate' in "
	    "[account:x]\n"));
	CHECK(nlines(diag) == 2);
	free(diag);
}

static void
t_bad_values(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("bad.ini",
	    "[general]\n"			/* 1 */
	    "interval = 5 minutes\n"		/* 2 */
	    "concurrency = 65\n"		/* 3 */
	    "log = journal\n"			/* 4 */
	    "[target:home]\n"			/* 5 */
	    "type = lmtp\n"			/* 6 */
	    "socket = /run/lmtp\n"		/* 7 */
	    "recipient = me@example.org, bob\n"	/* 8 */
	    "[account:x]\n"			/* 9 */
	    "protocol = pop4\n"			/* 10 */
	    "host = h\n"			/* 11 */
	    "port = 99999\n"			/* 12 */
	    "user = u\n"			/* 13 */
	    "password_command = true\n"		/* 14 */
	    "target = home\n"			/* 15 */
	    "keep = maybe\n"			/* 16 */
	    "max_size = 10X\n"			/* 17 */
	    "fingerprint = abc\n"		/* 18 */
	    "host2 =\n"				/* 19 */
	    "tls = ssl\n", 0600);		/* 20 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 2, "bad value '5 minutes' for 'interval': "
	    "expected a duration"));
	CHECK_CONTAINS(diag, at(p, 3, "bad value '65' for 'concurrency': "
	    "expected a whole number 1..64"));
	CHECK_CONTAINS(diag, at(p, 4, "bad value 'journal' for 'log': "
	    "expected stderr, syslog or a file"));
	CHECK_CONTAINS(diag, at(p, 8, "bad address 'bob' in 'recipient'"));
	CHECK_CONTAINS(diag, at(p, 10, "bad value 'pop4' for 'protocol': "
	    "expected pop3|imap"));
	CHECK_CONTAINS(diag, at(p, 12, "bad value '99999' for 'port'"));
	CHECK_CONTAINS(diag, at(p, 16, "bad value 'maybe' for 'keep': "
	    "expected yes or no"));
	CHECK_CONTAINS(diag, at(p, 17, "bad value '10X' for 'max_size'"));
	CHECK_CONTAINS(diag, at(p, 18, "bad value 'abc' for 'fingerprint'"));
	CHECK_CONTAINS(diag, at(p, 19, "unknown key 'host2' in [account:x]; "
	    "did you mean 'host'?"));
	CHECK_CONTAINS(diag, at(p, 20, "bad value 'ssl' for 'tls': expected "
	    "implicit|starttls|none"));
	/* A bad required key is not also reported missing. */
	CHECK(strstr(diag, "missing") == NULL);
	CHECK(nlines(diag) == 11);
	free(diag);
}

static void
t_missing_required(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("missing.ini",
	    "[target:home]\n"			/* 1 */
	    "type = smtp\n"			/* 2 */
	    "[account:x]\n"			/* 3 */
	    "protocol = imap\n"			/* 4 */
	    "target = home\n", 0600);		/* 5 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 1, "[target:home] is missing required "
	    "key 'host'"));
	CHECK_CONTAINS(diag, at(p, 1, "[target:home] is missing required "
	    "key 'recipient'"));
	CHECK_CONTAINS(diag, at(p, 3, "[account:x] is missing required key "
	    "'host'"));
	CHECK_CONTAINS(diag, at(p, 3, "[account:x] is missing required key "
	    "'user'"));
	CHECK_CONTAINS(diag, at(p, 3, "[account:x] is missing required key "
	    "'password' (or 'password_command', 'password_file' or 'oauth2')"));
	CHECK(nlines(diag) == 5);
	free(diag);
}

/* protocol = etrn: no target, no login needed, etrn_domains checked */
static void
t_etrn(void)
{
	const struct cfg_account *a;
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL, *printed = NULL;
	size_t		 len;
	FILE		*f;

	p = write_cfg("etrn.ini",
	    "[account:relay]\n"			/* 1 */
	    "protocol = etrn\n"			/* 2 */
	    "host = mx.isp.example\n"		/* 3 */
	    "tls = starttls\n"			/* 4 */
	    "etrn_domains = example.org, @example.net, #q1\n", 0600);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	CHECK_STR(diag, "");
	free(diag);
	diag = NULL;
	if (cfg != NULL) {
		a = config_account(cfg, "relay");
		CHECK(a != NULL && a->target == NULL && a->ep.user == NULL);
		CHECK(a != NULL && a->ep.port == 587);
		CHECK(a != NULL && a->netrn_domains == 3 &&
		    strcmp(a->etrn_domains[1], "@example.net") == 0);
		CHECK_STR(cfg_protocol_name(a->protocol), "etrn");
		/* printed without the keys an etrn account refuses, so that
		   the printed config loads again */
		f = open_memstream(&printed, &len);
		config_print(cfg, f);
		fclose(f);
		CHECK_CONTAINS(printed, "protocol = etrn\n");
		CHECK_CONTAINS(printed, "etrn_domains = example.org, "
		    "@example.net, #q1\n");
		CHECK(strstr(printed, "keep =") == NULL);
		CHECK(strstr(printed, "max_size =") == NULL);
		free(printed);
		config_free(cfg);
	}

	p = write_cfg("etrn-bad.ini",
	    "[target:home]\n"			/* 1 */
	    "type = maildir\n"			/* 2 */
	    "path = /tmp/x\n"			/* 3 */
	    "[account:relay]\n"			/* 4 */
	    "protocol = etrn\n"			/* 5 */
	    "host = mx.isp.example\n"		/* 6 */
	    "tls = none\n"			/* 7 */
	    "user = joe\n"			/* 8 */
	    "target = home\n"			/* 9 */
	    "keep = no\n"			/* 10 */
	    "etrn_domains = exa mple.org\n"	/* 11 */
	    "[account:nodom]\n"			/* 12 */
	    "protocol = etrn\n"			/* 13 */
	    "host = mx.isp.example\n"		/* 14 */
	    "[account:pop]\n"			/* 15 */
	    "protocol = pop3\n"			/* 16 */
	    "host = pop.example\n"		/* 17 */
	    "user = joe\n"			/* 18 */
	    "password = pw\n"			/* 19 */
	    "etrn_domains = example.org\n", 0600);	/* 20 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	/* a login on an etrn account is a target's: tls = none refuses it */
	CHECK_CONTAINS(diag, at(p, 7, "refusing to send a password in "
	    "clear"));
	CHECK_CONTAINS(diag, at(p, 8, "'user' is set but no password"));
	CHECK_CONTAINS(diag, at(p, 9, "'target' makes no sense for an etrn "
	    "account"));
	CHECK_CONTAINS(diag, at(p, 10, "'keep' makes no sense for an etrn "
	    "account"));
	CHECK_CONTAINS(diag, at(p, 11, "bad domain 'exa mple.org' in "
	    "'etrn_domains'"));
	CHECK_CONTAINS(diag, at(p, 12, "[account:nodom] is missing required "
	    "key 'etrn_domains'"));
	CHECK_CONTAINS(diag, at(p, 15, "[account:pop] is missing required "
	    "key 'target'"));
	CHECK_CONTAINS(diag, at(p, 20, "'etrn_domains' is only for etrn "
	    "accounts"));
	CHECK(nlines(diag) == 8);
	free(diag);
}

static void
t_unknown_target(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("target.ini", GOOD_TARGETS
	    "[account:x]\n"			/* 5 */
	    "protocol = pop3\n"			/* 6 */
	    "host = h\n"			/* 7 */
	    "target = hom\n"			/* 8 */
	    "user = u\n"			/* 9 */
	    "password_file = /x\n"		/* 10 */
	    "[account:y]\n"			/* 11 */
	    "protocol = pop3\n"			/* 12 */
	    "host = h\n"			/* 13 */
	    "target = elsewhere\n"		/* 14 */
	    "user = u\n"			/* 15 */
	    "password_file = /x\n", 0600);	/* 16 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 8, "unknown target 'hom' (no [target:hom] "
	    "section); did you mean 'home'?"));
	CHECK_CONTAINS(diag, at(p, 14, "unknown target 'elsewhere' (no "
	    "[target:elsewhere] section)\n"));
	free(diag);
}

static void
t_duplicates(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("dup.ini", GOOD_TARGETS
	    "[account:x]\n"			/* 5 */
	    "protocol = pop3\n"			/* 6 */
	    "host = h\n"			/* 7 */
	    "host = h2\n"			/* 8 */
	    "user = u\n"			/* 9 */
	    "password_file = /x\n"		/* 10 */
	    "target = home\n"			/* 11 */
	    "  keep = no\n"			/* 12: continues target */
	    "[account:x]\n"			/* 13 */
	    "host = h3\n"			/* 14 */
	    "[target:home]\n", 0600);		/* 15 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 8, "duplicate key 'host' (first set on "
	    "line 7)"));
	CHECK_CONTAINS(diag, at(p, 12, "duplicate key 'target' (an indented "
	    "line continues the previous value"));
	CHECK_CONTAINS(diag, at(p, 13, "duplicate section [account:x] (first "
	    "on line 5)"));
	CHECK_CONTAINS(diag, at(p, 15, "duplicate section [target:home] "
	    "(first on line 1)"));
	CHECK(nlines(diag) == 4);	/* keys of a duplicate are skipped */
	free(diag);
}

static void
t_syntax(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL, *text, *longline;
	const char	*longsect = "[account:abcdefghijklmnopqrstuvwxyz"
	    "0123456789abcdefghijklmnop]\n";

	longline = malloc(5000);
	memset(longline, 'x', 4999);
	memcpy(longline, "helo = ", 7);
	longline[4998] = '\n';
	longline[4999] = '\0';
	text = malloc(16384);
	snprintf(text, 16384,
	    "user = early\n"			/* 1 */
	    "[nonsense]\n"			/* 2 */
	    "ignored = 1\n"			/* 3 */
	    "[target:bad name]\n"		/* 4 */
	    "[target:home\n"			/* 5 */
	    GOOD_TARGETS			/* 6-9 */
	    "just some words\n"			/* 10 */
	    "%s"				/* 11 */
	    "%s"				/* 12 */
	    "[general] trailing\n"		/* 13 */
	    "[account:ok]\n"			/* 14 */
	    "protocol = pop3\n"			/* 15 */
	    "host = h\n"			/* 16 */
	    "user = u\n"			/* 17 */
	    "password_file = /x\n"		/* 18 */
	    "target = home\n",			/* 19 */
	    longline, longsect);
	p = write_cfg("syntax.ini", text, 0600);
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 1, "'user' outside of any section"));
	CHECK_CONTAINS(diag, at(p, 2, "unknown section [nonsense]; expected "
	    "[general], [target:NAME], [account:NAME] or [oauth2:NAME]"));
	CHECK_CONTAINS(diag, at(p, 4, "bad name 'bad name' in "
	    "[target:bad name]"));
	CHECK_CONTAINS(diag, at(p, 5, "section header without ']'"));
	CHECK_CONTAINS(diag, at(p, 10, "expected 'key = value'"));
	CHECK_CONTAINS(diag, at(p, 11, "line longer than 4096 bytes"));
	CHECK_CONTAINS(diag, at(p, 12, "section name [account:abcdefghijk"));
	CHECK_CONTAINS(diag, "is longer than 49 bytes");
	CHECK_CONTAINS(diag, at(p, 13, "text after the section header"));
	CHECK(strstr(diag, "ignored") == NULL);
	CHECK(nlines(diag) == 8);
	free(diag);
	diag = NULL;

	/* An over-long header: its keys are skipped, not blamed. */
	memcpy(longline, "[account:", 9);
	snprintf(text, 16384, GOOD_TARGETS "%s" "protocol = pop3\n"
	    "protocol = imap\n", longline);
	p = write_cfg("longhdr.ini", text, 0600);
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 5, "line longer than 4096 bytes"));
	CHECK(nlines(diag) == 1);
	free(longline);
	free(text);
	free(diag);
}

/* Every error of the file, in line order, not only the first. */
static void
t_all_errors_sorted(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL, *a, *b, *c;

	p = write_cfg("all.ini", GOOD_TARGETS
	    "[account:x]\n"			/* 5 */
	    "protocol = imap\n"			/* 6 */
	    "user = u\n"			/* 7 */
	    "password = p\n"			/* 8 */
	    "password_file = /p\n"		/* 9 */
	    "target = nowhere\n"		/* 10 */
	    "idle = perhaps\n", 0600);		/* 11 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	a = strstr(diag, at(p, 5, "[account:x] is missing required key "
	    "'host'"));
	b = strstr(diag, at(p, 9, "set only one of password, "
	    "password_command and password_file"));
	c = strstr(diag, at(p, 10, "unknown target 'nowhere'"));
	CHECK(a != NULL && b != NULL && c != NULL);
	CHECK(a < b && b < c);
	CHECK_CONTAINS(diag, at(p, 11, "bad value 'perhaps' for 'idle'"));
	CHECK(nlines(diag) == 4);
	free(diag);
}

static void
t_plaintext(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("plain.ini",
	    "[target:home]\n"			/* 1 */
	    "type = smtp\n"			/* 2 */
	    "host = h\n"			/* 3 */
	    "tls = none\n"			/* 4 */
	    "user = u\n"			/* 5 */
	    "password_file = /x\n"		/* 6 */
	    "recipient = a@b\n"			/* 7 */
	    "[target:nouser]\n"			/* 8 */
	    "type = smtp\n"			/* 9 */
	    "host = h\n"			/* 10 */
	    "tls = none\n"			/* 11: fine, no AUTH */
	    "recipient = a@b\n"			/* 12 */
	    "[account:x]\n"			/* 13 */
	    "protocol = pop3\n"			/* 14 */
	    "host = h\n"			/* 15 */
	    "tls = none\n"			/* 16 */
	    "user = u\n"			/* 17 */
	    "password_file = /x\n"		/* 18 */
	    "target = home\n"			/* 19 */
	    "[account:y]\n"			/* 20 */
	    "protocol = pop3\n"			/* 21 */
	    "host = h\n"			/* 22 */
	    "tls = none\n"			/* 23 */
	    "allow_plaintext_auth = yes\n"	/* 24: fine */
	    "user = u\n"			/* 25 */
	    "password_file = /x\n"		/* 26 */
	    "target = nouser\n", 0600);		/* 27 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 4, "refusing to send a password in clear: "
	    "set tls or allow_plaintext_auth = yes"));
	CHECK_CONTAINS(diag, at(p, 16, "refusing to send a password in "
	    "clear"));
	CHECK(nlines(diag) == 2);
	free(diag);
}

static void
t_conflicts(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("conflict.ini", GOOD_TARGETS
	    "[account:x]\n"			/* 5 */
	    "protocol = pop3\n"			/* 6 */
	    "host = h\n"			/* 7 */
	    "user = u\n"			/* 8 */
	    "password_file = /x\n"		/* 9 */
	    "target = home\n"			/* 10 */
	    "keep = no\n"			/* 11 */
	    "delete_after = 30d\n"		/* 12 */
	    "folders = INBOX\n"			/* 13 */
	    "idle = yes\n"			/* 14 */
	    "[target:both]\n"			/* 15 */
	    "type = lmtp\n"			/* 16 */
	    "host = h\n"			/* 17 */
	    "socket = /s\n"			/* 18 */
	    "recipient = a@b\n"			/* 19 */
	    "[target:sock]\n"			/* 20 */
	    "type = smtp\n"			/* 21 */
	    "socket = /s\n"			/* 22 */
	    "recipient = a@b\n"			/* 23 */
	    "user = u\n"			/* 24 */
	    "[target:pw]\n"			/* 25 */
	    "type = smtp\n"			/* 26 */
	    "host = h\n"			/* 27 */
	    "recipient = a@b\n"			/* 28 */
	    "password = p\n", 0600);		/* 29 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 12, "'keep = no' (line 11) and "
	    "'delete_after' (line 12) contradict"));
	CHECK_CONTAINS(diag, at(p, 13, "'folders' is only for imap accounts"));
	CHECK_CONTAINS(diag, at(p, 14, "'idle' is only for imap accounts"));
	CHECK_CONTAINS(diag, at(p, 18, "set host or socket, not both"));
	CHECK_CONTAINS(diag, at(p, 22, "'socket' is only for lmtp targets"));
	CHECK_CONTAINS(diag, at(p, 24, "'user' is set but no password"));
	CHECK_CONTAINS(diag, at(p, 29, "a password is set but no 'user'"));
	free(diag);
}

static void
t_permission_warning(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;
	const char	*text = GOOD_TARGETS
	    "[account:x]\n"			/* 5 */
	    "protocol = pop3\n"			/* 6 */
	    "host = h\n"			/* 7 */
	    "user = u\n"			/* 8 */
	    "password = topsecret\n"		/* 9 */
	    "target = home\n";			/* 10 */

	p = write_cfg("perm.ini", text, 0644);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);		/* a warning, not an error */
	CHECK(strncmp(diag, "warning: ", 9) == 0);
	CHECK_CONTAINS(diag, p);
	CHECK_CONTAINS(diag, ":9: inline password in a file readable by "
	    "group or others (mode 0644)");
	CHECK(strstr(diag, "topsecret") == NULL);
	CHECK(nlines(diag) == 1);
	config_free(cfg);
	free(diag);
	diag = NULL;
	p = write_cfg("perm2.ini", text, 0640);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	CHECK_CONTAINS(diag, "(mode 0640)");
	config_free(cfg);
	free(diag);
	diag = NULL;
	p = write_cfg("perm3.ini", text, 0600);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	CHECK_STR(diag, "");
	config_free(cfg);
	free(diag);
}

static void
t_print_masks(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL, *out = NULL;
	size_t		 len;
	FILE		*f;

	setenv("HOME", "/home/tester", 1);
	p = write_cfg("print.ini", good, 0600);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	f = open_memstream(&out, &len);
	config_print(cfg, f);
	fclose(f);
	CHECK(strstr(out, "hunter2") == NULL);
	CHECK_CONTAINS(out, "password = ********\n");
	CHECK_CONTAINS(out, "password_command = pass show work\n");
	CHECK_CONTAINS(out, "[account:old-isp]\nprotocol = pop3\n"
	    "host = pop.old-isp.example\nport = 995\ntls = implicit\n");
	CHECK_CONTAINS(out, "delete_after = 4w2d\n");
	CHECK_CONTAINS(out, "interval = 1h30m\n");
	CHECK_CONTAINS(out, "interval = 5m\n");
	CHECK_CONTAINS(out, "max_size = 10M\n");
	CHECK_CONTAINS(out, "concurrency = 8\n");
	CHECK_CONTAINS(out, "log_level = debug\n");
	CHECK_CONTAINS(out, "recipient = me@example.org, you@example.org\n");
	CHECK_CONTAINS(out, "folders = INBOX, Lists/dev, Spam\n");
	CHECK_CONTAINS(out, "envelope_from = bounce@example.org\n");
	CHECK_CONTAINS(out, "port = 587\n");
	/* pop3 accounts do not print imap-only keys. */
	CHECK(strstr(strstr(out, "[account:old-isp]"), "idle") >
	    strstr(out, "[account:work]"));
	config_free(cfg);

	/* What config_print writes loads again and prints the same. */
	{
		char		*out2 = NULL, *diag2 = NULL;
		const char	*p2;
		struct config	*cfg2;
		FILE		*f2;

		p2 = write_cfg("reprint.ini", out, 0600);
		cfg2 = load(p2, &diag2);
		CHECK(cfg2 != NULL);
		CHECK_STR(diag2, "");
		if (cfg2 != NULL) {
			f2 = open_memstream(&out2, &len);
			config_print(cfg2, f2);
			fclose(f2);
			/* Equal after the first line (it names the file). */
			CHECK_STR(strchr(out2, '\n'), strchr(out, '\n'));
		}
		free(diag2);
		free(out2);
		config_free(cfg2);
	}
	free(out);
	free(diag);
}

/*
 * auth and the endpoint keys: one table and one set of rules for accounts
 * and targets ('socket' only for targets), printed with the rest.
 */
static void
t_auth_endpoint(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL, *out = NULL;
	size_t		 len;
	FILE		*f;

	p = write_cfg("auth.ini",
	    "[target:gmail]\n"			/* 1 */
	    "type = smtp\n"			/* 2 */
	    "host = smtp.example.org\n"		/* 3 */
	    "user = me@example.org\n"		/* 4 */
	    "password_command = oama access me\n"	/* 5 */
	    "auth = xoauth2\n"			/* 6 */
	    "recipient = me@example.org\n"	/* 7 */
	    "[account:a]\n"			/* 8 */
	    "protocol = imap\n"			/* 9 */
	    "host = imap.example.org\n"		/* 10 */
	    "user = u\n"			/* 11 */
	    "password_command = oama access u\n"	/* 12 */
	    "auth = oauthbearer\n"		/* 13 */
	    "target = gmail\n", 0600);		/* 14 */
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	CHECK_STR(diag, "");
	if (cfg != NULL) {
		CHECK(cfg->targets[0].ep.auth == CFG_AUTH_XOAUTH2);
		CHECK(cfg->accounts[0].ep.auth == CFG_AUTH_OAUTHBEARER);
		CHECK(cfg->accounts[0].ep.port == 993);
		CHECK(cfg->targets[0].ep.port == 465);
		f = open_memstream(&out, &len);
		config_print(cfg, f);
		fclose(f);
		CHECK_CONTAINS(out, "auth = xoauth2\n");
		CHECK_CONTAINS(out, "auth = oauthbearer\n");
		CHECK_STR(cfg_auth_name(CFG_AUTH_AUTO), "auto");
		free(out);
	}
	config_free(cfg);
	free(diag);
	diag = NULL;

	p = write_cfg("auth-bad.ini", GOOD_TARGETS
	    "[account:b]\n"			/* 5 */
	    "protocol = pop3\n"			/* 6 */
	    "host = h\n"			/* 7 */
	    "socket = /tmp/s\n"			/* 8 */
	    "user = u\n"			/* 9 */
	    "password = x\n"			/* 10 */
	    "auth = oauth\n"			/* 11 */
	    "target = home\n", 0600);		/* 12 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 8, "unknown key 'socket' in [account:b]"));
	CHECK_CONTAINS(diag, at(p, 11, "bad value 'oauth' for 'auth': "
	    "expected auto|password|xoauth2|oauthbearer"));
	config_free(cfg);
	free(diag);
}

/* provider = NAME: host, tls, port and auth filled in; keys override. */
static void
t_provider_presets(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("presets.ini",
	    "[target:out]\n"			/* 1 */
	    "type = smtp\n"			/* 2 */
	    "provider = outlook\n"		/* 3 */
	    "recipient = me@example.org\n"	/* 4 */
	    "[account:g]\n"			/* 5 */
	    "provider = gmail\n"		/* 6 */
	    "protocol = pop3\n"			/* 7 */
	    "user = recent:me@gmail.com\n"	/* 8 */
	    "password = x\n"			/* 9 */
	    "target = out\n"			/* 10 */
	    "[account:i]\n"			/* 11 */
	    "provider = icloud\n"		/* 12 */
	    "protocol = imap\n"			/* 13 */
	    "host = imap.example.org\n"		/* 14 */
	    "tls = starttls\n"			/* 15 */
	    "user = me@icloud.com\n"		/* 16 */
	    "password = x\n"			/* 17 */
	    "target = out\n", 0600);		/* 18 */
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	if (cfg != NULL) {
		CHECK_STR(cfg->targets[0].ep.host, "smtp.office365.com");
		CHECK(cfg->targets[0].ep.tls == CFG_TLS_STARTTLS);
		CHECK(cfg->targets[0].ep.port == 587);
		CHECK_STR(cfg->accounts[0].ep.host, "pop.gmail.com");
		CHECK(cfg->accounts[0].ep.port == 995);
		CHECK(cfg->accounts[0].ep.auth == CFG_AUTH_AUTO);
		CHECK_STR(cfg->accounts[1].ep.host, "imap.example.org");
		CHECK(cfg->accounts[1].ep.tls == CFG_TLS_STARTTLS);
		CHECK(cfg->accounts[1].ep.port == 143);
		CHECK(cfg->accounts[1].ep.auth == CFG_AUTH_PASSWORD);
	}
	config_free(cfg);
	free(diag);
	diag = NULL;

	p = write_cfg("presets-bad.ini",
	    "[target:home]\n"			/* 1 */
	    "type = lmtp\n"			/* 2 */
	    "provider = gmail\n"		/* 3 */
	    "socket = /tmp/s\n"			/* 4 */
	    "recipient = me@example.org\n"	/* 5 */
	    "[oauth2:o]\n"			/* 6 */
	    "token_command = echo t\n"		/* 7 */
	    "[account:i]\n"			/* 8 */
	    "provider = icloud\n"		/* 9 */
	    "protocol = pop3\n"			/* 10 */
	    "user = me@icloud.com\n"		/* 11 */
	    "oauth2 = o\n"			/* 12 */
	    "auth = password\n"			/* 13 */
	    "target = home\n", 0600);		/* 14 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 3, "'provider'"));
	CHECK_CONTAINS(diag, at(p, 9, "provider = icloud has no pop3 server "
	    "(iCloud Mail offers IMAP only)"));
	CHECK_CONTAINS(diag, at(p, 13, "'auth = password' sends a password"));
	config_free(cfg);
	free(diag);
}

/* inih's inline comment rule: " ;" ends the value. */
static void
t_inline_comment(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("inline.ini", "\xEF\xBB\xBF" GOOD_TARGETS
	    "[account:x] ; comment\r\n"		/* 5 */
	    "protocol = pop3 ; old box\r\n"	/* 6 */
	    "host = h\n"			/* 7 */
	    "user = u\n"			/* 8 */
	    "password = ab ;cd\n"		/* 9 */
	    "# a comment\n"			/* 10 */
	    "target: home\n", 0600);		/* 11 */
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	CHECK_STR(diag, "");
	if (cfg != NULL) {
		CHECK_STR(cfg->accounts[0].ep.secret.password, "ab");
		CHECK(cfg->accounts[0].protocol == CFG_PROTO_POP3);
		CHECK_STR(cfg->accounts[0].target_name, "home");
	}
	config_free(cfg);
	free(diag);
}

static void
t_no_file(void)
{
	struct config	*cfg;
	char		*diag = NULL, path[300];

	snprintf(path, sizeof path, "%s/does-not-exist.ini", tmpdir);
	cfg = load(path, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, path);
	CHECK_CONTAINS(diag, "No such file");
	free(diag);
	diag = NULL;
	cfg = load(write_cfg("empty.ini", "", 0600), &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, ":1: no [account:NAME] section");
	free(diag);
}

static void
t_default_paths(void)
{
	char	*s;

	setenv("XDG_CONFIG_HOME", "/xdg/conf", 1);
	setenv("XDG_STATE_HOME", "/xdg/state", 1);
	s = config_default_path();
	CHECK_STR(s, "/xdg/conf/mailhaul/config.ini");
	free(s);
	s = config_default_state_path();
	CHECK_STR(s, "/xdg/state/mailhaul/state.db");
	free(s);
	setenv("HOME", "/home/tester", 1);
	setenv("XDG_CONFIG_HOME", "relative/ignored", 1);
	unsetenv("XDG_STATE_HOME");
	s = config_default_path();
	CHECK_STR(s, "/home/tester/.config/mailhaul/config.ini");
	free(s);
	s = config_default_state_path();
	CHECK_STR(s, "/home/tester/.local/state/mailhaul/state.db");
	free(s);
}

static void
t_secret_sources(void)
{
	struct cfg_secret	 s;
	struct mh_err		 err;
	char			*pw, path[300];

	memset(&s, 0, sizeof s);
	s.password = "inline-pw";
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK_STR(pw, "inline-pw");
	CHECK(err.cls == MH_ERR_NONE);
	secret_free(pw);

	memset(&s, 0, sizeof s);
	snprintf(path, sizeof path, "%s/pwfile", tmpdir);
	write_cfg("pwfile", "file-pw\r\nsecond line\n", 0600);
	s.file = path;
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK_STR(pw, "file-pw");
	secret_free(pw);
	write_cfg("pwfile", "no-newline", 0600);
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK_STR(pw, "no-newline");
	secret_free(pw);

	memset(&s, 0, sizeof s);
	s.command = "printf 'cmd-pw\\nsecond\\n'; echo more; exit 0";
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK_STR(pw, "cmd-pw");
	secret_free(pw);

	memset(&s, 0, sizeof s);
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK(pw == NULL && err.cls == MH_ERR_NONE);
}

static void
t_secret_failures(void)
{
	struct cfg_secret	 s;
	struct mh_err		 err;
	char			*pw, path[300];
	int64_t			 t0;

	memset(&s, 0, sizeof s);
	s.command = "echo leaked-pw; exit 1";
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK(pw == NULL);
	CHECK(err.cls == MH_ERR_LOCAL);
	CHECK_STR(err.msg, "password_command for account x exited with "
	    "status 1");
	CHECK(strstr(err.msg, "leaked") == NULL);

	s.command = "kill -9 $$";
	pw = cfg_secret_get(&s, "target t", &err);
	CHECK(pw == NULL);
	CHECK_STR(err.msg, "password_command for target t was killed by "
	    "signal 9");

	s.command = "true";
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK(pw == NULL);
	CHECK_CONTAINS(err.msg, "printed an empty first line");

	s.command = "exec sleep 10";
	t0 = now_ms();
	pw = cfg_secret_get_timeout(&s, "account x", 300, &err);
	CHECK(pw == NULL);
	CHECK(now_ms() - t0 < 5000);
	CHECK_STR(err.msg, "password_command for account x timed out after "
	    "1 s");

	memset(&s, 0, sizeof s);
	snprintf(path, sizeof path, "%s/no-such-pw", tmpdir);
	s.file = path;
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK(pw == NULL && err.cls == MH_ERR_LOCAL);
	CHECK_CONTAINS(err.msg, "password_file for account x: ");
	CHECK_CONTAINS(err.msg, "No such file");

	snprintf(path, sizeof path, "%s/empty-pw", tmpdir);
	write_cfg("empty-pw", "\nsecret-on-line-2\n", 0600);
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK(pw == NULL);
	CHECK_CONTAINS(err.msg, "the first line is empty");
	CHECK(strstr(err.msg, "secret-on") == NULL);
}

#define ONE_ACCOUNT(target)						\
	"[account:x]\n"							\
	"protocol = pop3\n"						\
	"host = pop.example.org\n"					\
	"user = joe\n"							\
	"password_command = echo x\n"					\
	"target = " target "\n"

/* maildir, mda and imap targets: their keys and defaults. */
static void
t_target_kinds(void)
{
	const struct cfg_target	*t;
	const char		*p;
	struct config		*cfg;
	char			*diag = NULL, *out = NULL, want[512];
	size_t			 len;
	FILE			*f;

	p = write_cfg("kinds.ini",
	    "[target:md]\n"
	    "type = maildir\n"
	    "path = Mail/inbox\n"
	    "[target:md2]\n"
	    "type = maildir\n"
	    "path = /var/mail/me\n"
	    "received = no\n"
	    "[target:pipe]\n"
	    "type = mda\n"
	    "command = /usr/bin/procmail -f %F -a %T\n"
	    "recipient = me@example.org\n"
	    "[target:sh]\n"
	    "type = mda\n"
	    "command = dovecot-lda -d me | logger\n"
	    "timeout = 90s\n"
	    "[target:box]\n"
	    "type = imap\n"
	    "host = imap.example.org\n"
	    "user = me\n"
	    "password = secret\n"
	    "flags = \\Seen, $Fetched\n"
	    "[target:box2]\n"
	    "type = imap\n"
	    "host = imap.example.org\n"
	    "tls = starttls\n"
	    "folder = Archive/Old\n"
	    "user = me\n"
	    "password_command = pass show box2\n"
	    ONE_ACCOUNT("md"), 0600);
	cfg = load(p, &diag);
	CHECK_STR(diag, "");
	if (cfg == NULL)
		return;
	CHECK(cfg->ntargets == 6);
	t = &cfg->targets[0];
	CHECK(t->type == CFG_TARGET_MAILDIR);
	snprintf(want, sizeof want, "%s/Mail/inbox", tmpdir);
	CHECK_STR(t->maildir.path, want);	/* against the file's dir */
	CHECK(t->received);
	CHECK_STR(cfg->targets[1].maildir.path, "/var/mail/me");
	CHECK(!cfg->targets[1].received);
	t = &cfg->targets[2];
	CHECK(t->type == CFG_TARGET_MDA);
	CHECK(!t->mda.shell);
	CHECK(t->mda.argc == 5);
	CHECK_STR(t->mda.argv[0], "/usr/bin/procmail");
	CHECK_STR(t->mda.argv[2], "%F");
	CHECK_STR(t->mda.argv[4], "%T");
	CHECK(t->mda.argv[5] == NULL);
	CHECK(t->mda.timeout == 300);		/* 5m */
	CHECK(t->smtp.nrecipients == 1);
	t = &cfg->targets[3];
	CHECK(t->mda.shell);
	CHECK(t->mda.argc == 1);
	CHECK_STR(t->mda.argv[0], "dovecot-lda -d me | logger");
	CHECK(t->mda.timeout == 90);
	t = &cfg->targets[4];
	CHECK(t->type == CFG_TARGET_IMAP);
	CHECK(t->ep.tls == CFG_TLS_IMPLICIT);
	CHECK(t->ep.port == 993);
	CHECK_STR(t->imap.folder, "INBOX");
	CHECK(t->imap.nflags == 2);
	CHECK_STR(t->imap.flags[0], "\\Seen");
	CHECK_STR(t->imap.flags[1], "$Fetched");
	t = &cfg->targets[5];
	CHECK(t->ep.port == 143);
	CHECK_STR(t->imap.folder, "Archive/Old");
	CHECK(t->imap.nflags == 0);

	f = open_memstream(&out, &len);
	config_print(cfg, f);
	fclose(f);
	CHECK_CONTAINS(out, "[target:pipe]\ntype = mda\nrecipient = "
	    "me@example.org\nreceived = yes\ncommand = /usr/bin/procmail -f %F "
	    "-a %T\ntimeout = 5m\n");
	CHECK_CONTAINS(out, "[target:box]\ntype = imap\nhost = imap.example.org"
	    "\nport = 993\n");
	CHECK_CONTAINS(out, "password = ********\n");
	CHECK_CONTAINS(out, "flags = \\Seen, $Fetched\n");
	CHECK(strstr(out, "helo") == NULL);
	free(out);
	config_free(cfg);
	free(diag);
}

/* Each kind refuses the keys of the others, and says what it misses. */
static void
t_target_kind_errors(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("kinderr.ini",
	    "[target:md]\n"			/* 1 */
	    "type = maildir\n"			/* 2 */
	    "recipient = me@example.org\n"	/* 3 */
	    "host = mail.example.org\n"		/* 4 */
	    "[target:md2]\n"			/* 5 */
	    "type = maildir\n"			/* 6 */
	    "[target:pipe]\n"			/* 7 */
	    "type = mda\n"			/* 8 */
	    "folder = INBOX\n"			/* 9 */
	    "[target:box]\n"			/* 10 */
	    "type = imap\n"			/* 11 */
	    "host = imap.example.org\n"		/* 12 */
	    "recipient = me@example.org\n"	/* 13 */
	    "flags = \\Deleted, ok\n"		/* 14 */
	    "command = x\n"			/* 15 */
	    "[target:smtp]\n"			/* 16 */
	    "type = smtp\n"			/* 17 */
	    "host = smtp.example.org\n"		/* 18 */
	    "recipient = me@example.org\n"	/* 19 */
	    "path = /tmp\n"			/* 20 */
	    "timeout = 5m\n"			/* 21 */
	    "[target:md3]\n"			/* 22 */
	    "type = maildir\n"			/* 23 */
	    "path = ~joe/Mail\n"		/* 24 */
	    ONE_ACCOUNT("md"), 0600);		/* 25.. */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 3, "'recipient' is not a key of maildir "
	    "targets (only of smtp, lmtp and mda)"));
	CHECK_CONTAINS(diag, at(p, 4, "'host' is not a key of maildir targets "
	    "(only of smtp, lmtp and imap)"));
	CHECK_CONTAINS(diag, at(p, 5, "[target:md2] is missing required key "
	    "'path'"));
	CHECK_CONTAINS(diag, at(p, 7, "[target:pipe] is missing required key "
	    "'command'"));
	CHECK_CONTAINS(diag, at(p, 9, "'folder' is not a key of mda targets "
	    "(only of imap)"));
	CHECK_CONTAINS(diag, at(p, 13, "'recipient' is not a key of imap "
	    "targets"));
	CHECK_CONTAINS(diag, at(p, 14, "bad flag '\\Deleted' in 'flags'"));
	CHECK_CONTAINS(diag, at(p, 15, "'command' is not a key of imap "
	    "targets (only of mda)"));
	CHECK_CONTAINS(diag, at(p, 20, "'path' is not a key of smtp targets "
	    "(only of maildir)"));
	CHECK_CONTAINS(diag, at(p, 21, "'timeout' is not a key of smtp "
	    "targets (only of mda)"));
	CHECK_CONTAINS(diag, at(p, 24, "'path' starts with '~' but not '~/'"));
	CHECK_CONTAINS(diag, at(p, 1, "[target:md] is missing required key "
	    "'path'"));
	CHECK_CONTAINS(diag, at(p, 10, "[target:box] is missing required key "
	    "'user' (an imap target logs in)"));
	CHECK(nlines(diag) == 13);
	free(diag);
}

/* Durations are bounded where they are parsed (issue #16, 14). */
/* Loads the idle test account with tail (from line 10) as name. */
static struct config *
idle_load(const char *name, const char *tail, const char **path,
    char **diag)
{
	char	text[1024];

	snprintf(text, sizeof text,
	    "[target:home]\n"			/* 1 */
	    "type = lmtp\n"			/* 2 */
	    "socket = /run/lmtp\n"		/* 3 */
	    "recipient = me@example.org\n"	/* 4 */
	    "[account:x]\n"			/* 5 */
	    "host = h\n"			/* 6 */
	    "user = u\n"			/* 7 */
	    "password_command = true\n"		/* 8 */
	    "target = home\n%s", tail);		/* 9 */
	*path = write_cfg(name, text, 0600);
	return load(*path, diag);
}

/* idle_connections: 3 unless set, 1..100, imap only. */
static void
t_idle_connections(void)
{
	static const struct {
		const char	*tail;
		unsigned	 want;		/* 0: an error */
		const char	*error;
	} v[] = {
		{ "protocol = imap\nidle = yes\n", 3, NULL },
		{ "protocol = imap\nidle_connections = 5\n", 5, NULL },
		{ "protocol = imap\nidle_connections = 0\n", 0,
		    "bad value '0' for 'idle_connections'" },
		{ "protocol = pop3\nidle_connections = 2\n", 0,
		    "'idle_connections' is only for imap" },
	};
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		cfg = idle_load("idle.ini", v[i].tail, &p, &diag);
		if (v[i].want != 0)
			CHECK(cfg != NULL &&
			    cfg->accounts[0].idle_connections == v[i].want);
		else {
			CHECK(cfg == NULL);
			CHECK_CONTAINS(diag, at(p, 11, v[i].error));
		}
		config_free(cfg);
		free(diag);
		diag = NULL;
	}
}

static void
t_duration_bounds(void)
{
	const char	*p;
	struct config	*cfg;
	char		*diag = NULL;

	p = write_cfg("dur.ini",
	    "[general]\n"			/* 1 */
	    "timeout = 30d\n"			/* 2 */
	    "[target:home]\n"			/* 3 */
	    "type = lmtp\n"			/* 4 */
	    "socket = /run/lmtp\n"		/* 5 */
	    "recipient = me@example.org\n"	/* 6 */
	    "[account:x]\n"			/* 7 */
	    "protocol = pop3\n"		/* 8 */
	    "host = h\n"			/* 9 */
	    "user = u\n"			/* 10 */
	    "password_command = true\n"		/* 11 */
	    "target = home\n"			/* 12 */
	    "timeout = 7w17h2m48s\n", 0600);	/* 13 */
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 2, "bad value '30d' for 'timeout': "
	    "expected a duration from 1s to 86400s"));
	CHECK_CONTAINS(diag, at(p, 13, "bad value '7w17h2m48s' for 'timeout'"));
	CHECK(nlines(diag) == 2);
	free(diag);

	p = write_cfg("dur-ok.ini",
	    "[general]\n"
	    "timeout = 1d\n"
	    "[target:home]\n"
	    "type = lmtp\n"
	    "socket = /run/lmtp\n"
	    "recipient = me@example.org\n"
	    "[account:x]\n"
	    "protocol = pop3\n"
	    "host = h\n"
	    "user = u\n"
	    "password_command = true\n"
	    "target = home\n", 0600);
	cfg = load(p, &diag);
	CHECK(cfg != NULL);
	if (cfg != NULL) {
		CHECK(cfg->general.timeout == 86400);
		CHECK(cfg->accounts[0].timeout == 86400);
	}
	config_free(cfg);
	free(diag);
}

/* A config file is small: /dev/zero is refused, not read into memory. */
static void
t_huge_file(void)
{
	struct config	*cfg;
	char		*diag = NULL;

	cfg = load("/dev/zero", &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, "/dev/zero:1: the file is larger than 1048576 "
	    "bytes");
	free(diag);
}

/* A secret longer than we keep is refused, never cut. */
static void
t_secret_limits(void)
{
	struct cfg_secret	 s;
	struct mh_err		 err;
	char			*pw, *big, path[300];
	int64_t			 t0;
	FILE			*f;

	big = xmalloc(1024 * 1024 + 2);
	memset(big, 'x', 1024 * 1024);
	big[1024 * 1024] = '\n';
	big[1024 * 1024 + 1] = '\0';
	snprintf(path, sizeof path, "%s/big-pw", tmpdir);
	CHECK((f = fopen(path, "w")) != NULL);
	if (f != NULL) {
		CHECK(fputs(big, f) >= 0);
		CHECK(fclose(f) == 0);
	}
	free(big);
	memset(&s, 0, sizeof s);
	s.file = path;
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK(pw == NULL);
	CHECK_CONTAINS(err.msg, "the first line is longer than 4095 bytes");

	memset(&s, 0, sizeof s);
	s.command = "head -c 5000 /dev/zero | tr '\\0' y; echo";
	pw = cfg_secret_get(&s, "account x", &err);
	CHECK(pw == NULL);
	CHECK_CONTAINS(err.msg, "printed a first line longer than 4095 "
	    "bytes");

	/* a helper left in the background keeps stdout open: not waited */
	s.command = "echo pw-bg; sleep 20 2>/dev/null &";
	t0 = now_ms();
	pw = cfg_secret_get_timeout(&s, "account x", 10000, &err);
	CHECK(pw != NULL && strcmp(pw, "pw-bg") == 0);
	CHECK(now_ms() - t0 < 9000);
	secret_free(pw);

	/* an ignored SIGTERM is not inherited by the command */
	signal(SIGTERM, SIG_IGN);
	s.command = "kill -TERM $$; echo never";
	pw = cfg_secret_get(&s, "account x", &err);
	signal(SIGTERM, SIG_DFL);
	CHECK(pw == NULL);
	CHECK_STR(err.msg, "password_command for account x was killed by "
	    "signal 15");

	/* a timeout kills the whole process group, not just the shell */
	s.command = "sleep 30 & sleep 30";
	pw = cfg_secret_get_timeout(&s, "account x", 300, &err);
	CHECK(pw == NULL);
	CHECK_CONTAINS(err.msg, "timed out");
}

/* Loads text (as tmpdir/name): it must fail with one error, msg on line. */
static void
one_error(const char *name, const char *text, int line, const char *msg)
{
	const char	*p = write_cfg(name, text, 0600);
	struct config	*cfg;
	char		*diag = NULL;

	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, line, msg));
	CHECK(nlines(diag) == 1);
	config_free(cfg);
	free(diag);
}

/* Keywords (section kinds, keys, choices) in any case. */
static void
t_keyword_case(void)
{
	const struct cfg_account	*a;
	const char			*p;
	struct config			*cfg;
	char				*diag = NULL;

	p = write_cfg("case.ini",
	    "[General]\n"
	    "Log_Level = DEBUG\n"
	    "[TARGET:home]\n"
	    "type = LMTP\n"
	    "socket = /run/dovecot/lmtp\n"
	    "recipient = me@example.org\n"
	    "Envelope_From = Original\n"
	    "[Account:Old]\n"
	    "Protocol = IMAP\n"
	    "host = imap.example.org\n"
	    "tls = STARTTLS\n"
	    "auth = Password\n"
	    "user = joe\n"
	    "password_command = echo x\n"
	    "keep = Yes\n"
	    "target = home\n", 0600);
	cfg = load(p, &diag);
	CHECK_STR(diag, "");
	if (cfg == NULL)
		return;
	CHECK(cfg->general.log_level == LOG_LVL_DEBUG);
	CHECK(cfg->ntargets == 1 && cfg->targets[0].type == CFG_TARGET_LMTP);
	CHECK(cfg->targets[0].smtp.envfrom == CFG_ENVFROM_ORIGINAL);
	/* the names keep their case: they are the user's */
	a = config_account(cfg, "Old");
	CHECK(a != NULL);
	if (a != NULL) {
		CHECK(a->protocol == CFG_PROTO_IMAP);
		CHECK(a->ep.tls == CFG_TLS_STARTTLS);
		CHECK(a->ep.auth == CFG_AUTH_PASSWORD);
		CHECK(a->keep);
	}
	config_free(cfg);
	free(diag);

	/* [Target:x] and [target:x] are one section: a duplicate */
	one_error("case-dup.ini",
	    GOOD_TARGETS
	    "[Target:home]\n"			/* 5 */
	    "type = maildir\n"
	    "path = /tmp/m\n"
	    ONE_ACCOUNT("home"),
	    5, "duplicate section [target:home] (first on line 1)");
	/* a wrong value still names the choices */
	one_error("case-bad.ini",
	    GOOD_TARGETS
	    "[account:x]\n"			/* 5 */
	    "protocol = IMAP4\n"		/* 6 */
	    "host = h\n"
	    "user = u\n"
	    "password_command = echo x\n"
	    "target = home\n",
	    6, "bad value 'IMAP4' for 'protocol': expected pop3|imap");
}

/* p loads without a word of diagnostics. */
static void
loads_clean(const char *p)
{
	char		*diag = NULL;
	struct config	*cfg = load(p, &diag);

	CHECK(cfg != NULL);
	CHECK_STR(diag, "");
	config_free(cfg);
	free(diag);
}

/*
 * An upgrade: a relative state that exists only relative to the current
 * directory (where older versions opened it) is refused, naming both
 * paths, instead of silently starting an empty database; once it exists
 * beside the config (or nowhere), the config loads.
 */
static void
t_state_moved(void)
{
	struct config	*cfg;
	char		*diag = NULL, dir[256], old[300], want[700];
	const char	*p;
	FILE		*f;

	snprintf(dir, sizeof dir, "%s/sm", tmpdir);
	CHECK(mkdir(dir, 0700) == 0);
	p = write_cfg("sm/c.ini", "[general]\nstate = st.db\n"
	    "[target:md]\ntype = maildir\npath = /tmp/md\n"
	    "[account:x]\nprotocol = pop3\nhost = pop.example.org\n"
	    "user = joe\npassword_file = /pw\ntarget = md\n", 0600);
	/* nowhere yet: a first start, fine */
	CHECK(chdir(tmpdir) == 0);
	loads_clean(p);
	/* only relative to the current directory: refused */
	snprintf(old, sizeof old, "%s/st.db", tmpdir);
	CHECK((f = fopen(old, "w")) != NULL);
	if (f != NULL)
		fclose(f);
	cfg = load(p, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, at(p, 2, "'state = st.db' is relative: it is "
	    "taken against the config file's directory"));
	snprintf(want, sizeof want, "as %s/st.db, where there is no "
	    "database, but there is one relative to the current directory "
	    "(%s)", dir, old);
	CHECK_CONTAINS(diag, want);
	CHECK_CONTAINS(diag, "write an absolute path");
	config_free(cfg);
	free(diag);
	diag = NULL;
	/* moved beside the config: loads */
	snprintf(want, sizeof want, "%s/st.db", dir);
	CHECK(rename(old, want) == 0);
	loads_clean(p);
	CHECK(chdir("/") == 0);
}

/*
 * Paths: "~", "$HOME" and "${HOME}" expanded, relative ones taken
 * against the config file's directory, not the current one.
 */
static void
t_relative_paths(void)
{
	const struct cfg_account	*a;
	struct config			*cfg;
	char				*diag = NULL, want[512], sub[300];

	snprintf(sub, sizeof sub, "%s/conf.d", tmpdir);
	CHECK(mkdir(sub, 0700) == 0);
	write_cfg("conf.d/paths.ini",
	    "[general]\n"
	    "state = state/db.sqlite\n"
	    "[target:md]\n"
	    "type = maildir\n"
	    "path = $HOME/Mail\n"
	    "[target:lmtp]\n"
	    "type = lmtp\n"
	    "socket = ../run/lmtp\n"
	    "recipient = me@example.org\n"
	    "[target:filter]\n"
	    "type = mda\n"
	    "command = bin/filter -f %F\n"
	    "[target:home-filter]\n"
	    "type = mda\n"
	    "command = ~/bin/filter\n"
	    "[target:procmail]\n"
	    "type = mda\n"
	    "command = procmail -d me\n"
	    "[oauth2:g]\n"
	    "provider = google\n"
	    "client_id = id\n"
	    "client_secret_file = ${HOME}/secret\n"
	    "ca_file = ~\n"
	    "[account:x]\n"
	    "protocol = pop3\n"
	    "host = pop.example.org\n"
	    "user = joe\n"
	    "password_file = pw\n"
	    "ca_file = ./ca.pem\n"
	    "target = md\n", 0600);
	setenv("HOME", "/home/tester", 1);
	/* by a name relative to the current directory, which then changes
	   (a test runs in a child of its own) */
	CHECK(chdir(tmpdir) == 0);
	cfg = load("conf.d/paths.ini", &diag);
	CHECK(chdir("/") == 0);
	CHECK_STR(diag, "");
	if (cfg == NULL)
		return;
	snprintf(want, sizeof want, "%s/state/db.sqlite", sub);
	CHECK_STR(cfg->general.state, want);
	CHECK_STR(cfg->targets[0].maildir.path, "/home/tester/Mail");
	snprintf(want, sizeof want, "%s/../run/lmtp", sub);
	CHECK_STR(cfg->targets[1].ep.socket, want);
	snprintf(want, sizeof want, "%s/bin/filter", sub);
	CHECK_STR(cfg->targets[2].mda.argv[0], want);
	CHECK_STR(cfg->targets[2].mda.argv[1], "-f");
	CHECK_STR(cfg->targets[3].mda.argv[0], "/home/tester/bin/filter");
	CHECK_STR(cfg->targets[4].mda.argv[0], "procmail");	/* $PATH */
	CHECK_STR(cfg->oauth2s[0].client_secret.file, "/home/tester/secret");
	CHECK_STR(cfg->oauth2s[0].ca_file, "/home/tester");
	a = config_account(cfg, "x");
	CHECK(a != NULL);
	if (a != NULL) {
		snprintf(want, sizeof want, "%s/pw", sub);
		CHECK_STR(a->ep.secret.file, want);
		snprintf(want, sizeof want, "%s/./ca.pem", sub);
		CHECK_STR(a->ep.ca_file, want);
	}
	config_free(cfg);
	free(diag);

	/* "~user" is not expanded: an error at its line, for any path key */
	one_error("tilde-user.ini",
	    GOOD_TARGETS
	    "[account:x]\n"			/* 5 */
	    "protocol = pop3\n"
	    "host = pop.example.org\n"
	    "user = joe\n"
	    "password_file = ~joe/pw\n"		/* 9 */
	    "target = home\n",
	    9, "'password_file' starts with '~' but not '~/'");
}

int
main(void)
{
	char	cmd[300];
	int	rc;

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	RUN(t_good_full);
	RUN(t_minimal_defaults);
	RUN(t_concurrency_per_server);
	RUN(t_shared_mailbox);
	RUN(t_unknown_key);
	RUN(t_bad_values);
	RUN(t_missing_required);
	RUN(t_etrn);
	RUN(t_unknown_target);
	RUN(t_duplicates);
	RUN(t_syntax);
	RUN(t_all_errors_sorted);
	RUN(t_plaintext);
	RUN(t_conflicts);
	RUN(t_auth_endpoint);
	RUN(t_provider_presets);
	RUN(t_permission_warning);
	RUN(t_print_masks);
	RUN(t_inline_comment);
	RUN(t_no_file);
	RUN(t_default_paths);
	RUN(t_secret_sources);
	RUN(t_secret_failures);
	RUN(t_target_kinds);
	RUN(t_target_kind_errors);
	RUN(t_duration_bounds);
	RUN(t_idle_connections);
	RUN(t_huge_file);
	RUN(t_secret_limits);
	RUN(t_keyword_case);
	RUN(t_relative_paths);
	RUN(t_state_moved);
	rc = check_done();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
