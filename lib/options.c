/*
 * Option tables to getopt_long and back out as text: --help, the README's
 * table, the man page and the words bash completes. See include/options.h.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "options.h"
#include "util.h"

/* ---- strings that live as long as the process ---- */

struct kept {
	struct kept *next;
	char s[];
};
static struct kept *kept_strings;	/* reachable on purpose: parsed options point into them */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

char *opt_strndup(const char *s, size_t n)
{
	n = strnlen(s, n);
	struct kept *k = xcalloc(1, sizeof(*k) + n + 1);
	memcpy(k->s, s, n);
	pthread_mutex_lock(&kept_lock);
	k->next = kept_strings;
	kept_strings = k;
	pthread_mutex_unlock(&kept_lock);
	return k->s;
}

char *opt_strdup(const char *s)
{
	return opt_strndup(s, strlen(s));
}

/* ---- the set ---- */

void opt_set_add(struct opt_set *set, const char *title, const struct opt *opts, void *own)
{
	if (!opts || !opts->name)
		return;
	if (set->nr == OPT_MAX_GROUPS)
		abort();	/* fixed by lkvm's own tables, never by input */
	set->groups[set->nr++] = (struct opt_group){ title ? title : "", opts, own };
}

#define MAX_OPTS 256

struct flat {
	const struct opt *o;
	void *own;
};

static int flatten(const struct opt_set *set, struct flat *f)
{
	int n = 0;
	for (int g = 0; g < set->nr; g++)
		for (const struct opt *o = set->groups[g].opts; o->name && n < MAX_OPTS; o++)
			f[n++] = (struct flat){ o, set->groups[g].own };
	return n;
}

static bool optional_arg(const struct opt *o)
{
	return o->arg && o->arg[0] == '[';
}

int opt_parse(const struct opt_set *set, int argc, char **argv, bool stop_at_arg, int *next)
{
	struct flat f[MAX_OPTS];
	int n = flatten(set, f);
	struct option *lo = xcalloc(n + 2, sizeof(*lo));
	char shorts[2 * MAX_OPTS + 8] = "";
	size_t sl = 0;
	shorts[sl++] = stop_at_arg ? '+' : '-';	/* '-': arguments come back in order as 1 */
	shorts[sl++] = ':';
	for (int i = 0; i < n; i++) {
		lo[i] = (struct option){ f[i].o->name, !f[i].o->arg ? no_argument : optional_arg(f[i].o) ?
				optional_argument : required_argument, NULL, 1000 + i };
		if (f[i].o->short_name) {
			shorts[sl++] = f[i].o->short_name;
			if (f[i].o->arg)
				shorts[sl++] = ':';
		}
	}
	lo[n] = (struct option){ "help", no_argument, NULL, 'h' };
	shorts[sl++] = 'h';
	shorts[sl] = 0;
	int ret = 0, c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		if (c == 'h') {
			ret = 1;
			break;
		}
		if (c == 1) {	/* a plain argument where none is taken */
			ret = err_set("unexpected argument '%s' (see 'lkvm %s --help')", optarg, set->command);
			break;
		}
		if (c == ':') {
			ret = err_set("option '%s' needs an argument", argv[optind - 1]);
			break;
		}
		if (c == '?') {
			ret = err_set("unknown option '%s' (see 'lkvm %s --help')", argv[optind - 1], set->command);
			break;
		}
		int i = c >= 1000 ? c - 1000 : -1;
		for (int k = 0; i < 0 && k < n; k++)
			if (f[k].o->short_name == c)
				i = k;
		if (i < 0 || i >= n) {
			ret = err_set("unknown option '%s'", argv[optind - 1]);
			break;
		}
		if (f[i].o->parse(f[i].own, optarg) < 0) {
			/* The option as it was typed: "-m 0", "--mem 0", "--mem=0", "-m0". */
			char msg[1024];
			snprintf(msg, sizeof(msg), "%s", err_msg());
			bool separate = optarg && optind >= 2 && argv[optind - 1] == optarg;
			if (separate)
				ret = err_set("%s %s: %s", argv[optind - 2], optarg, msg);
			else
				ret = err_set("%s: %s", argv[optind - 1], msg);
			break;
		}
		if (set->seen)
			set->seen(set->seen_ctx, f[i].o, optarg);
	}
	free(lo);
	*next = optind;
	return ret;
}

