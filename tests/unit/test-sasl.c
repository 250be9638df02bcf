/*
 * test-sasl.c -- net/sasl: each mechanism's encoding against known
 * vectors, the error continuations of XOAUTH2 and OAUTHBEARER, the one
 * mechanism choice and the plain-text policy, through a scripted
 * in-memory framing.  (The protocols' framings are tested in test-pop3,
 * test-imap and test-smtp against their fake servers.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/net.h"
#include "net/sasl.h"

#define SECRET	"s3cret-pw"
#define TOKEN	"Tok-Sasl-5v1R"

/* A scripted server: replies in order ("+ b64", "OK", "NO text"). */
struct script {
	const char	*replies[8];
	size_t		 next;
	size_t		 ir_max;
	char		 log[2048];	/* "START MECH IR\n", "SEND line\n" */
};

/* Logs "START MECH IR" for the first line, "SEND line" for others. */
static int
s_send(void *ctx, const char *line, const char *shown, struct mh_err *err)
{
	struct script	*s = ctx;
	size_t		 l = strlen(s->log);

	(void)err;
	if (strncmp(line, "START ", 6) == 0) {
		/* the shown form never holds the response */
		if (strchr(line + 6, ' ') != NULL &&
		    strstr(shown, "<redacted>") == NULL)
			snprintf(s->log + l, sizeof s->log - l, "UNREDACTED ");
		l = strlen(s->log);
		snprintf(s->log + l, sizeof s->log - l, "%s\n", line);
	} else
		snprintf(s->log + l, sizeof s->log - l, "SEND %s\n", line);
	return 0;
}

static int
s_read(void *ctx, enum sasl_reply *r, char *chal, size_t size,
    struct mh_err *err)
{
	struct script	*s = ctx;
	const char	*rep = s->next < 8 ? s->replies[s->next++] : NULL;

	if (rep == NULL) {
		mh_err_set(err, MH_ERR_TEMP, "connection lost");
		return -1;
	}
	if (rep[0] == '+') {
		*r = SASL_REPLY_CONT;
		snprintf(chal, size, "%s", rep[1] == ' ' ? rep + 2 : "");
	} else if (strncmp(rep, "OK", 2) == 0)
		*r = SASL_REPLY_OK;
	else {
		*r = SASL_REPLY_NO;
		mh_err_reply(err, rep, (size_t)-1);
	}
	return 0;
}

static int
run(struct script *s, enum sasl_mech m, const char *user, const char *secret,
    enum sasl_kind kind, struct mh_err *err)
{
	struct sasl_io		io = { s, "START", s_send, s_read, s->ir_max };
	struct sasl_cred	c = { user, secret, kind };
	struct sasl_peer	p = { "mail.example.org", 993 };

	mh_err_clear(err);
	return sasl_authenticate(&io, m, &c, &p, err);
}

static void
t_plain(void)
{
	struct script	s = { { "OK" }, 0, 1000, "" };
	struct mh_err	err;

	CHECK(run(&s, SASL_PLAIN, "joe", SECRET, SASL_SECRET_PASSWORD,
	    &err) == 0);
	/* base64("\0joe\0s3cret-pw") */
	CHECK_STR(s.log, "START PLAIN AGpvZQBzM2NyZXQtcHc=\n");
}

/* Without an initial response: PLAIN answers the empty challenge. */
static void
t_plain_no_ir(void)
{
	struct script	s = { { "+ ", "OK" }, 0, 0, "" };
	struct mh_err	err;

	CHECK(run(&s, SASL_PLAIN, "joe", SECRET, SASL_SECRET_PASSWORD,
	    &err) == 0);
	CHECK_STR(s.log, "START PLAIN\nSEND AGpvZQBzM2NyZXQtcHc=\n");
}

/* An initial response longer than the protocol allows goes second. */
static void
t_ir_too_long(void)
{
	struct script	s = { { "+", "OK" }, 0, 10, "" };
	struct mh_err	err;

	CHECK(run(&s, SASL_PLAIN, "joe", SECRET, SASL_SECRET_PASSWORD,
	    &err) == 0);
	CHECK_STR(s.log, "START PLAIN\nSEND AGpvZQBzM2NyZXQtcHc=\n");
}

/* A second challenge after PLAIN is cancelled with "*". */
static void
t_plain_extra_challenge(void)
{
	struct script	s = { { "+ eHl6", "NO [AUTHENTICATIONFAILED] no" },
	    0, 1000, "" };
	struct mh_err	err;

	CHECK(run(&s, SASL_PLAIN, "joe", SECRET, SASL_SECRET_PASSWORD,
	    &err) == -1);
	CHECK_CONTAINS(s.log, "SEND *\n");
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_STR(err.msg, "AUTH PLAIN as joe refused");
	CHECK_STR(err.reply, "NO [AUTHENTICATIONFAILED] no");
}

