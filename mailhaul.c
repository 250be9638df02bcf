/*
 * mailhaul.c -- the command line: parse argv, load the config, dispatch.
 * Each command is one function; the work is done by the modules.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "config/value.h"
#include "fetch/service/scheduler.h"
#include "fetch/service/status.h"
#include "fetch/service/workers.h"
#include "fetch/state/seen.h"
#include "fetch/source.h"
#include "fetch/engine/sync.h"
#include "fetch/engine/adopt.h"
#include "config/import.h"
#include "forward/target.h"
#include "log.h"
#include "net/http.h"
#include "net/endpoint.h"
#include "net/login.h"
#include "net/net.h"
#include "net/oauth2.h"
#include "net/oauth2_flow.h"

#ifndef MAILHAUL_VERSION
#define MAILHAUL_VERSION "unknown"
#endif

struct cli {
	const char	*config_path;
	int		 verbosity;	/* -1 quiet, 0 config, 1 verbose */
	struct config	*cfg;
	const char	*only_target;	/* check --target NAME */
	const char	*only_account;	/* check --account NAME */
};

static const char usage_text[] =
"usage: mailhaul [-c FILE] [-v|-q] COMMAND [ARGS]\n"
"\n"
"Fetches mail from POP3 and IMAP accounts and delivers it over SMTP or\n"
"LMTP, exactly once, never deleting what was not delivered.\n"
"\n"
"Commands:\n"
"  sync [-n] [ACCOUNT...]  one pass over the enabled accounts (or those\n"
"                          named), up to `concurrency` at once, each in\n"
"                          its own process; -n, --dry-run: show what\n"
"                          would be done\n"
"  run                     the background service: polls every enabled\n"
"                          account (IDLE where set) until SIGTERM;\n"
"                          SIGHUP reloads the config, SIGUSR1 polls now\n"
"  check [--target NAME] [--account NAME] [ACCOUNT...]\n"
"                          connect, TLS, login, capabilities, folders,\n"
"                          and the target (RCPT TO, then RSET); fetches\n"
"                          and delivers nothing (an etrn account: sends\n"
"                          no ETRN)\n"
"  status [--json]         per account: last pass, result, counts,\n"
"                          messages the target refused for good, and\n"
"                          the service's next pass, backoff and IDLE;\n"
"                          exits 1 when an account's last pass failed\n"
"  mark-seen ACCOUNT       record every message now on the server as\n"
"                          delivered, without delivering (adopt a mailbox)\n"
"  retry ACCOUNT           retry the messages refused for good, stuck,\n"
"                          or skipped by max_size (whatever their size)\n"
"  forget [--yes] ACCOUNT  drop everything recorded about the account\n"
"                          (asks first; --yes without a terminal)\n"
"  config                  validate the config and print it, secrets\n"
"                          masked\n"
"  auth [--device] [--no-browser] NAME\n"
"                          obtain OAuth2 tokens for [oauth2:NAME]: prints\n"
"                          a URL to open (--device: a code to enter)\n"
"  import fetchmail|getmail [--rc FILE]... [--state FILE] [-o CONFIG]\n"
"         [--keep-passwords]\n"
"                          convert the tool's config and record what it\n"
"                          had delivered, so that nothing comes twice\n"
"  auth --check [--refresh] NAME\n"
"                          get an access token as sync would (--refresh:\n"
"                          a new one) and say how long it is valid\n"
"\n"
"Options:\n"
"  -c FILE    config file (default $XDG_CONFIG_HOME/mailhaul/config.ini)\n"
"  -v         verbose: debug logging, protocol transcripts without secrets\n"
"  -q         quiet: errors only\n"
"  -h, --help, -V, --version\n"
"             (COMMAND --help, or help COMMAND: that command's usage)\n"
"\n"
"Exit status: 0 all good, 75 a temporary failure (try again later),\n"
"65 a message refused for good, an IMAP folder missing or no way to\n"
"delete on it (no UIDPLUS/MOVE), 67 the target refuses the recipient\n"
"(check `recipient`), 77 login\n"
"refused (by the source or the target), 69 TLS failure,\n"
"76 protocol error, 74 local I/O or state error, 70 a pass crashed,\n"
"78 bad config, 64 bad usage, 130 sync interrupted (Ctrl-C).\n"
"See mailhaul(1) and mailhaul.ini(5).\n";

static void	fmt_time(time_t, char *, size_t);

/* One command's usage, for `mailhaul COMMAND --help` and `help COMMAND`. */
struct cmd_help {
	const char	*name;
	const char	*text;
};

static const struct cmd_help cmd_helps[] = {
	{ "sync",
"usage: mailhaul [-c FILE] [-v|-q] sync [-n|--dry-run] [ACCOUNT...]\n"
"\n"
"One pass over the enabled accounts (or those named), up to\n"
"`concurrency` at once (`concurrency_per_server` on one server), each\n"
"in its own process: fetch what is new,\n"
"deliver it, record it, delete on the server what the account's policy\n"
"says.  One summary line per account; -q: nothing unless one failed.\n"
"  -n, --dry-run   show what would be fetched, delivered and deleted\n"
"Exit status: see `mailhaul --help`.\n" },
	{ "run",
"usage: mailhaul [-c FILE] [-v|-q] run\n"
"\n"
"The background service: polls every enabled account (IDLE where set)\n"
"until SIGTERM; SIGHUP reloads the config, SIGUSR1 polls now.\n" },
	{ "check",
"usage: mailhaul [-c FILE] [-v|-q] check [--target NAME] [--account NAME]\n"
"                [ACCOUNT...]\n"
"\n"
"Connect, TLS, login and capabilities of each account, SELECT of its\n"
"folders, then its target: MAIL FROM/RCPT TO/RSET for SMTP and LMTP\n"
"(no message), SELECT of an IMAP target's folder, a writable Maildir,\n"
"an executable MDA.  Fetches and delivers nothing.\n"
"  --target NAME   check that target alone\n"
"  --account NAME  check that account (and its target)\n" },
	{ "status",
"usage: mailhaul [-c FILE] status [--json]\n"
"\n"
"Per account: last pass, result, counts, messages refused for good,\n"
"stuck or in doubt, and the service's next pass, backoff and IDLE.\n"
"Exits 0 when every account's last pass was ok, 1 when one failed or\n"
"left messages to retry.\n"
"  --json   the same as one JSON object\n" },
	{ "mark-seen",
"usage: mailhaul [-c FILE] [-q] mark-seen ACCOUNT\n"
"\n"
"Record every message now on the server as delivered, without\n"
"delivering it (adopt a mailbox whose old mail you already have).\n" },
	{ "retry",
"usage: mailhaul [-c FILE] retry ACCOUNT\n"
"\n"
"Make the next pass retry the messages refused for good or stuck.\n" },
	{ "forget",
"usage: mailhaul [-c FILE] forget [-y|--yes] ACCOUNT\n"
"\n"
"Drop everything recorded about the account: the next pass fetches\n"
"every message on the server again.  Asks for confirmation on a\n"
"terminal; without one, refuses unless --yes is given.\n"
"  -y, --yes   do not ask\n" },
	{ "config",
"usage: mailhaul [-c FILE] config\n"
"\n"
"Validate the config file and print it, defaults filled in and\n"
"secrets masked.  Errors name file:line.\n" },
	{ "auth",
"usage: mailhaul [-c FILE] auth [--device] [--no-browser] NAME\n"
"       mailhaul [-c FILE] auth --check [--refresh] NAME\n"
"\n"
"Obtain OAuth2 tokens for [oauth2:NAME]: prints a URL to open\n"
"(--device: a code to enter on another device); --check gets an\n"
"access token as sync would (--refresh: a new one).\n" },
	{ "import",
"usage: mailhaul [-c FILE] import fetchmail|getmail [--rc FILE]...\n"
"                [--state FILE] [-o CONFIG] [--keep-passwords]\n"
"\n"
"Convert fetchmail's or getmail's config into a mailhaul config (never\n"
"overwriting one) and record the messages the old tool had fetched, so\n"
"that the next sync delivers exactly what it had not.\n"
"  --rc FILE          the tool's config (~/.fetchmailrc, ~/.getmail/getmailrc)\n"
"  --state FILE       its seen-UID state (~/.fetchids; getmail's oldmail-*)\n"
"  -o, --output CONFIG  where to write (default: the usual config path)\n"
"  --keep-passwords   keep inline passwords (else password files)\n" },
	{ "help",
"usage: mailhaul help [COMMAND]\n"
"\n"
"The commands, or one command's usage.\n" },
};