/* "-d, --disk PATH" / "    --rng" / "    --flat[=ADDR]" */
static void name_of(const struct opt *o, char *buf, size_t len)
{
	char s[8] = "    ";
	if (o->short_name)
		snprintf(s, sizeof(s), "-%c, ", o->short_name);
	snprintf(buf, len, "%s--%s%s%s", s, o->name, o->arg && !optional_arg(o) ? " " : "", o->arg ? o->arg : "");
}

void opt_usage(const struct opt_set *set, FILE *out)
{
	fprintf(out, "usage: %s\n", set->usage);
	for (int g = 0; g < set->nr; g++) {
		const char *t = set->groups[g].title;
		if (t[0] && (g == 0 || strcmp(t, set->groups[g - 1].title)))
			fprintf(out, "%s:\n", t);
		for (const struct opt *o = set->groups[g].opts; o->name; o++) {
			if (o->flags & OPT_HIDDEN)
				continue;
			char name[256];
			name_of(o, name, sizeof(name));
			if (strlen(name) <= 26)
				fprintf(out, "  %-26s %s\n", name, o->help);
			else
				fprintf(out, "  %s\n  %-26s %s\n", name, "", o->help);
		}
	}
	fprintf(out, "  -h, --help                 this text\n");
}

/* Markdown: backslash the table's '|' and keep the rest as written. */
static void md(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputc('\\', out);
		fputc(*s, out);
	}
}

void opt_markdown(const struct opt_set *set, FILE *out)
{
	fprintf(out, "| option | meaning |\n|---|---|\n");
	for (int g = 0; g < set->nr; g++) {
		for (const struct opt *o = set->groups[g].opts; o->name; o++) {
			if (o->flags & OPT_HIDDEN)
				continue;
			fputs("| `", out);
			if (o->short_name)
				fprintf(out, "-%c, ", o->short_name);
			fprintf(out, "--%s", o->name);
			if (o->arg) {
				fputs(optional_arg(o) ? "" : " ", out);
				md(out, o->arg);
			}
			fputs("` | ", out);
			md(out, o->help);
			fputs(" |\n", out);
		}
	}
}

/* roff: a leading '.' or '\'' would be a request; backslashes are escapes. */
static void roff(FILE *out, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", out);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", out);
		else if (*s == '-')
			fputs("\\-", out);
		else
			fputc(*s, out);
	}
}

void opt_man(const struct opt_set *set, FILE *out)
{
	for (int g = 0; g < set->nr; g++) {
		for (const struct opt *o = set->groups[g].opts; o->name; o++) {
			if (o->flags & OPT_HIDDEN)
				continue;
			fputs(".TP\n", out);
			if (o->short_name)
				fprintf(out, "\\fB\\-%c\\fR, ", o->short_name);
			fprintf(out, "\\fB\\-\\-");
			roff(out, o->name);
			fputs("\\fR", out);
			if (o->arg) {
				fputs(optional_arg(o) ? "\\fI" : " \\fI", out);
				roff(out, o->arg);
				fputs("\\fR", out);
			}
			fputs("\n", out);
			roff(out, o->help);
			fputs("\n", out);
		}
	}
}

void opt_words(const struct opt_set *set, FILE *out, bool files_only)
{
	const char *sep = "";
	for (int g = 0; g < set->nr; g++) {
		for (const struct opt *o = set->groups[g].opts; o->name; o++) {
			if ((o->flags & OPT_HIDDEN) || (files_only && !(o->flags & OPT_COMPLETE_FILE)))
				continue;
			if (o->short_name) {
				fprintf(out, "%s-%c", sep, o->short_name);
				sep = " ";
			}
			fprintf(out, "%s--%s", sep, o->name);
			sep = " ";
		}
	}
	if (!files_only)
		fprintf(out, "%s--help", sep);
	fputc('\n', out);
}
