/*
 * test-import.c -- the fetchmailrc and getmailrc readers and the config
 * writer of `mailhaul import` (config/import*.c), on tricky files.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/import.h"
#include "fetch/state/seen.h"
#include "check.h"

static char	tmpdir[] = "/tmp/mh-test-import-XXXXXX";

/* Writes len bytes of text to tmpdir/name; returns a new path. */
static char *
put(const char *name, const char *text, size_t len)
{
	char	*p = xasprintf("%s/%s", tmpdir, name);
	FILE	*f = fopen(p, "w");

	if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
		perror(p);
		exit(1);
	}
	return p;
}

static char *
slurp(const char *path)
{
	FILE	*f = fopen(path, "r");
	char	*buf = xcalloc(1, 65536);

	if (f != NULL) {
		if (fread(buf, 1, 65535, f) == 0)
			buf[0] = '\0';
		fclose(f);
	}
	return buf;
}

static const struct imp_account *
find(const struct import *imp, const char *name)
{
	for (size_t i = 0; i < imp->n; i++)
		if (strcmp(imp->accts[i].name, name) == 0)
			return &imp->accts[i];
	fprintf(stderr, "  no account %s\n", name);
	return NULL;
}

static bool
has_seen(const struct imp_account *a, const char *folder, uint32_t uv,
    const char *uid)
{
	for (size_t i = 0; a != NULL && i < a->nseen; i++)
		if (strcmp(a->seen[i].folder, folder) == 0 &&
		    a->seen[i].uidvalidity == uv &&
		    strcmp(a->seen[i].uid, uid) == 0)
			return true;
	return false;
}

static const char tricky_rc[] =
"# a comment with a \"quote and 'another\n"
"set daemon 300\n"
"set logfile \"/var/log/fm.log\"   # trailing comment\n"
"set no bouncemail\n"
"defaults proto pop3 options keep\n"
"poll \"mail.example.org\" with proto POP3 port 995:\n"
"  user 'joe' there with password \"p\\\"w;#x\" is jim here\n"
"  options ssl, fetchall; smtphost localhost/2525 smtpname "
"\"jim@example.org\"\n"
"poll alias.example via real.example.net proto IMAP\n"
"  user \"ann\" there has password secret is \"ann\" here\n"
"    options ssl no keep idle folder INBOX, \"Lists/dev\"\n"
"  user \"bob\" is bob here options keep mda \"/usr/bin/procmail -d %T\"\n"
"skip old.example.org user x password y\n"
"poll lmtp.example user u password p lmtp smtphost /run/dovecot/lmtp\n"
"  no envelope sslproto '' no sslcertck tracepolls\n";

static const char tricky_ids[] =
"joe@mail.example.org UID1\n"
"joe@mail.example.org <abc@def.example>\n"
"  x@old.example.org   abc  \n"
"nobody@else.example zzz\n";

static void
load_fetchmail(struct import *imp)
{
	char			*rc = put("fetchmailrc", tricky_rc,
				    sizeof tricky_rc - 1);
	char			*ids = put("fetchids", tricky_ids,
				    sizeof tricky_ids - 1);
	const char		*rcs[] = { rc };
	struct import_opts	 o = { .rc = rcs, .nrc = 1, .state = ids };
	struct mh_err		 err;

	mh_err_clear(&err);
	memset(imp, 0, sizeof *imp);
	CHECK(import_fetchmail(&o, imp, &err) == 0);
	if (err.msg[0] != '\0')
		fprintf(stderr, "  %s\n", err.msg);
	free(rc);
	free(ids);
}

static void
t_fetchmail_entries(void)
{
	struct import			 imp;
	const struct imp_account	*a;

	load_fetchmail(&imp);
	CHECK(imp.n == 5);
	CHECK(imp.interval == 300);
	CHECK_CONTAINS(imp.notes, "logfile /var/log/fm.log");
	a = find(&imp, "mail.example.org");
	CHECK(a != NULL && a->protocol == CFG_PROTO_POP3 && a->port == 995);
	CHECK(a != NULL && a->tls == CFG_TLS_IMPLICIT && a->keep);
	CHECK_STR(a ? a->user : NULL, "joe");
	CHECK_STR(a ? a->password : NULL, "p\"w;#x");
	CHECK(a != NULL && a->target.type == CFG_TARGET_SMTP &&
	    a->target.port == 2525);
	CHECK_STR(a ? a->target.host : NULL, "localhost");
	CHECK_STR(a ? a->target.recipient : NULL, "jim@example.org");
	CHECK_CONTAINS(a ? a->notes : NULL, "fetchall");
	import_free(&imp);
}

