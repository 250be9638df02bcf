/*
 * oauth2.c -- the [oauth2:NAME] section: its keys, the provider presets
 * and its checks (see config.h, struct cfg_oauth2).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/internal.h"

#define O(f)	offsetof(struct cfg_oauth2, f)

static const struct choice provider_choices[] = {
	{ "google", CFG_OAUTH2_GOOGLE }, { "microsoft", CFG_OAUTH2_MICROSOFT },
	{ "custom", CFG_OAUTH2_CUSTOM }, { NULL, 0 } };

const struct keydef cfg_oauth2_keys[] = {
	{ "provider", K_ENUM, O(provider), 0, 0, provider_choices, 0, 0 },
	{ "client_id", K_STR, O(client_id), 0, 0, NULL, 0, 0 },
	{ "client_secret", K_SECRET, O(client_secret.password), 0, 0, NULL,
	    0, 0 },
	{ "client_secret_command", K_STR, O(client_secret.command), 0, 0,
	    NULL, 0, 0 },
	{ "client_secret_file", K_PATH, O(client_secret.file), 0, 0, NULL,
	    0, 0 },
	{ "tenant", K_STR, O(tenant), 0, 0, NULL, 0, 0 },
	{ "scope", K_STR, O(scope), 0, 0, NULL, 0, 0 },
	{ "auth_url", K_STR, O(auth_url), 0, 0, NULL, 0, 0 },
	{ "token_url", K_STR, O(token_url), 0, 0, NULL, 0, 0 },
	{ "device_url", K_STR, O(device_url), 0, 0, NULL, 0, 0 },
	{ "ca_file", K_PATH, O(ca_file), 0, 0, NULL, 0, 0 },
	{ "login_hint", K_STR, O(login_hint), 0, 0, NULL, 0, 0 },
	{ "token_command", K_STR, O(token_command), 0, 0, NULL, 0, 0 },
	{ NULL, 0, 0, 0, 0, NULL, 0, 0 }
};

#define MS_BASE		"https://login.microsoftonline.com/"
#define MS_SCOPE	"https://outlook.office.com/IMAP.AccessAsUser.All " \
			"https://outlook.office.com/POP.AccessAsUser.All " \
			"https://outlook.office.com/SMTP.Send offline_access"

static void
set_default(char **field, char *value)
{
	if (*field == NULL)
		*field = value;
	else
		free(value);
}

static void
fill_preset(struct cfg_oauth2 *o)
{
	switch (o->provider) {
	case CFG_OAUTH2_GOOGLE:
		set_default(&o->auth_url, xstrdup(
		    "https://accounts.google.com/o/oauth2/v2/auth"));
		set_default(&o->token_url, xstrdup(
		    "https://oauth2.googleapis.com/token"));
		set_default(&o->device_url, xstrdup(
		    "https://oauth2.googleapis.com/device/code"));
		set_default(&o->scope, xstrdup("https://mail.google.com/"));
		break;
	case CFG_OAUTH2_MICROSOFT:
		set_default(&o->tenant, xstrdup("common"));
		set_default(&o->auth_url, xasprintf(MS_BASE
		    "%s/oauth2/v2.0/authorize", o->tenant));
		set_default(&o->token_url, xasprintf(MS_BASE
		    "%s/oauth2/v2.0/token", o->tenant));
		set_default(&o->device_url, xasprintf(MS_BASE
		    "%s/oauth2/v2.0/devicecode", o->tenant));
		set_default(&o->scope, xstrdup(MS_SCOPE));
		break;
	case CFG_OAUTH2_NONE:
	case CFG_OAUTH2_CUSTOM:
		break;
	}
}

/*
 * https://..., or http:// to a loopback host (tests, local helpers).
 * The authority (what follows "//" up to the path) may not hold a user
 * name: "http://localhost:80@example.com/" is example.com.  The same
 * rule as net/http.c's http_url_allowed, which checks again with
 * libcurl's own parser before each request.
 */
bool
cfg_url_ok(const char *u)
{
	static const char *const loop[] = { "127.0.0.1", "[::1]",
	    "localhost" };
	const char	*a, *e, *p;
	bool		 https;
	size_t		 i;

	if (strpbrk(u, " \t\r\n") != NULL)
		return false;
	if (strncasecmp(u, "https://", 8) == 0) {
		https = true;
		a = u + 8;
	} else if (strncasecmp(u, "http://", 7) == 0) {
		https = false;
		a = u + 7;
	} else
		return false;
	e = a + strcspn(a, "/?#");
	if (e == a || memchr(a, '@', (size_t)(e - a)) != NULL ||
	    memchr(a, '\\', (size_t)(e - a)) != NULL)
		return false;
	if (https)
		return true;
	/* the host: up to the port, if any */
	if (*a == '[') {
		if ((p = memchr(a, ']', (size_t)(e - a))) == NULL)
			return false;
		p++;
	} else
		p = a + strcspn(a, ":/?#");
	if (p != e && *p != ':')
		return false;
	for (i = 0; i < sizeof loop / sizeof loop[0]; i++)
		if ((size_t)(p - a) == strlen(loop[i]) &&
		    strncasecmp(a, loop[i], (size_t)(p - a)) == 0)
			return true;
	return false;
}