static void
t_login(void)
{
	struct script	s = { { "+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "OK" }, 0,
	    1000, "" };
	struct mh_err	err;

	CHECK(run(&s, SASL_LOGIN, "user", "pass", SASL_SECRET_PASSWORD,
	    &err) == 0);
	CHECK_STR(s.log, "START LOGIN\nSEND dXNlcg==\nSEND cGFzcw==\n");
}

static void
t_xoauth2(void)
{
	struct script	s = { { "OK" }, 0, 1000, "" };
	struct mh_err	err;
	char		*want, *b64;
	const char	raw[] = "user=someuser@example.com\001auth=Bearer "
	    "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\001\001";

	/* Google's documented example */
	CHECK(run(&s, SASL_XOAUTH2, "someuser@example.com",
	    "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
	    SASL_SECRET_OAUTH2, &err) == 0);
	CHECK_STR(s.log, "START XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdX"
	    "RoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRH"
	    "RXVZMjl0Q2cBAQ==\n");
	b64 = net_base64(raw, sizeof raw - 1);
	want = xasprintf("START XOAUTH2 %s\n", b64);
	CHECK_STR(s.log, want);
	free(want);
	free(b64);
}

/* The two-step form (POP3, for Microsoft): empty challenge first. */
static void
t_xoauth2_two_step(void)
{
	struct script	s = { { "+ ", "OK" }, 0, 0, "" };
	struct mh_err	err;

	CHECK(run(&s, SASL_XOAUTH2, "u", "t", SASL_SECRET_OAUTH2, &err) == 0);
	/* base64("user=u\1auth=Bearer t\1\1") */
	CHECK_STR(s.log, "START XOAUTH2\nSEND dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==\n");
}

/* The JSON error continuation: answered empty, its status reported. */
static void
t_xoauth2_error(void)
{
	struct script	s = { { "+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVy"
	    "IiwiZXJyb3IiOiJpbnZhbGlkX3Rva2VuIn0=",
	    "NO [AUTHENTICATIONFAILED] Invalid credentials" }, 0, 1000, "" };
	struct mh_err	err;

	/* {"status":"400","schemes":"Bearer","error":"invalid_token"} */
	CHECK(run(&s, SASL_XOAUTH2, "u", TOKEN, SASL_SECRET_OAUTH2,
	    &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_STR(err.msg, "AUTH XOAUTH2 as u refused (status 400, error "
	    "invalid_token)");
	CHECK_STR(err.reply, "NO [AUTHENTICATIONFAILED] Invalid credentials");
	CHECK(strstr(s.log, "\nSEND \n") != NULL);
	CHECK(strstr(err.msg, TOKEN) == NULL);
}

static void
t_oauthbearer(void)
{
	struct script	s = { { "OK" }, 0, 1000, "" };
	struct mh_err	err;
	const char	raw[] = "n,a=user@example.com,\001host=mail.example.org"
	    "\001port=993\001auth=Bearer vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEu"
	    "Y29tCg==\001\001";
	char		*b64, *want;

	/* RFC 7628 section 4.1's example, with our host and port */
	CHECK(run(&s, SASL_OAUTHBEARER, "user@example.com",
	    "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==", SASL_SECRET_OAUTH2,
	    &err) == 0);
	b64 = net_base64(raw, sizeof raw - 1);
	want = xasprintf("START OAUTHBEARER %s\n", b64);
	CHECK_STR(s.log, want);
	free(want);
	free(b64);
}

/* The GS2 authzid escapes ',' and '=' (RFC 5801). */
static void
t_oauthbearer_escape(void)
{
	struct script	s = { { "OK" }, 0, 1000, "" };
	struct mh_err	err;
	const char	raw[] = "n,a=a=3Db=2Cc,\001host=mail.example.org"
	    "\001port=993\001auth=Bearer t\001\001";
	char		*b64, *want;

	CHECK(run(&s, SASL_OAUTHBEARER, "a=b,c", "t", SASL_SECRET_OAUTH2,
	    &err) == 0);
	b64 = net_base64(raw, sizeof raw - 1);
	want = xasprintf("START OAUTHBEARER %s\n", b64);
	CHECK_STR(s.log, want);
	free(want);
	free(b64);
}

/* RFC 7628 3.2.3: the error is answered with a single ^A ("AQ=="). */
static void
t_oauthbearer_error(void)
{
	struct script	s = { { "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUi"
	    "OiJleGFtcGxlX3Njb3BlIn0=", "NO failed" }, 0, 1000, "" };
	struct mh_err	err;

	/* {"status":"invalid_token","scope":"example_scope"} */
	CHECK(run(&s, SASL_OAUTHBEARER, "u", TOKEN, SASL_SECRET_OAUTH2,
	    &err) == -1);
	CHECK_CONTAINS(s.log, "\nSEND AQ==\n");
	CHECK_STR(err.msg, "AUTH OAUTHBEARER as u refused (status "
	    "invalid_token)");
}

/* A challenge that is not JSON, or not base64: said so, never echoed. */
static void
t_bad_challenges(void)
{
	struct script	s = { { "+ bm90IGpzb24=", "NO x" }, 0, 1000, "" };
	struct script	s2 = { { "+ !!!", "NO y" }, 0, 1000, "" };
	struct mh_err	err;

	CHECK(run(&s, SASL_XOAUTH2, "u", TOKEN, SASL_SECRET_OAUTH2,
	    &err) == -1);
	CHECK_CONTAINS(err.msg, "not JSON");
	CHECK(run(&s2, SASL_XOAUTH2, "u", TOKEN, SASL_SECRET_OAUTH2,
	    &err) == -1);
	CHECK_CONTAINS(err.msg, "not base64");
	CHECK_CONTAINS(s2.log, "SEND *\n");
}

/* A lost connection is the io's error; endless challenges end. */
static void
t_lost_and_endless(void)
{
	struct script	s = { { "+ " }, 0, 0, "" };
	struct script	s2 = { { "+ ", "+ ", "+ ", "+ ", "+ ", "+ ", "+ ",
	    "+ " }, 0, 1000, "" };
	struct mh_err	err;

	CHECK(run(&s, SASL_LOGIN, "u", SECRET, SASL_SECRET_PASSWORD,
	    &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK(run(&s2, SASL_PLAIN, "u", SECRET, SASL_SECRET_PASSWORD,
	    &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP || err.cls == MH_ERR_PROTO);
}

static enum sasl_mech
pick(enum sasl_auth auth, enum sasl_kind kind, bool native, const char *list,
    struct mh_err *err)
{
	struct sasl_offer	o;
	enum sasl_mech		m = SASL_NMECH;

	sasl_offer_init(&o);
	o.native = native;
	sasl_offer_add(&o, list);
	mh_err_clear(err);
	if (sasl_choose(auth, kind, &o, &m, err) == -1)
		return SASL_NMECH;
	return m;
}

static void
t_choose(void)
{
	struct mh_err	err;
	const enum sasl_kind P = SASL_SECRET_PASSWORD, T = SASL_SECRET_OAUTH2;

	CHECK(pick(SASL_AUTH_AUTO, P, true, "PLAIN", &err) == SASL_NATIVE);
	CHECK(pick(SASL_AUTH_AUTO, P, false, "LOGIN plain", &err) ==
	    SASL_PLAIN);
	CHECK(pick(SASL_AUTH_PASSWORD, P, false, "CRAM-MD5 LOGIN", &err) ==
	    SASL_LOGIN);
	CHECK(pick(SASL_AUTH_AUTO, T, true, "PLAIN XOAUTH2 OAUTHBEARER",
	    &err) == SASL_OAUTHBEARER);
	CHECK(pick(SASL_AUTH_AUTO, T, true, "PLAIN XOAUTH2", &err) ==
	    SASL_XOAUTH2);
	CHECK(pick(SASL_AUTH_XOAUTH2, T, false, "OAUTHBEARER XOAUTH2",
	    &err) == SASL_XOAUTH2);
	/* asked for OAUTHBEARER: no fallback to XOAUTH2 */
	CHECK(pick(SASL_AUTH_OAUTHBEARER, T, false, "XOAUTH2", &err) ==
	    SASL_NMECH);
	CHECK_STR(err.msg, "the server does not offer OAUTHBEARER (it offers: "
	    "XOAUTH2)");
	CHECK(pick(SASL_AUTH_AUTO, T, true, "PLAIN CRAM-MD5", &err) ==
	    SASL_NMECH);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_STR(err.msg, "the server does not offer OAUTHBEARER or XOAUTH2 "
	    "(it offers: PLAIN CRAM-MD5)");
	CHECK(pick(SASL_AUTH_AUTO, P, false, "XOAUTH2", &err) == SASL_NMECH);
	CHECK_CONTAINS(err.msg, "it offers: XOAUTH2");
	CHECK(pick(SASL_AUTH_AUTO, P, false, "", &err) == SASL_NMECH);
	CHECK_CONTAINS(err.msg, "it offers no SASL mechanism");
	/* a secret of the wrong kind */
	CHECK(pick(SASL_AUTH_XOAUTH2, P, false, "XOAUTH2", &err) ==
	    SASL_NMECH);
	CHECK_CONTAINS(err.msg, "auth = xoauth2 needs an OAuth2 token");
	CHECK(pick(SASL_AUTH_PASSWORD, T, true, "PLAIN", &err) == SASL_NMECH);
	CHECK_CONTAINS(err.msg, "auth = password needs a password");
}

static void
t_plaintext_policy(void)
{
	struct sasl_cred	c = { "joe", SECRET, SASL_SECRET_PASSWORD };
	struct mh_err		err;

	mh_err_clear(&err);
	CHECK(sasl_plaintext_check(true, false, &c, &err) == 0);
	CHECK(sasl_plaintext_check(false, true, &c, &err) == 0);
	CHECK(sasl_plaintext_check(false, false, &c, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.msg, "refusing to send the password for joe");
	CHECK(strstr(err.msg, SECRET) == NULL);
	c.kind = SASL_SECRET_OAUTH2;
	CHECK(sasl_plaintext_check(false, false, &c, &err) == -1);
	CHECK_CONTAINS(err.msg, "refusing to send the OAuth2 token");
}

static void
t_names(void)
{
	CHECK_STR(sasl_mech_name(SASL_PLAIN), "PLAIN");
	CHECK_STR(sasl_mech_name(SASL_LOGIN), "LOGIN");
	CHECK_STR(sasl_mech_name(SASL_XOAUTH2), "XOAUTH2");
	CHECK_STR(sasl_mech_name(SASL_OAUTHBEARER), "OAUTHBEARER");
	CHECK_STR(sasl_mech_name(SASL_NATIVE), "password");
}

/* Refusals by response code: busy or limited servers are temporary. */
static void
t_refusal_class(void)
{
	static const struct {
		const char		*reply;
		enum mh_err_class	 cls;
	} v[] = {
		{ "[LIMIT] too many connections", MH_ERR_TEMP },
		{ "NO [UNAVAILABLE] try later", MH_ERR_TEMP },
		{ "mhA NO [INUSE] locked", MH_ERR_TEMP },
		{ "[serverbug] oops", MH_ERR_TEMP },
		{ "[IN-USE] Mailbox is locked", MH_ERR_TEMP },
		{ "-ERR [SYS/TEMP] disk trouble", MH_ERR_TEMP },
		{ "[LOGIN-DELAY] wait", MH_ERR_TEMP },
		{ "[AUTHENTICATIONFAILED] bad", MH_ERR_AUTH },
		{ "[AUTHORIZATIONFAILED] no", MH_ERR_AUTH },
		{ "[EXPIRED] renew it", MH_ERR_AUTH },
		{ "[SYS/PERM] disabled", MH_ERR_AUTH },
		{ "[AUTH] bad", MH_ERR_AUTH },
		{ "wrong password, not [LIMIT]ed at all but far too far "
		    "away from the start of the text: [LIMIT]", MH_ERR_AUTH },
		{ "[LIMITED] not the code", MH_ERR_AUTH },
		{ "no code", MH_ERR_AUTH },
		{ "", MH_ERR_AUTH },
	};

	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		if (sasl_refusal_class(v[i].reply) != v[i].cls)
			fprintf(stderr, "%s\n", v[i].reply);
		CHECK(sasl_refusal_class(v[i].reply) == v[i].cls);
	}
	CHECK(sasl_refusal_class(NULL) == MH_ERR_AUTH);
}

int
main(void)
{
	RUN(t_plain);
	RUN(t_plain_no_ir);
	RUN(t_ir_too_long);
	RUN(t_plain_extra_challenge);
	RUN(t_login);
	RUN(t_xoauth2);
	RUN(t_xoauth2_two_step);
	RUN(t_xoauth2_error);
	RUN(t_oauthbearer);
	RUN(t_oauthbearer_escape);
	RUN(t_oauthbearer_error);
	RUN(t_bad_challenges);
	RUN(t_lost_and_endless);
	RUN(t_choose);
	RUN(t_plaintext_policy);
	RUN(t_names);
	RUN(t_refusal_class);
	return check_done();
}