/* Prints cmd's usage to f; false when cmd has none of its own. */
static bool
cmd_usage(const char *cmd, FILE *f)
{
	for (size_t i = 0; i < sizeof cmd_helps / sizeof cmd_helps[0]; i++)
		if (strcmp(cmd_helps[i].name, cmd) == 0) {
			fputs(cmd_helps[i].text, f);
			return true;
		}
	return false;
}

/* The name in names nearest to word (at most 2 edits), or NULL. */
static const char *
nearest(const char *word, const char *const *names, size_t n)
{
	const char	*best = NULL;
	int		 bestd = 3, d;

	for (size_t i = 0; i < n; i++)
		if ((d = value_distance(word, names[i])) < bestd) {
			bestd = d;
			best = names[i];
		}
	return best;
}

/* An unknown command: says so, with the nearest known one. */
static void
unknown_command(const char *cmd)
{
	const char	*names[sizeof cmd_helps / sizeof cmd_helps[0]];
	const char	*near;
	size_t		 n = 0;

	for (size_t i = 0; i < sizeof cmd_helps / sizeof cmd_helps[0]; i++)
		names[n++] = cmd_helps[i].name;
	near = nearest(cmd, names, n);
	if (near != NULL)
		fprintf(stderr, "mailhaul: unknown command '%s'; did you mean "
		    "'%s'?\n", cmd, near);
	else
		fprintf(stderr, "mailhaul: unknown command '%s'\n", cmd);
}

static void
usage(FILE *f)
{
	fputs(usage_text, f);
}

/* The exit status for an error class; sysexits(3). */
static int
exit_code(enum mh_err_class cls)
{
	switch (cls) {
	case MH_ERR_NONE:	return EX_OK;
	case MH_ERR_TEMP:
	case MH_ERR_BUSY:	return EX_TEMPFAIL;
	case MH_ERR_PERM:	return EX_DATAERR;
	case MH_ERR_AUTH:	return EX_NOPERM;
	case MH_ERR_TLS:	return EX_UNAVAILABLE;
	case MH_ERR_PROTO:	return EX_PROTOCOL;
	case MH_ERR_LOCAL:	return EX_IOERR;
	case MH_ERR_NOUSER:	return EX_NOUSER;
	}
	return EX_SOFTWARE;
}

/* Keeps the most serious of two exit statuses. */
static int
worse(int a, int b)
{
	static const int order[] = { EX_OK, EX_TEMPFAIL, EX_DATAERR,
	    EX_NOUSER, EX_PROTOCOL, EX_UNAVAILABLE, EX_NOPERM, EX_IOERR, EX_SOFTWARE,
	    EX_CONFIG };
	int ra = 0, rb = 0;

	for (int i = 0; i < (int)(sizeof order / sizeof order[0]); i++) {
		if (order[i] == a)
			ra = i;
		if (order[i] == b)
			rb = i;
	}
	return rb > ra ? b : a;
}

static int
load_config(struct cli *cli)
{
	char	*def = NULL;
	const char *path = cli->config_path;
	enum log_level lvl;

	if (path == NULL)
		path = def = config_default_path();
	cli->cfg = config_load(path, stderr);
	free(def);
	if (cli->cfg == NULL)
		return -1;
	lvl = (enum log_level)cli->cfg->general.log_level;
	if (cli->verbosity > 0)
		lvl = LOG_LVL_DEBUG;
	else if (cli->verbosity < 0)
		lvl = LOG_LVL_ERROR;
	log_init(lvl, cli->cfg->general.log == CFG_LOG_SYSLOG);
	if (cli->cfg->general.log == CFG_LOG_FILE &&
	    log_to_file(cli->cfg->general.log_file) == -1) {
		log_error("%s: log = %s: %s", cli->cfg->path,
		    cli->cfg->general.log_file, strerror(errno));
		config_free(cli->cfg);
		cli->cfg = NULL;
		return -1;
	}
	return 0;
}

static int	open_db_flags(const struct cli *, unsigned, struct seen_db **);

static int
open_db(const struct cli *cli, struct seen_db **db)
{
	return open_db_flags(cli, 0, db);
}

static int
open_db_flags(const struct cli *cli, unsigned flags, struct seen_db **db)
{
	struct mh_err	err;
	char		buf[1200];

	mh_err_clear(&err);
	if (seen_open_flags(cli->cfg->general.state, flags, db, &err) == -1) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		return -1;
	}
	return 0;
}

/*
 * Checks that every name is a configured account; with no names, selects
 * every enabled account.  Returns a NULL-terminated array to free.
 */
static const struct cfg_account **
select_accounts(const struct config *cfg, int argc, char **argv)
{
	const struct cfg_account **sel;
	size_t	n = 0, i;
	int	bad = 0;

	sel = xcalloc(cfg->naccounts + (size_t)argc + 1, sizeof *sel);
	if (argc == 0) {
		for (i = 0; i < cfg->naccounts; i++)
			if (cfg->accounts[i].enabled)
				sel[n++] = &cfg->accounts[i];
		return sel;
	}
	for (int a = 0; a < argc; a++) {
		const struct cfg_account *acct = config_account(cfg, argv[a]);

		if (acct == NULL) {
			log_error("no account named '%s' in %s", argv[a],
			    cfg->path);
			bad = 1;
			continue;
		}
		sel[n++] = acct;
	}
	if (bad) {
		log_error("the accounts in %s are:", cfg->path);
		for (i = 0; i < cfg->naccounts; i++)
			log_error("  %s", cfg->accounts[i].name);
		free(sel);
		return NULL;
	}
	return sel;
}

static void
human_bytes(uint64_t n, char *buf, size_t size)
{
	if (n >= 1024 * 1024)
		snprintf(buf, size, "%.1f MiB", (double)n / (1024.0 * 1024.0));
	else if (n >= 1024)
		snprintf(buf, size, "%.1f KiB", (double)n / 1024.0);
	else
		snprintf(buf, size, "%" PRIu64 " bytes", n);
}

/* What a pass of one account came to, for its summary line. */
struct pass_outcome {
	int			 rc;		/* sync_account()'s */
	enum mh_err_class	 cls;
	const char		*msg;		/* the error's text */
	struct seen_run_counts	 counts;
	int64_t			 elapsed_ms;
};