static void
t_fetchmail_via_users(void)
{
	struct import			 imp;
	const struct imp_account	*a;

	load_fetchmail(&imp);
	a = find(&imp, "alias.example-ann");
	CHECK(a != NULL && a->protocol == CFG_PROTO_IMAP && !a->keep);
	CHECK_STR(a ? a->host : NULL, "real.example.net");
	CHECK(a != NULL && a->idle && a->nfolders == 2 && a->enabled);
	CHECK_STR(a && a->nfolders > 1 ? a->folders[1] : NULL, "Lists/dev");
	CHECK_STR(a ? a->password : NULL, "secret");
	/* keep no: fetchmail deleted what it fetched; a \Seen message
	   still there was never delivered, so nothing is adopted */
	CHECK(a != NULL && !a->adopt_flags && !a->adopt_all);
	CHECK_CONTAINS(a ? a->notes : NULL, "never delivered");
	a = find(&imp, "alias.example-bob");
	CHECK(a != NULL && a->keep && a->enabled && a->adopt_flags);
	CHECK(a != NULL && a->tls == CFG_TLS_STARTTLS);
	CHECK(a != NULL && a->target.type == CFG_TARGET_MDA);
	CHECK_STR(a ? a->target.command : NULL, "/usr/bin/procmail -d bob");
	CHECK_CONTAINS(a ? a->notes : NULL, "carried \\Seen as delivered");
	import_free(&imp);
}

static void
t_fetchmail_skip_lmtp_ids(void)
{
	struct import			 imp;
	const struct imp_account	*a;

	load_fetchmail(&imp);
	a = find(&imp, "old.example.org");
	CHECK(a != NULL && !a->enabled && a->protocol == CFG_PROTO_POP3);
	CHECK(a != NULL && a->nseen == 1 && has_seen(a, "", 0, "abc"));
	a = find(&imp, "lmtp.example");
	CHECK(a != NULL && a->target.type == CFG_TARGET_LMTP);
	CHECK_STR(a ? a->target.socket : NULL, "/run/dovecot/lmtp");
	CHECK(a != NULL && a->tls == CFG_TLS_NONE && a->plaintext);
	CHECK_CONTAINS(a ? a->notes : NULL, "no sslcertck");
	CHECK_CONTAINS(a ? a->notes : NULL, "tracepolls");
	a = find(&imp, "mail.example.org");
	CHECK(a != NULL && a->nseen == 2);
	CHECK(has_seen(a, "", 0, "UID1"));
	CHECK(has_seen(a, "", 0, "<abc@def.example>"));
	CHECK_CONTAINS(imp.notes, "1 UIDs of");
	import_free(&imp);
}

static void
t_fetchmail_errors(void)
{
	static const char open_string[] = "poll a\n user \"b there\n";
	static const char stray[] = "user b\n";
	char			*rc;
	const char		*rcs[1];
	struct import_opts	 o = { .rc = rcs, .nrc = 1, .state = "/nonex" };
	struct import		 imp = { 0 };
	struct mh_err		 err;

	rc = put("bad1", open_string, sizeof open_string - 1);
	rcs[0] = rc;
	CHECK(import_fetchmail(&o, &imp, &err) == -1);
	CHECK(err.cls == MH_ERR_PERM);
	CHECK_CONTAINS(err.msg, "bad1:2: a quoted string does not end");
	import_free(&imp);
	free(rc);
	rc = put("bad2", stray, sizeof stray - 1);
	rcs[0] = rc;
	CHECK(import_fetchmail(&o, &imp, &err) == -1);
	CHECK_CONTAINS(err.msg, "bad2:1: expected poll");
	import_free(&imp);
	free(rc);
}

static const char getmail_imap[] =
"[retriever]\n"
"type = SimpleIMAPSSLRetriever\n"
"server = imap.example.org\n"
"username = me\n"
"password_command = (\"pass\", \"show\", \"mail/x y\")\n"
"mailboxes = (\"INBOX\", \"Sent Items\",)\n"
"ssl_fingerprints = (\"" "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\",)\n"
"[destination]\n"
"type = MultiDestination\n"
"destinations = (\"[d1]\", \"~/Mail/\")\n"
"[d1]\n"
"type = MDA_lmtp\n"
"host = /run/lmtp\n"
"override = me\n"
"[options]\n"
"delete_after = 30\n"
"use_peek = false\n";