static bool
tenant_ok(const char *t)
{
	for (; *t != '\0'; t++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789.-_", *t) == NULL)
			return false;
	return true;
}

static void
check_token_command(struct load *l, const struct psect *s)
{
	const struct keydef	*k;
	int			 ln;

	for (k = cfg_oauth2_keys; k->name != NULL; k++) {
		if (strcmp(k->name, "token_command") == 0)
			continue;
		if ((ln = cfg_keyline(s, k->name)) != 0)
			cfg_err(l, abs(ln), "'%s' has no effect with "
			    "token_command (line %d), which prints the access "
			    "token itself", k->name,
			    abs(cfg_keyline(s, "token_command")));
	}
}

static void
check_urls(struct load *l, const struct psect *s, struct cfg_oauth2 *o)
{
	static const char *const names[] = { "auth_url", "token_url",
	    "device_url" };
	const char	*v[3];
	int		 i;

	v[0] = o->auth_url;
	v[1] = o->token_url;
	v[2] = o->device_url;
	for (i = 0; i < 3; i++)
		if (v[i] != NULL && cfg_keyline(s, names[i]) > 0 &&
		    !cfg_url_ok(v[i]))
			cfg_err(l, cfg_keyline(s, names[i]), "bad value '%s' "
			    "for '%s': expected an https:// URL (http:// only "
			    "to 127.0.0.1, [::1] or localhost)", v[i],
			    names[i]);
}

void
cfg_oauth2_check(struct load *l, const struct psect *s, struct cfg_oauth2 *o)
{
	int	n = 0, last = 0, ln, hdr = o->line;

	if (o->token_command != NULL) {
		check_token_command(l, s);
		return;
	}
	if (cfg_keyline(s, "provider") == 0)
		cfg_err(l, hdr, "[oauth2:%s] is missing required key "
		    "'provider' (google, microsoft or custom; or set "
		    "token_command)", o->name);
	if (cfg_keyline(s, "client_id") == 0)
		cfg_err(l, hdr, "[oauth2:%s] is missing required key "
		    "'client_id'", o->name);
	if ((ln = abs(cfg_keyline(s, "client_secret"))) != 0)
		n++, last = ln;
	if ((ln = abs(cfg_keyline(s, "client_secret_command"))) != 0)
		n++, last = ln > last ? ln : last;
	if ((ln = abs(cfg_keyline(s, "client_secret_file"))) != 0)
		n++, last = ln > last ? ln : last;
	if (n > 1)
		cfg_err(l, last, "set at most one of client_secret, "
		    "client_secret_command and client_secret_file");
	if (o->tenant != NULL && o->provider != CFG_OAUTH2_MICROSOFT &&
	    cfg_keyline(s, "provider") > 0)
		cfg_err(l, abs(cfg_keyline(s, "tenant")), "'tenant' is only "
		    "for provider = microsoft");
	if (o->tenant != NULL && !tenant_ok(o->tenant))
		cfg_err(l, abs(cfg_keyline(s, "tenant")), "bad value '%s' for "
		    "'tenant': expected common, organizations, consumers, a "
		    "domain or a tenant id", o->tenant);
	check_urls(l, s, o);
	if (cfg_keyline(s, "provider") <= 0)
		return;
	fill_preset(o);
	if (o->provider != CFG_OAUTH2_CUSTOM)
		return;
	if (o->token_url == NULL && cfg_keyline(s, "token_url") == 0)
		cfg_err(l, hdr, "[oauth2:%s] with provider = custom needs "
		    "'token_url'", o->name);
	if (o->auth_url == NULL && o->device_url == NULL &&
	    cfg_keyline(s, "auth_url") == 0 &&
	    cfg_keyline(s, "device_url") == 0)
		cfg_err(l, hdr, "[oauth2:%s] with provider = custom needs "
		    "'auth_url' or 'device_url' (or both)", o->name);
	if (o->scope == NULL && cfg_keyline(s, "scope") == 0)
		cfg_err(l, hdr, "[oauth2:%s] with provider = custom needs "
		    "'scope'", o->name);
}

const struct cfg_oauth2 *
cfg_oauth2_resolve(struct load *l, const struct config *cfg, const char *name,
    int line)
{
	const struct cfg_oauth2	*o;
	char			*known = xstrdup(""), *next;
	size_t			 i;

	if ((o = config_oauth2(cfg, name)) != NULL) {
		free(known);
		return o;
	}
	for (i = 0; i < cfg->noauth2s; i++) {
		next = xasprintf("%s%s%s", known, i ? ", " : "",
		    cfg->oauth2s[i].name);
		free(known);
		known = next;
	}
	if (cfg->noauth2s > 0)
		cfg_err(l, line, "unknown oauth2 '%s' (no [oauth2:%s] section; "
		    "known: %s)", name, name, known);
	else
		cfg_err(l, line, "unknown oauth2 '%s' (no [oauth2:%s] section; "
		    "there is none)", name, name);
	free(known);
	return NULL;
}

void
cfg_oauth2_free(struct cfg_oauth2 *o)
{
	free(o->name);
	free(o->client_id);
	secret_free(o->client_secret.password);
	free(o->client_secret.command);
	free(o->client_secret.file);
	free(o->tenant);
	free(o->scope);
	free(o->auth_url);
	free(o->token_url);
	free(o->device_url);
	free(o->ca_file);
	free(o->login_hint);
	free(o->token_command);
}