/* Prints one account's summary line(s); returns its exit status. */
static int
report_pass(const struct cli *cli, enum sync_mode mode,
    const struct cfg_account *acct, const struct pass_outcome *p)
{
	char	bytes[32];
	int	this = EX_OK;

	if (p->rc == -1) {
		struct service_status ss;

		this = exit_code(p->cls);
		printf("%s: %s: %s\n", acct->name,
		    p->cls == MH_ERR_BUSY ? "busy" : "failed", p->msg);
		if (p->cls == MH_ERR_BUSY &&
		    service_status_read(cli->cfg, &ss) == 1) {
			printf("%s: the mailhaul service (pid %ld) is "
			    "running a pass of it; what it fetches is "
			    "delivered once\n", acct->name, ss.pid);
			service_status_free(&ss);
		}
	}
	if (p->counts.tempfailed > 0)
		this = worse(this, EX_TEMPFAIL);
	if (p->counts.failed > 0)
		this = worse(this, EX_DATAERR);
	/* a failed pass says so, and no summary that looks like a pass
	   unless it did something before it failed (what it delivered and
	   deleted then holds); -q: nothing at all unless something failed */
	if (mode == SYNC_DRY_RUN || (p->rc == -1 && p->counts.delivered ==
	    0 && p->counts.deleted == 0 && p->counts.failed == 0) ||
	    (cli->verbosity < 0 && this == EX_OK))
		return this;
	if (mode == SYNC_MARK_SEEN) {
		printf("%s: %u messages recorded as seen, %u already "
		    "known%s\n", acct->name, p->counts.delivered,
		    p->counts.listed - p->counts.delivered -
		    p->counts.tempfailed, p->counts.tempfailed > 0 ?
		    "; interrupted: the others are not recorded" : "");
		return this;
	}
	human_bytes(p->counts.bytes, bytes, sizeof bytes);
	printf("%s: %u on the server, %u delivered, %u deleted, "
	    "%u refused, %u to retry, %u skipped (%s in %.1f s)\n",
	    acct->name, p->counts.listed, p->counts.delivered,
	    p->counts.deleted, p->counts.failed, p->counts.tempfailed,
	    p->counts.skipped, bytes, (double)p->elapsed_ms / 1000.0);
	return this;
}

static void	on_inprocess_interrupt(int);
static volatile sig_atomic_t interrupts;

/* `sync --dry-run` and `mark-seen`: one account after another, here. */
static int
sync_in_process(const struct cli *cli, enum sync_mode mode,
    const struct cfg_account *const *sel, struct seen_db *db)
{
	struct sync_opts opts;
	int		 rc = EX_OK;

	memset(&opts, 0, sizeof opts);
	opts.mode = mode;
	opts.report = stdout;
	opts.lock_wait_ms = 5000;
	/* mark-seen reads every message: show how far it is */
	opts.progress = (mode == SYNC_MARK_SEEN && isatty(STDERR_FILENO) &&
	    cli->verbosity >= 0) ? stderr : NULL;
	interrupts = 0;
	signal(SIGINT, on_inprocess_interrupt);
	for (size_t i = 0; sel[i] != NULL && interrupts == 0; i++) {
		struct sync_result res;
		struct pass_outcome p;
		char	buf[1200];
		int64_t	t0 = now_ms();

		p.rc = sync_account(cli->cfg, sel[i], db, &opts, &res);
		p.cls = res.err.cls;
		p.msg = mh_err_str(&res.err, buf, sizeof buf);
		p.counts = res.counts;
		p.elapsed_ms = now_ms() - t0;
		rc = worse(rc, report_pass(cli, mode, sel[i], &p));
	}
	signal(SIGINT, SIG_DFL);
	return interrupts > 0 && rc == EX_OK ? 128 + SIGINT : rc;
}

struct pool_ctx {
	const struct cli		 *cli;
	const struct cfg_account *const	 *sel;
	int				  rc;
};

/* A worker of `sync` ended: its summary line, in config order. */
static void
sync_worker_done(size_t i, enum worker_end end,
    const struct worker_report *rep, int status, void *arg)
{
	struct pool_ctx		*c = arg;
	const struct cfg_account *acct = c->sel[i];
	struct pass_outcome	 p;
	char			 why[128];

	if (end != WORKER_DONE) {
		if (WIFEXITED(status) &&
		    WEXITSTATUS(status) == WORKER_EXIT_CRASH_HOOK) {
			c->rc = WORKER_EXIT_CRASH_HOOK;	/* the test hook */
			return;
		}
		if (WIFSIGNALED(status))
			snprintf(why, sizeof why, "signal %d (%s)",
			    WTERMSIG(status), strsignal(WTERMSIG(status)));
		else
			snprintf(why, sizeof why, "status %d and no report",
			    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		printf("%s: crashed: the pass ended with %s\n", acct->name,
		    why);
		fflush(stdout);
		if (c->rc != WORKER_EXIT_CRASH_HOOK)
			c->rc = worse(c->rc, EX_SOFTWARE);
		return;
	}
	p.rc = rep->rc;
	p.cls = rep->cls;
	p.msg = rep->msg;
	p.counts = rep->counts;
	p.elapsed_ms = rep->elapsed_ms;
	p.rc = report_pass(c->cli, SYNC_NORMAL, acct, &p);
	fflush(stdout);
	if (c->rc != WORKER_EXIT_CRASH_HOOK)
		c->rc = worse(c->rc, p.rc);
}


/*
 * The parent's Ctrl-C: the first ends the progress line and says what
 * happens (the workers, in the same process group, got it too); the
 * second ends everything at once.
 */
static void
on_sync_interrupt(int sig)
{
	static const char msg[] = "\r\033[Kmailhaul: interrupted: each pass "
	    "finishes the message in flight and ends its session; what was "
	    "delivered is recorded, the rest stays on the server for the "
	    "next pass (Ctrl-C again to stop at once)\n";
	ssize_t	n;

	if (interrupts++ > 0) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	n = write(STDERR_FILENO, msg, sizeof msg - 1);
	(void)n;
}

/* A worker's Ctrl-C: stop after the message in flight; again: now. */
static void
on_worker_interrupt(int sig)
{
	if (interrupts++ > 0) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	sync_request_stop();
}

/* mark-seen and dry runs, in this process: both of the above. */
static void
on_inprocess_interrupt(int sig)
{
	on_sync_interrupt(sig);
	sync_request_stop();
}

static void
sync_child_init(void *arg)
{
	(void)arg;
	interrupts = 0;
	signal(SIGINT, on_worker_interrupt);
}

/* `sync`: every account in its own worker, up to concurrency at once. */
static int
sync_workers(const struct cli *cli, const struct cfg_account *const *sel)
{
	struct worker_opts o;
	struct pool_ctx	 c;
	struct mh_err	 err;
	char		 buf[1200];
	size_t		 n = 0;
	int		 r;

	while (sel[n] != NULL)
		n++;
	memset(&o, 0, sizeof o);
	o.lock_wait_ms = 5000;
	/* one progress line on a terminal: only when one account runs */
	o.progress = (n == 1 && isatty(STDERR_FILENO) &&
	    cli->verbosity >= 0) ? stderr : NULL;
	o.child_init = sync_child_init;
	c.cli = cli;
	c.sel = sel;
	c.rc = EX_OK;
	mh_err_clear(&err);
	fflush(stdout);			/* nothing buffered twice in a fork */
	interrupts = 0;
	signal(SIGINT, on_sync_interrupt);
	r = worker_pool_run(cli->cfg, sel, n, cli->cfg->general.concurrency,
	    &o, sync_worker_done, &c, &err);
	signal(SIGINT, SIG_DFL);
	if (interrupts > 0 && c.rc == EX_OK)
		c.rc = 128 + SIGINT;	/* the shell's way to say it */
	if (r == -1) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		return c.rc == WORKER_EXIT_CRASH_HOOK ? c.rc :
		    worse(c.rc, EX_OSERR);
	}
	return c.rc;
}

static int
run_sync(const struct cli *cli, enum sync_mode mode, int argc, char **argv)
{
	const struct cfg_account **sel;
	struct seen_db	*db = NULL;
	int		 rc;

	if ((sel = select_accounts(cli->cfg, argc, argv)) == NULL)
		return EX_USAGE;
	/* quick_check reads the whole file: `check` and `run` do it, not
	   every poll (the header is still checked) */
	if (open_db_flags(cli, mode == SYNC_NORMAL ? SEEN_OPEN_NOCHECK : 0,
	    &db) == -1) {
		free(sel);
		return EX_IOERR;
	}
	if (mode == SYNC_NORMAL) {
		seen_close(db);		/* each worker opens its own */
		db = NULL;
		rc = sync_workers(cli, sel);
	} else {
		rc = sync_in_process(cli, mode, sel, db);
	}
	fflush(stdout);
	seen_close(db);
	free(sel);
	return rc;
}