static const char getmail_pop[] =
"[retriever]\n"
"type = SimplePOP3Retriever\n"
"server = pop.example.org\n"
"username = a/b\n"
"password = pw\n"
"[destination]\n"
"type = Maildir\n"
"path = ~/Maildir/\n"
"[options]\n"
"delete = true\n"
"read_all = false\n";

static void
t_getmail(void)
{
	char			*rc1 = put("imaprc", getmail_imap,
				    sizeof getmail_imap - 1);
	char			*rc2 = put("getmailrc", getmail_pop,
				    sizeof getmail_pop - 1);
	char			*f1 = put("oldmail-imap.example.org-993-me-INBOX",
				    "7/1\0" "100\n7/2\0" "100\nbad line\n", 24);
	char			*f2 = put("oldmail-imap.example.org-993-me-"
				    "Sent Items", "9/5\0" "1\n", 6);
	char			*f3 = put("oldmail-pop.example.org-110-a-b",
				    "U1\0" "1\nU-2\0" "2\n", 11);
	const char		*rcs[] = { rc1, rc2 };
	struct import_opts	 o = { .rc = rcs, .nrc = 2 };
	struct import		 imp = { 0 };
	struct mh_err		 err;
	const struct imp_account *a;

	setenv("HOME", "/home/u", 1);
	mh_err_clear(&err);
	CHECK(import_getmail(&o, &imp, &err) == 0);
	CHECK(imp.n == 2);
	a = find(&imp, "imaprc");
	CHECK(a != NULL && a->protocol == CFG_PROTO_IMAP && a->port == 993);
	CHECK(a != NULL && a->tls == CFG_TLS_IMPLICIT && a->keep);
	CHECK(a != NULL && a->delete_after == 30 * 86400);
	CHECK_STR(a ? a->password_command : NULL, "pass show 'mail/x y'");
	CHECK(a != NULL && a->nfolders == 2);
	CHECK(a != NULL && a->fingerprint != NULL);
	CHECK(a != NULL && a->target.type == CFG_TARGET_LMTP);
	CHECK_STR(a ? a->target.socket : NULL, "/run/lmtp");
	CHECK_STR(a ? a->target.recipient : NULL, "me@localhost");
	CHECK_CONTAINS(a ? a->notes : NULL, "MultiDestination");
	CHECK_CONTAINS(a ? a->notes : NULL, "use_peek");
	CHECK_CONTAINS(a ? a->notes : NULL, "read_all");
	CHECK(a != NULL && a->nseen == 3);
	CHECK(has_seen(a, "INBOX", 7, "1") && has_seen(a, "INBOX", 7, "2"));
	CHECK(has_seen(a, "Sent Items", 9, "5"));
	a = find(&imp, "pop.example.org");
	CHECK(a != NULL && a->protocol == CFG_PROTO_POP3 && !a->keep);
	CHECK(a != NULL && a->tls == CFG_TLS_NONE);
	CHECK(a != NULL && a->target.type == CFG_TARGET_MAILDIR);
	CHECK_STR(a ? a->target.path : NULL, "/home/u/Maildir/");
	/* getmail wrote the UIDL U/2 as U-2: both are recorded */
	CHECK(a != NULL && a->nseen == 3 && has_seen(a, "", 0, "U-2"));
	CHECK(has_seen(a, "", 0, "U/2"));
	import_free(&imp);
	free(rc1); free(rc2); free(f1); free(f2); free(f3);
}

/* fetchmail's words: a '#' or a quote inside one is part of it, so the
   rest of the line (keep, ssl) is not taken for a comment. */
static void
t_fetchmail_words(void)
{
	static const char rctext[] =
	    "poll pop.example.com proto pop3 user joe password pa#ss keep ssl\n"
	    "poll auto.example.com user ann password pw keep ssl\n"
	    "poll auto2.example.com user bo password pw keep ssl\n";
	static const char idstext[] = "bo@auto2.example.com U1\n";
	char			*rc = put("fm-words", rctext, sizeof rctext - 1);
	char			*ids = put("fm-words-ids", idstext,
				    sizeof idstext - 1);
	const char		*rcs[] = { rc };
	struct import_opts	 o = { .rc = rcs, .nrc = 1, .state = ids };
	struct import		 imp = { 0 };
	struct mh_err		 err;
	const struct imp_account *a;

	mh_err_clear(&err);
	CHECK(import_fetchmail(&o, &imp, &err) == 0);
	a = find(&imp, "pop.example.com");
	CHECK_STR(a ? a->password : NULL, "pa#ss");
	CHECK(a != NULL && a->keep && a->tls == CFG_TLS_IMPLICIT && a->enabled);
	/* proto auto, keep, no UID in .fetchids: most likely IMAP, whose
	   state fetchmail keeps nowhere: disabled, not a second delivery of
	   the whole mailbox */
	a = find(&imp, "auto.example.com");
	CHECK(a != NULL && !a->enabled);
	CHECK_CONTAINS(a ? a->notes : NULL, "fetchmail most likely used IMAP");
	a = find(&imp, "auto2.example.com");
	CHECK(a != NULL && a->enabled && a->nseen == 1);
	import_free(&imp);
	free(rc);
	free(ids);
}

/* getmail: a retriever that cannot be converted is an error (not a half
   account written with "(null)"); mailboxes = ALL, whose state is not
   imported, is disabled; an empty MultiDestination path is no crash. */
static void
t_getmail_refusals(void)
{
	static const char badtype[] = "[retriever]\ntype = SimplePOP3SSLRetrievr\n"
	    "server = p.example.org\nusername = u\n[destination]\n"
	    "type = Maildir\npath = ~/M/\n";
	static const char all[] = "[retriever]\ntype = SimpleIMAPSSLRetriever\n"
	    "server = i.example.org\nusername = u\nmailboxes = ALL\n"
	    "[destination]\ntype = MultiDestination\ndestinations = ('',)\n";
	char			*rc1 = put("gm-bad", badtype, sizeof badtype - 1);
	char			*rc2 = put("gm-all", all, sizeof all - 1);
	const char		*rcs[1];
	struct import_opts	 o = { .rc = rcs, .nrc = 1 };
	struct import		 imp = { 0 };
	struct mh_err		 err;
	const struct imp_account *a;

	setenv("HOME", "/home/u", 1);
	rcs[0] = rc1;
	mh_err_clear(&err);
	CHECK(import_getmail(&o, &imp, &err) == -1);
	CHECK_CONTAINS(err.msg, "SimplePOP3SSLRetrievr is not one mailhaul can "
	    "convert");
	import_free(&imp);
	memset(&imp, 0, sizeof imp);
	rcs[0] = rc2;
	mh_err_clear(&err);
	CHECK(import_getmail(&o, &imp, &err) == 0);
	a = find(&imp, "gm-all");
	CHECK(a != NULL && !a->enabled);
	CHECK_CONTAINS(a ? a->notes : NULL, "the account is disabled");
	import_free(&imp);
	free(rc1);
	free(rc2);
}

/* Imports fetchmailrc text and CHECKs that writing it is refused with
   want in the error, and that nothing was written. */
static void
write_refused(const char *name, const char *text, const char *want)
{
	char			*rc = put(name, text, strlen(text));
	char			*out = xasprintf("%s/unsafe.ini", tmpdir);
	const char		*rcs[] = { rc };
	struct import_opts	 o = { .rc = rcs, .nrc = 1, .state = "/nonex" };
	struct import		 imp = { 0 };
	struct mh_err		 err;

	CHECK(import_fetchmail(&o, &imp, &err) == 0);
	o.out = out;
	CHECK(import_write(&imp, &o, &err) == -1);
	CHECK_CONTAINS(err.msg, want);
	CHECK(access(out, F_OK) == -1);
	import_free(&imp);
	free(rc);
	free(out);
}

/* A value the ini cannot hold as it is stops the import: a folder "A, B"
   would come back as two folders, an MDA "procmail ; logger" as procmail
   alone, a line break as a new key. */
static void
t_write_unsafe_values(void)
{
	write_refused("fm-unsafe",
	    "poll imap.example.org proto imap user joe password pw keep ssl\n"
	    "  folder \"Receipts, 2023\"\n",
	    "a folder name cannot be written");
	write_refused("fm-unsafe2",
	    "poll pop.example.org proto pop3 user joe password pw keep ssl\n"
	    "  mda \"/usr/bin/procmail -d %T ; logger done\"\n",
	    "the MDA command cannot be written");
}

/* The written config loads, the password is moved to a 0600 file, and
   an existing file is never overwritten. */