static void
print_peer(const char *what, bool tls, const struct net_peer_info *pi)
{
	char	until[64];

	if (!tls) {
		printf("  %s: no TLS\n", what);
		return;
	}
	fmt_time(pi->not_after, until, sizeof until);
	printf("  %s: %s, %s, certificate verified\n", what, pi->version,
	    pi->cipher);
	printf("    subject: %s\n    issuer: %s\n    valid until: %s\n"
	    "    sha256: %s\n", pi->subject, pi->issuer, until, pi->sha256);
}

/* The target line of check: what kind, where. */
static void
print_target(const struct cfg_target *t)
{
	if (t->type == CFG_TARGET_MAILDIR)
		printf("  target %s: maildir %s\n", t->name, t->maildir.path);
	else if (t->type == CFG_TARGET_MDA)
		printf("  target %s: mda %s\n", t->name, t->mda.command);
	else if (t->type == CFG_TARGET_GMAIL)
		printf("  target %s: gmail API %s (oauth2 %s)\n", t->name,
		    t->gmail.api_url, t->ep.oauth2_name);
	else if (t->ep.socket != NULL)
		printf("  target %s: %s unix socket %s\n", t->name,
		    cfg_target_type_name(t->type), t->ep.socket);
	else
		printf("  target %s: %s %s:%u (tls %s)\n", t->name,
		    cfg_target_type_name(t->type), t->ep.host, t->ep.port,
		    cfg_tls_name(t->ep.tls));
}

/* The account's side of check: login, then SELECT of every folder. */
static int
check_source(const struct cfg_account *acct, const char *statedir,
    struct mh_err *err)
{
	struct source		*src = NULL;
	struct source_info	 si;
	struct login		 login;
	char			**folders = NULL, what[300], buf[1200];
	int			 rc = -1, bad = 0;

	snprintf(what, sizeof what, "account %s", acct->name);
	if (login_get(&acct->ep, statedir, what, &login, err) == -1)
		return -1;
	while (source_open(acct, NULL, &login.cred, &src, err) == -1)
		if (!login_retry(&login, err))
			goto out;
	memset(&si, 0, sizeof si);
	source_get_info(src, &si);
	print_peer("connection", si.tls, &si.peer);
	printf("  greeting: %s\n", si.greeting);
	printf("  capabilities: %s\n", si.capabilities);
	printf("  login: ok\n");
	if (acct->protocol == CFG_PROTO_IMAP) {
		if (source_folders(acct, &login.cred, &src, &folders, err) == -1)
			goto out;
		for (char **f = folders; *f != NULL; f++) {
			if (source_select(src, *f, err) == 0) {
				printf("  folder %s: ok\n", *f);
				continue;
			}
			printf("  folder %s: FAILED: %s\n", *f,
			    mh_err_str(err, buf, sizeof buf));
			if (!source_usable(src))
				goto out;
			bad = 1;
		}
		if (folders[0] == NULL)
			printf("  folders: none match %s\n", acct->folders[0]);
		if (bad)
			goto out;
	}
	rc = 0;
out:
	if (src != NULL) {
		source_abort(src);
		source_free(src);
	}
	source_folders_free(folders);
	login_free(&login);
	return rc;
}

/* The target's side: connect, TLS, login, then its probe (RCPT TO...). */
static int
check_target(const struct cfg_target *t, int64_t timeout_s,
    const char *statedir, struct mh_err *err)
{
	struct target		*tg = NULL;
	struct target_info	 ti;
	struct login		 tlogin;
	char			 what[300], note[300];
	int			 rc = -1;

	print_target(t);
	snprintf(what, sizeof what, "target %s", t->name);
	if (login_get(&t->ep, statedir, what, &tlogin, err) == -1)
		return -1;
	for (;;) {
		if ((tg = target_new(t, &tlogin.cred, err)) == NULL)
			goto out;
		target_set_timeout(tg, (int)(timeout_s * 1000));
		if (target_connect(tg, err) == 0)
			break;
		target_close(tg);
		tg = NULL;
		if (!login_retry(&tlogin, err))
			goto out;
	}
	/* a local target has no connection: connect checked it can work */
	if (t->type == CFG_TARGET_MAILDIR || t->type == CFG_TARGET_MDA) {
		printf("  target: ok (%s)\n", t->type == CFG_TARGET_MAILDIR ?
		    "writable" : "the command can be run");
		rc = 0;
		goto out;
	}
	memset(&ti, 0, sizeof ti);
	target_get_info(tg, &ti);
	print_peer("target connection", ti.tls, &ti.peer);
	printf("  target greeting: %s\n", ti.greeting);
	printf("  target capabilities: %s\n", ti.capabilities);
	if (target_probe(tg, note, sizeof note, err) == -1)
		goto out;
	if (note[0] != '\0')
		printf("  target: ok (%s)\n", note);
	rc = 0;
out:
	target_close(tg);
	login_free(&tlogin);
	return rc;
}

/* `check`: the state database opens and passes quick_check. */
static int
check_state(const struct cli *cli)
{
	struct seen_db	*db = NULL;
	struct mh_err	 err;
	char		 buf[1200];

	mh_err_clear(&err);
	printf("state %s\n", cli->cfg->general.state);
	if (access(cli->cfg->general.state, F_OK) == -1) {
		printf("  not created yet (the first sync creates it)\n");
		return EX_OK;
	}
	if (seen_open(cli->cfg->general.state, &db, &err) == -1) {
		printf("  FAILED: %s\n", mh_err_str(&err, buf, sizeof buf));
		return exit_code(err.cls);
	}
	seen_close(db);
	printf("  ok (integrity checked)\n");
	return EX_OK;
}

/* check of one account (its target too, unless target_too is false). */
static int
check_account(const struct cfg_account *acct, int64_t timeout_s,
    const char *statedir)
{
	struct mh_err	err;
	char		buf[1200];

	mh_err_clear(&err);
	printf("%s: %s %s%s%s:%u (tls %s)\n", acct->name,
	    cfg_protocol_name(acct->protocol), acct->ep.user != NULL ?
	    acct->ep.user : "", acct->ep.user != NULL ? "@" : "",
	    acct->ep.host, acct->ep.port, cfg_tls_name(acct->ep.tls));
	if (check_source(acct, statedir, &err) == 0 && acct->target == NULL) {
		/* etrn: no target, and no ETRN sent */
		printf("  target: none (etrn asks the server to deliver)\n");
		return EX_OK;
	}
	if (err.cls == MH_ERR_NONE &&
	    check_target(acct->target, timeout_s, statedir, &err) == 0)
		return EX_OK;
	printf("  FAILED: %s\n", mh_err_str(&err, buf, sizeof buf));
	return exit_code(err.cls);
}

/* `check --target NAME`: that target alone. */
static int
check_one_target(const struct cli *cli, const char *name,
    const char *statedir)
{
	const struct cfg_target	*t = NULL;
	struct mh_err		 err;
	char			 buf[1200];

	for (size_t i = 0; i < cli->cfg->ntargets; i++)
		if (strcmp(cli->cfg->targets[i].name, name) == 0)
			t = &cli->cfg->targets[i];
	if (t == NULL) {
		log_error("no target named '%s' in %s; the targets are:", name,
		    cli->cfg->path);
		for (size_t i = 0; i < cli->cfg->ntargets; i++)
			log_error("  %s", cli->cfg->targets[i].name);
		return EX_USAGE;
	}
	mh_err_clear(&err);
	printf("target %s:\n", t->name);
	if (check_target(t, cli->cfg->general.timeout, statedir, &err) == 0)
		return EX_OK;
	printf("  FAILED: %s\n", mh_err_str(&err, buf, sizeof buf));
	return exit_code(err.cls);
}

static int
run_check(const struct cli *cli, int argc, char **argv)
{
	const struct cfg_account **sel;
	char	*statedir, *one[1];
	int	rc = EX_OK;

	if (cli->only_target != NULL && cli->only_account == NULL &&
	    argc == 0) {
		statedir = config_state_dir(cli->cfg);
		rc = check_one_target(cli, cli->only_target, statedir);
		free(statedir);
		return rc;
	}
	if (cli->only_account != NULL) {
		one[0] = (char *)cli->only_account;
		argv = one;
		argc = 1;
	}
	if ((sel = select_accounts(cli->cfg, argc, argv)) == NULL)
		return EX_USAGE;
	statedir = config_state_dir(cli->cfg);
	rc = check_state(cli);
	for (size_t i = 0; sel[i] != NULL; i++)
		rc = worse(rc, check_account(sel[i],
		    cli->cfg->general.timeout, statedir));
	if (cli->only_target != NULL)
		rc = worse(rc, check_one_target(cli, cli->only_target,
		    statedir));
	free(statedir);
	free(sel);
	return rc;
}

/* ---- status ------------------------------------------------------------ */

struct status_ctx {
	const struct cli	*cli;
	const struct config	*cfg;
	struct seen_db		*db;
	bool			 json;
	bool			 first_source, first_failure, first_doubt;
	int64_t			 cur;
	bool			*seen_account;	/* per config account */
	bool			 failed;	/* a last pass was not ok */
};