static void
t_write(void)
{
	struct import		 imp;
	struct import_opts	 o = { 0 };
	struct mh_err		 err;
	struct config		*cfg;
	struct stat		 st;
	char			*out = xasprintf("%s/w/config.ini", tmpdir);
	char			*pw = xasprintf("%s/w/mail.example.org.password",
				    tmpdir), *dir = xasprintf("%s/w", tmpdir);
	char			*text;

	load_fetchmail(&imp);
	CHECK(mkdir(dir, 0700) == 0);
	o.out = out;
	CHECK(import_write(&imp, &o, &err) == 0);
	cfg = config_load(out, stderr);
	CHECK(cfg != NULL);
	CHECK(cfg != NULL && cfg->naccounts == 5);
	config_free(cfg);
	text = slurp(out);
	CHECK(strstr(text, "p\"w;#x") == NULL);
	CHECK_CONTAINS(text, "password_file = ");
	CHECK_CONTAINS(text, "; no sslcertck");
	free(text);
	CHECK(stat(pw, &st) == 0 && (st.st_mode & 0777) == 0600);
	text = slurp(pw);
	CHECK_STR(text, "p\"w;#x");
	free(text);
	/* again: the config exists, nothing is touched */
	CHECK(truncate(pw, 0) == 0);
	CHECK(import_write(&imp, &o, &err) == -1);
	CHECK_CONTAINS(err.msg, "never overwritten");
	CHECK(stat(pw, &st) == 0 && st.st_size == 0);
	import_free(&imp);
	free(out); free(pw); free(dir);
}

static void
t_write_keep_passwords(void)
{
	struct import		 imp;
	struct import_opts	 o = { .keep_passwords = true };
	struct mh_err		 err;
	char			*out = xasprintf("%s/k.ini", tmpdir), *text;
	char			*pw = xasprintf("%s/mail.example.org.password",
				    tmpdir);
	struct config		*cfg;

	load_fetchmail(&imp);
	o.out = out;
	CHECK(import_write(&imp, &o, &err) == 0);
	text = slurp(out);
	CHECK_CONTAINS(text, "password = p\"w;#x\n");
	free(text);
	CHECK(access(pw, F_OK) == -1);
	cfg = config_load(out, stderr);
	CHECK(cfg != NULL);
	config_free(cfg);
	import_free(&imp);
	free(out);
	free(pw);
}

/* Imported UIDs are delivered records; importing again adds nothing and
   changes no record (a refusal stays a refusal). */
static void
t_record_imported(void)
{
	static const char *const uids[] = { "U1", "U2", "U3" };
	struct seen_source	 src = { "imap", "h.example", 993, "u", "INBOX" };
	struct seen_msg		 m = { .uid = "U3", .uidvalidity = 7 };
	struct seen_db		*db = NULL;
	struct seen_set		*set = NULL;
	const struct seen_entry	*e;
	struct mh_err		 err;
	char			*path = xasprintf("%s/state.db", tmpdir);
	int64_t			 id;
	size_t			 added = 9;

	CHECK(seen_open(path, &db, &err) == 0);
	CHECK(seen_source_id(db, &src, "acct", &id, &err) == 0);
	CHECK(seen_record_failed(db, id, &m, true, "550 no", &err) == 0);
	CHECK(seen_record_imported(db, id, 7, uids, 3, &added, &err) == 0);
	CHECK(added == 2);
	CHECK(seen_record_imported(db, id, 7, uids, 3, &added, &err) == 0);
	CHECK(added == 0);
	CHECK(seen_load(db, id, 7, &set, &err) == 0);
	e = set != NULL ? seen_lookup(set, "U1") : NULL;
	CHECK(e != NULL && e->state == SEEN_DELIVERED);
	/* not delivered by mailhaul: no delivery time, so delete_after
	   never expunges it */
	CHECK(e != NULL && e->delivered_at == 0);
	e = set != NULL ? seen_lookup(set, "U3") : NULL;
	CHECK(e != NULL && e->state == SEEN_FAILED);
	seen_set_free(set);
	/* another UIDVALIDITY is another message */
	CHECK(seen_load(db, id, 8, &set, &err) == 0);
	CHECK(set != NULL && seen_lookup(set, "U1") == NULL);
	seen_set_free(set);
	seen_close(db);
	free(path);
}

int
main(void)
{
	char	*cmd;
	int	 rc;

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	RUN(t_fetchmail_entries);
	RUN(t_fetchmail_via_users);
	RUN(t_fetchmail_skip_lmtp_ids);
	RUN(t_fetchmail_errors);
	RUN(t_getmail);
	RUN(t_fetchmail_words);
	RUN(t_getmail_refusals);
	RUN(t_write_unsafe_values);
	RUN(t_write);
	RUN(t_write_keep_passwords);
	RUN(t_record_imported);
	rc = check_done();
	cmd = xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	free(cmd);
	return rc;
}