static void
json_str(const char *s)
{
	putchar('"');
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
fmt_time(time_t t, char *buf, size_t size)
{
	struct tm tm;

	if (t == 0) {
		snprintf(buf, size, "never");
		return;
	}
	localtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}

/*
 * A pass the running service killed or saw crash before it left a run
 * record (stuck at the greeting or the login): "TIME, killed: WHY" into
 * buf, from service.json.  false when the service knows of none.
 */
static bool
service_lost_pass(const struct cli *cli, const char *name, char *buf,
    size_t size)
{
	struct service_status	st;
	char			when[64];
	bool			found = false;

	if (service_status_read(cli->cfg, &st) != 1)
		return false;
	for (size_t i = 0; i < st.naccounts && !found; i++) {
		const struct service_status_account *a = &st.accounts[i];

		if (strcmp(a->name, name) != 0 || a->last_end == 0 ||
		    (strcmp(a->last_result, "killed") != 0 &&
		    strcmp(a->last_result, "crashed") != 0))
			continue;
		fmt_time(a->last_end, when, sizeof when);
		snprintf(buf, size, "%s, %s: %s", when, a->last_result,
		    a->last_error[0] != '\0' ? a->last_error : "no reason given");
		found = true;
	}
	service_status_free(&st);
	return found;
}

static void
status_close_source(struct status_ctx *c)
{
	if (c->cur != 0 && c->json)
		printf("]}");
	c->cur = 0;
}

/* One message whose delivery was interrupted (an intent, seen.h). */
static void
status_doubt(const struct seen_intent *in, void *arg)
{
	struct status_ctx *c = arg;
	char	t[64];

	if (c->json) {
		printf("%s{\"uid\":", c->first_doubt ? "" : ",");
		c->first_doubt = false;
		json_str(in->uid);
		printf(",\"target\":");
		json_str(in->target);
		printf(",\"since\":%lld}", (long long)in->at);
		return;
	}
	fmt_time(in->at, t, sizeof t);
	printf("    %s to target %s, since %s\n", in->uid, in->target, t);
}

/* The messages in doubt of source s, if any. */
static void
status_doubts(struct status_ctx *c, const struct seen_status *s)
{
	struct mh_err	err;
	char		buf[1200];

	if (c->json)
		printf(",\"in_doubt\":[");
	c->first_doubt = true;
	if (s->in_doubt > 0 && !c->json)
		printf("  in doubt (a delivery was interrupted; the next pass "
		    "asks the target, or delivers again where the target "
		    "cannot be asked): %u\n", s->in_doubt);
	mh_err_clear(&err);
	if (s->in_doubt > 0 &&
	    seen_intents(c->db, s->id, status_doubt, c, &err) == -1)
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
	if (c->json)
		putchar(']');
}

static void
status_source(const struct seen_status *s, void *arg)
{
	struct status_ctx *c = arg;
	char	t[64], bytes[32];

	status_close_source(c);
	c->cur = s->id;
	if (s->last_result != NULL && strcmp(s->last_result, "ok") != 0)
		c->failed = true;
	for (size_t i = 0; i < c->cfg->naccounts; i++)
		if (s->name != NULL &&
		    strcmp(c->cfg->accounts[i].name, s->name) == 0)
			c->seen_account[i] = true;
	if (c->json) {
		printf("%s\n {\"account\":", c->first_source ? "" : ",");
		c->first_source = false;
		json_str(s->name);
		printf(",\"protocol\":");
		json_str(s->protocol);
		printf(",\"host\":");
		json_str(s->host);
		printf(",\"port\":%u,\"user\":", s->port);
		json_str(s->user);
		printf(",\"folder\":");
		json_str(s->folder);
		printf(",\"adopted_total\":%" PRIu64, s->adopted_total);
		printf(",\"delivered_total\":%" PRIu64 ",\"last_start\":%lld,"
		    "\"last_end\":%lld,\"last_result\":", s->delivered_total,
		    (long long)s->last_start, (long long)s->last_end);
		if (s->last_result != NULL)
			json_str(s->last_result);
		else
			printf("null");
		printf(",\"last_error\":");
		if (s->last_error != NULL)
			json_str(s->last_error);
		else
			printf("null");
		printf(",\"last\":{\"listed\":%u,\"delivered\":%u,"
		    "\"deleted\":%u,\"skipped\":%u,\"failed\":%u,"
		    "\"tempfailed\":%u,\"bytes\":%" PRIu64 "}",
		    s->last.listed, s->last.delivered, s->last.deleted,
		    s->last.skipped, s->last.failed, s->last.tempfailed,
		    s->last.bytes);
		status_doubts(c, s);
		printf(",\"failures\":[");
		c->first_failure = true;
		return;
	}
	printf("%s (%s %s@%s:%u%s%s)\n", s->name ? s->name : "?",
	    s->protocol, s->user, s->host, s->port,
	    s->folder[0] ? " " : "", s->folder);
	fmt_time(s->last_start, t, sizeof t);
	if (s->last_result == NULL) {
		char lost[400];

		printf("  last pass: %s\n", s->name != NULL &&
		    service_lost_pass(c->cli, s->name, lost, sizeof lost) ?
		    lost : "never");
	} else {
		human_bytes(s->last.bytes, bytes, sizeof bytes);
		char	result[64];

		/* "ok" alone would hide what the target refused */
		if (s->last.failed > 0 && strcmp(s->last_result, "ok") == 0)
			snprintf(result, sizeof result, "ok, %u refused",
			    s->last.failed);
		else
			snprintf(result, sizeof result, "%s", s->last_result);
		printf("  last pass: %s, %s: %u on the server, %u delivered, "
		    "%u deleted, %u refused, %u to retry (%s)\n", t,
		    result, s->last.listed, s->last.delivered,
		    s->last.deleted, s->last.failed, s->last.tempfailed,
		    bytes);
		if (s->last_error != NULL && *s->last_error != '\0')
			printf("  last error: %s\n", s->last_error);
	}
	printf("  delivered in all: %" PRIu64 "\n", s->delivered_total);
	if (s->adopted_total > 0)
		printf("  recorded as seen by mark-seen (not delivered): %"
		    PRIu64 "\n", s->adopted_total);
	status_doubts(c, s);
	if (s->failed_total > 0)
		printf("  refused for good (kept on the server; `mailhaul "
		    "retry %s` retries them): %u\n", s->name ? s->name : "?",
		    s->failed_total);
	if (s->stuck_total > 0)
		printf("  stuck (failing again and again; kept on the server, "
		    "tried every %d h; `mailhaul retry %s` tries them now): "
		    "%u\n", SEEN_STUCK_RETRY / 3600, s->name ? s->name : "?",
		    s->stuck_total);
	if (s->skipped_total > 0)
		printf("  skipped, larger than max_size (kept on the server; "
		    "fetched once max_size allows, or by `mailhaul retry %s`): "
		    "%u\n", s->name ? s->name : "?", s->skipped_total);
}

static void
status_failure(const struct seen_status *s, const struct seen_failure *f,
    void *arg)
{
	struct status_ctx *c = arg;
	char	t[64], since[64];

	if (c->json) {
		printf("%s{\"uid\":", c->first_failure ? "" : ",");
		c->first_failure = false;
		json_str(f->uid);
		printf(",\"message_id\":");
		json_str(f->message_id);
		printf(",\"size\":%" PRIu64 ",\"when\":%lld,\"tries\":%d,"
		    "\"stuck\":%s,\"first_failed\":%lld,\"error\":",
		    f->size, (long long)f->when, f->tries,
		    f->stuck ? "true" : "false", (long long)f->first_failed);
		json_str(f->error);
		printf(",\"skipped\":%s}", f->skipped ? "true" : "false");
		return;
	}
	fmt_time(f->when, t, sizeof t);
	if (f->skipped) {
		printf("    skipped: %s (%" PRIu64 " bytes) since %s: %s\n",
		    f->uid, f->size, t, f->error ? f->error : "");
		return;
	}
	if (f->stuck) {
		fmt_time(f->first_failed, since, sizeof since);
		printf("    stuck: %s %s (%" PRIu64 " bytes), %d failures since "
		    "%s, the last at %s: %s\n", f->uid, f->message_id ?
		    f->message_id : "", f->size, f->tries, since, t,
		    f->error ? f->error : "");
		return;
	}
	printf("    %s %s (%" PRIu64 " bytes) at %s: %s\n", f->uid,
	    f->message_id ? f->message_id : "", f->size, t,
	    f->error ? f->error : "");
}

/* Whether the running service's last pass of an account failed. */
static bool
service_failed(const struct cli *cli)
{
	struct service_status st;
	bool	failed = false;

	if (service_status_read(cli->cfg, &st) != 1)
		return false;
	for (size_t i = 0; i < st.naccounts; i++)
		if (st.accounts[i].last_result[0] != '\0' &&
		    strcmp(st.accounts[i].last_result, "ok") != 0)
			failed = true;
	service_status_free(&st);
	return failed;
}

/* What the running service (if any) says of each account. */
static void
status_service(const struct cli *cli, bool json)
{
	struct service_status st;
	char	t[64], u[64];
	int	r = service_status_read(cli->cfg, &st);

	if (json) {
		printf(",\"service\":%s", r == 1 ? st.json : "null");
		service_status_free(&st);
		return;
	}
	if (r == 0) {
		printf("service: not running\n");
		return;
	}
	if (r == -1) {
		printf("service: running, but its service.json cannot be "
		    "read\n");
		return;
	}
	fmt_time(st.started, t, sizeof t);
	printf("service: running (pid %ld) since %s\n", st.pid, t);
	for (size_t i = 0; i < st.naccounts; i++) {
		const struct service_status_account *a = &st.accounts[i];

		fmt_time(a->next, t, sizeof t);
		fmt_time(a->backoff_until, u, sizeof u);
		if (a->running)
			printf("  %s: pass running now", a->name);
		else
			printf("  %s: next pass: %s", a->name, t);
		if (a->waiting_for_auth)
			printf(", waiting for 'mailhaul auth' (or a reload)");
		else if (a->auth_failed)
			printf(", backoff: login refused, retrying at %s", u);
		else if (a->backoff_until != 0)
			printf(", backoff: %u failures, until %s",
			    a->failures, u);
		else
			printf(", backoff: none");
		printf(", idle: %s", a->idle);
		if (a->last_result[0] != '\0')
			printf(", last: %s", a->last_result);
		putchar('\n');
		if (a->last_error[0] != '\0')
			printf("    last error: %s\n", a->last_error);
	}
	service_status_free(&st);
}

static int
run_status(const struct cli *cli, bool json)
{
	struct status_ctx c;
	struct seen_db	*db = NULL;
	struct mh_err	 err;
	char		 buf[1200];
	int		 rc = EX_OK;

	if (open_db(cli, &db) == -1)
		return EX_IOERR;
	memset(&c, 0, sizeof c);
	c.cli = cli;
	c.cfg = cli->cfg;
	c.db = db;
	c.json = json;
	c.first_source = true;
	c.seen_account = xcalloc(cli->cfg->naccounts + 1, sizeof(bool));
	mh_err_clear(&err);
	if (json)
		printf("{\"accounts\":[");
	if (seen_status(db, status_source, status_failure, &c, &err) == -1) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		rc = EX_IOERR;
	}
	status_close_source(&c);
	for (size_t i = 0; i < cli->cfg->naccounts; i++) {
		const struct cfg_account *a = &cli->cfg->accounts[i];

		if (c.seen_account[i])
			continue;
		if (json) {
			printf("%s\n {\"account\":", c.first_source ? "" : ",");
			c.first_source = false;
			json_str(a->name);
			printf(",\"protocol\":");
			json_str(cfg_protocol_name(a->protocol));
			printf(",\"host\":");
			json_str(a->ep.host);
			printf(",\"port\":%u,\"user\":", a->ep.port);
			json_str(a->ep.user);
			printf(",\"last_result\":null,\"in_doubt\":[],"
			    "\"failures\":[]}");
		} else {
			char lost[400];

			printf("%s (%s %s@%s:%u)\n  last pass: %s%s\n",
			    a->name, cfg_protocol_name(a->protocol),
			    a->ep.user != NULL ? a->ep.user : "", a->ep.host,
			    a->ep.port, service_lost_pass(cli, a->name, lost,
			    sizeof lost) ? lost : "never", a->enabled ? "" :
			    " (disabled)");
		}
	}
	if (json) {
		printf("\n]");
		status_service(cli, true);
		printf("}\n");
	} else
		status_service(cli, false);
	free(c.seen_account);
	seen_close(db);
	/* scripts and monitoring: an account whose last pass failed */
	if (rc == EX_OK && (c.failed || service_failed(cli)))
		rc = 1;
	return rc;
}

/* ---- retry, forget ------------------------------------------------------ */

static int
run_state_edit(const struct cli *cli, bool forget, const char *name)
{
	struct seen_db	*db = NULL;
	struct mh_err	 err;
	int64_t		*ids = NULL;
	size_t		 nids = 0;
	int		 n = 0, total = 0, sources = 0, rc = EX_OK;
	char		 buf[1200];

	if (config_account(cli->cfg, name) == NULL) {
		log_error("no account named '%s' in %s", name, cli->cfg->path);
		return EX_USAGE;
	}
	if (open_db(cli, &db) == -1)
		return EX_IOERR;
	mh_err_clear(&err);
	if (seen_sources_by_name(db, name, &ids, &nids, &err) == 0) {
		for (size_t i = 0; i < nids; i++) {
			if (forget ? seen_forget(db, ids[i], &err) :
			    seen_retry(db, ids[i], &n, &err))
				break;
			total += forget ? 0 : n;
			sources++;
		}
		free(ids);
	}
	if (err.cls != MH_ERR_NONE) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		rc = EX_IOERR;
	} else if (forget) {
		printf("%s: %s\n", name, sources ? "state forgotten; the next "
		    "pass fetches everything on the server again" :
		    "nothing recorded");
	} else {
		printf("%s: %d refused, skipped or stuck messages will be "
		    "retried on the next pass\n", name, total);
	}
	seen_close(db);
	return rc;
}

/*
 * `forget` drops what keeps mail from being delivered twice: asked on a
 * terminal, refused without one unless --yes.  Returns EX_OK to go on.
 */
static int
confirm_forget(const struct cli *cli, const char *name, bool yes)
{
	char	line[64];

	if (yes || config_account(cli->cfg, name) == NULL)
		return EX_OK;		/* an unknown name is reported below */
	if (!isatty(STDIN_FILENO)) {
		log_error("forget %s: this drops everything recorded about the "
		    "account (the next pass fetches every message on the "
		    "server again); not asking without a terminal: add --yes",
		    name);
		return EX_USAGE;
	}
	fprintf(stderr, "Forget everything recorded about account %s? The "
	    "next pass fetches every message on its server again. [y/N] ",
	    name);
	fflush(stderr);
	if (fgets(line, sizeof line, stdin) == NULL ||
	    (line[0] != 'y' && line[0] != 'Y')) {
		fprintf(stderr, "%s: nothing forgotten\n", name);
		return 1;
	}
	return EX_OK;
}

/* ---- auth ---------------------------------------------------------------- */

#define AUTH_CHECK	0x100
#define AUTH_REFRESH	0x200

static int
auth_check(const struct cfg_oauth2 *o, const char *statedir, bool refresh)
{
	struct oauth2_tokens	 t;
	struct mh_err		 err;
	char			*token, buf[1200];
	size_t			 len;

	if (oauth2_token(o, statedir, refresh, &token, &err) == -1) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		return exit_code(err.cls);
	}
	len = strlen(token);
	secret_free(token);
	if (o->token_command != NULL) {
		printf("%s: token_command gave an access token (%zu bytes)\n",
		    o->name, len);
		return EX_OK;
	}
	if (oauth2_store_load(statedir, o->name, &t, &err) == -1) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		return exit_code(err.cls);
	}
	printf("%s: access token valid for %lld s\n", o->name,
	    (long long)(t.expires_at - (int64_t)time(NULL)));
	oauth2_tokens_free(&t);
	return EX_OK;
}

/* --device, --no-browser, --check, --refresh: auth only, and sensibly. */
static bool
auth_flags_ok(const char *cmd, int flags)
{
	if (strcmp(cmd, "auth") != 0)
		return flags == 0;
	if ((flags & AUTH_REFRESH) && !(flags & AUTH_CHECK))
		return false;
	return !((flags & AUTH_CHECK) &&
	    (flags & (OAUTH2_FLOW_DEVICE | OAUTH2_FLOW_NO_BROWSER)));
}

static int
run_auth(struct cli *cli, int flags, const char *name)
{
	const struct cfg_oauth2	*o;
	struct mh_err		 err;
	char			*statedir, buf[1200];
	int			 rc;
	size_t			 i;

	if ((o = config_oauth2(cli->cfg, name)) == NULL) {
		log_error("no [oauth2:%s] section in %s%s", name,
		    cli->cfg->path, cli->cfg->noauth2s ? "; there are:" : "");
		for (i = 0; i < cli->cfg->noauth2s; i++)
			log_error("  %s", cli->cfg->oauth2s[i].name);
		return EX_USAGE;
	}
	statedir = config_state_dir(cli->cfg);
	if (flags & AUTH_CHECK)
		rc = auth_check(o, statedir, (flags & AUTH_REFRESH) != 0);
	else if (oauth2_flow_run(o, statedir, flags, 0, stdout, &err) == -1) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		rc = exit_code(err.cls);
	} else
		rc = EX_OK;
	free(statedir);
	return rc;
}

/* ---- import ------------------------------------------------------------ */

/* The written config, loaded as sync will, and the old tool's seen
   UIDs recorded in its state database. */
static int
import_record(struct import *imp, const struct import_opts *o)
{
	const char	*out = o->out;
	struct config	*cfg;
	struct seen_db	*db = NULL;
	struct mh_err	 err;
	char		 buf[1200];
	size_t		 added = 0, disabled = 0;
	bool		 changed = false;

	mh_err_clear(&err);
	if ((cfg = config_load(out, stderr)) == NULL) {
		log_error("the config written to %s does not load (a bug: "
		    "please report it); nothing was recorded", out);
		return EX_SOFTWARE;
	}
	if (seen_open(cfg->general.state, &db, &err) == -1 ||
	    adopt_import(cfg, db, imp, &added, &err) == -1) {
		log_error("%s; %s is written, the seen messages are not "
		    "recorded", mh_err_str(&err, buf, sizeof buf), out);
		seen_close(db);
		config_free(cfg);
		return exit_code(err.cls);
	}
	adopt_import_flags(cfg, db, imp, &added, &changed);
	if (changed && import_rewrite(imp, o, &err) == -1)
		log_error("%s: the accounts above are NOT disabled in it",
		    mh_err_str(&err, buf, sizeof buf));
	for (size_t i = 0; i < imp->n; i++) {
		printf("  [account:%s] %s@%s: %zu message%s %s had delivered\n",
		    imp->accts[i].name, imp->accts[i].user,
		    imp->accts[i].host, imp->accts[i].nseen,
		    imp->accts[i].nseen == 1 ? "" : "s", imp->tool);
		disabled += !imp->accts[i].enabled;
	}
	printf("wrote %s: %zu account%s (%zu disabled: read the notes); "
	    "%zu message%s recorded as delivered in %s\n", out, imp->n,
	    imp->n == 1 ? "" : "s", disabled, added, added == 1 ? "" : "s",
	    cfg->general.state);
	printf("next: mailhaul -c %s check (%s must stay stopped: what it "
	    "fetches now would be delivered twice)\n", out, imp->tool);
	seen_close(db);
	config_free(cfg);
	return EX_OK;
}

/* `mailhaul import fetchmail|getmail [--rc FILE]... [--state FILE]
   [-o CONFIG] [--keep-passwords]` */
static int
cmd_import(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "rc",			required_argument, NULL, 'r' },
		{ "state",		required_argument, NULL, 's' },
		{ "output",		required_argument, NULL, 'o' },
		{ "keep-passwords",	no_argument,	   NULL, 'k' },
		{ "help",		no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct import_opts	 o = { 0 };
	struct import		 imp = { 0 };
	struct mh_err		 err;
	char			*def = NULL, *dir, buf[1200];
	int			 ch, rc = EX_USAGE;

	optind = 0;	/* GNU: a full reset, so that options may follow
			   the tool's name */
	while ((ch = getopt_long(argc, argv, "r:s:o:kh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'r':
			o.rc = xrealloc(o.rc, (o.nrc + 1) * sizeof *o.rc);
			o.rc[o.nrc++] = optarg;
			break;
		case 's':	o.state = optarg; break;
		case 'o':	o.out = optarg; break;
		case 'k':	o.keep_passwords = true; break;
		case 'h':	cmd_usage("import", stdout); rc = EX_OK;
				goto out;
		default:	cmd_usage("import", stderr); goto out;
		}
	}
	if (optind != argc - 1 || (strcmp(argv[optind], "fetchmail") != 0 &&
	    strcmp(argv[optind], "getmail") != 0) ||
	    (o.nrc > 1 && strcmp(argv[optind], "fetchmail") == 0)) {
		fprintf(stderr, "mailhaul: usage: mailhaul import "
		    "fetchmail|getmail [--rc FILE] [--state FILE] "
		    "[-o CONFIG] [--keep-passwords]\n");
		goto out;
	}
	if (o.out == NULL)
		o.out = cli->config_path != NULL ? cli->config_path :
		    (def = config_default_path());
	mh_err_clear(&err);
	if (access(o.out, F_OK) == 0) {
		log_error("%s exists: it is never overwritten (choose another "
		    "name with -o)", o.out);
		rc = EX_CANTCREAT;
		goto out;
	}
	if ((strcmp(argv[optind], "fetchmail") == 0 ? import_fetchmail(&o,
	    &imp, &err) : import_getmail(&o, &imp, &err)) == -1) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		rc = err.cls == MH_ERR_LOCAL ? EX_NOINPUT : err.cls ==
		    MH_ERR_BUSY ? EX_TEMPFAIL : EX_DATAERR;
		goto out;
	}
	dir = strrchr(o.out, '/') != NULL ? xstrndup(o.out,
	    (size_t)(strrchr(o.out, '/') - o.out)) : NULL;
	if ((dir != NULL && *dir != '\0' && mkdir_p(dir, 0700, &err) == -1) ||
	    import_write(&imp, &o, &err) == -1) {
		log_error("%s", mh_err_str(&err, buf, sizeof buf));
		free(dir);
		/* a value the config cannot hold is the old file's fault */
		rc = err.cls == MH_ERR_PERM ? EX_DATAERR : EX_CANTCREAT;
		goto out;
	}
	free(dir);
	rc = import_record(&imp, &o);
out:
	import_free(&imp);
	free(o.rc);
	free(def);
	return rc;
}

/* ---- main ---------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config",	required_argument, NULL, 'c' },
		{ "verbose",	no_argument,	   NULL, 'v' },
		{ "quiet",	no_argument,	   NULL, 'q' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ "version",	no_argument,	   NULL, 'V' },
		{ "dry-run",	no_argument,	   NULL, 'n' },
		{ "json",	no_argument,	   NULL, 'j' },
		{ "device",	no_argument,	   NULL, 'D' },
		{ "no-browser",	no_argument,	   NULL, 'B' },
		{ "check",	no_argument,	   NULL, 'K' },
		{ "refresh",	no_argument,	   NULL, 'R' },
		{ "yes",	no_argument,	   NULL, 'y' },
		{ "target",	required_argument, NULL, 'T' },
		{ "account",	required_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 }
	};
	struct cli	 cli;
	struct net_trust *trust = NULL;
	const char	*cmd;
	bool		 dry_run = false, json = false, yes = false;
	int		 ch, rc, auth_flags = 0;

	memset(&cli, 0, sizeof cli);
	log_init(LOG_LVL_INFO, false);
	/* '+' stops at the command; its own options are parsed after it */
	while ((ch = getopt_long(argc, argv, "+c:vqhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':	dry_run = true; break;
		case 'j':	json = true; break;
		case 'c':	cli.config_path = optarg; break;
		case 'v':	cli.verbosity = 1; break;
		case 'q':	cli.verbosity = -1; break;
		case 'h':	usage(stdout); return EX_OK;
		case 'V':	printf("mailhaul %s\n", MAILHAUL_VERSION);
				return EX_OK;
		default:	usage(stderr); return EX_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EX_USAGE;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "import") == 0)
		return cmd_import(&cli, argc, argv);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+nhvqyc:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'D':	auth_flags |= OAUTH2_FLOW_DEVICE; break;
		case 'B':	auth_flags |= OAUTH2_FLOW_NO_BROWSER; break;
		case 'K':	auth_flags |= AUTH_CHECK; break;
		case 'R':	auth_flags |= AUTH_REFRESH; break;
		case 'n':	dry_run = true; break;
		case 'j':	json = true; break;
		case 'v':	cli.verbosity = 1; break;
		case 'q':	cli.verbosity = -1; break;
		case 'c':	cli.config_path = optarg; break;
		case 'y':	yes = true; break;
		case 'T':	cli.only_target = optarg; break;
		case 'A':	cli.only_account = optarg; break;
		case 'h':	if (!cmd_usage(cmd, stdout))
					usage(stdout);
				return EX_OK;
		default:	if (!cmd_usage(cmd, stderr))
					usage(stderr);
				return EX_USAGE;
		}
	}
	argc -= optind;
	argv += optind;

	if (strcmp(cmd, "help") == 0) {
		if (argc == 0 || !cmd_usage(argv[0], stdout))
			usage(stdout);
		return EX_OK;
	}
	if (strcmp(cmd, "sync") != 0 && strcmp(cmd, "check") != 0 &&
	    strcmp(cmd, "run") != 0 &&
	    strcmp(cmd, "status") != 0 && strcmp(cmd, "mark-seen") != 0 &&
	    strcmp(cmd, "forget") != 0 && strcmp(cmd, "retry") != 0 &&
	    strcmp(cmd, "config") != 0 && strcmp(cmd, "auth") != 0) {
		unknown_command(cmd);
		fprintf(stderr, "`mailhaul --help` lists the commands\n");
		return EX_USAGE;
	}
	if (!auth_flags_ok(cmd, auth_flags) ||
	    (dry_run && strcmp(cmd, "sync") != 0) ||
	    (json && strcmp(cmd, "status") != 0) ||
	    (yes && strcmp(cmd, "forget") != 0) ||
	    ((cli.only_target != NULL || cli.only_account != NULL) &&
	    strcmp(cmd, "check") != 0)) {
		fprintf(stderr, "mailhaul: option not valid for '%s'\n", cmd);
		return EX_USAGE;
	}
	if ((strcmp(cmd, "mark-seen") == 0 || strcmp(cmd, "forget") == 0 ||
	    strcmp(cmd, "retry") == 0) && argc != 1) {
		fprintf(stderr, "mailhaul: '%s' takes one ACCOUNT\n", cmd);
		return EX_USAGE;
	}
	if (strcmp(cmd, "auth") == 0 && argc != 1) {
		fprintf(stderr, "mailhaul: 'auth' takes one NAME\n");
		return EX_USAGE;
	}
	if ((strcmp(cmd, "status") == 0 || strcmp(cmd, "config") == 0 ||
	    strcmp(cmd, "run") == 0) && argc != 0) {
		fprintf(stderr, "mailhaul: '%s' takes no arguments\n", cmd);
		return EX_USAGE;
	}

	net_init();
	http_init();		/* before any fork: tokens are fetched in
				   workers and IDLE watchers too */
	if (load_config(&cli) == -1)
		return EX_CONFIG;

	/* the system's CAs, loaded once for the workers to share */
	if (strcmp(cmd, "sync") == 0 || strcmp(cmd, "mark-seen") == 0 ||
	    strcmp(cmd, "check") == 0)
		trust = endpoint_trust_attach(cli.cfg);

	if (strcmp(cmd, "config") == 0) {
		config_print(cli.cfg, stdout);
		rc = EX_OK;
	} else if (strcmp(cmd, "sync") == 0)
		rc = run_sync(&cli, dry_run ? SYNC_DRY_RUN : SYNC_NORMAL, argc,
		    argv);
	else if (strcmp(cmd, "mark-seen") == 0)
		rc = run_sync(&cli, SYNC_MARK_SEEN, argc, argv);
	else if (strcmp(cmd, "check") == 0)
		rc = run_check(&cli, argc, argv);
	else if (strcmp(cmd, "run") == 0)
		rc = scheduler_run(&cli.cfg, cli.verbosity);
	else if (strcmp(cmd, "status") == 0)
		rc = run_status(&cli, json);
	else if (strcmp(cmd, "auth") == 0)
		rc = run_auth(&cli, auth_flags, argv[0]);
	else if (strcmp(cmd, "forget") == 0 &&
	    (rc = confirm_forget(&cli, argv[0], yes)) != EX_OK)
		;
	else
		rc = run_state_edit(&cli, strcmp(cmd, "forget") == 0, argv[0]);
	config_free(cli.cfg);
	net_trust_free(trust);
	return rc;
}
