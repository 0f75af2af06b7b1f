/*
 * Command-line options as tables. Each command, the board and each device
 * type declare their options once (name, argument, one line of help, a
 * parser); the command line, `--help`, the README's option table, the man
 * page and bash completion all come from the same tables.
 */
#ifndef LKVM_OPTIONS_H
#define LKVM_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

/*
 * parse(own, arg): own is the part of the configuration the option's owner
 * keeps (a device type's, the board's, the command's); arg is NULL for a
 * flag. Returns 0, or -1 with err set (a message naming the problem; the
 * command prefixes the option).
 */
struct opt {
	const char *name;	/* long name, "disk" for --disk */
	char short_name;	/* 'd' for -d, or 0 */
	const char *arg;	/* "PATH[,ro]"; NULL for a flag; "[=ADDR]" for an optional argument */
	const char *help;	/* one line */
	int (*parse)(void *own, const char *arg);
	unsigned flags;
};
#define OPT_HIDDEN 1		/* parsed, not listed (internal use) */
#define OPT_COMPLETE_FILE 2	/* bash completion: the argument is a file name */

/* The options of one owner, with where its parser writes. */
struct opt_group {
	const char *title;	/* "", or a heading like "devices" */
	const struct opt *opts;	/* terminated by an entry with name NULL */
	void *own;
};

#define OPT_MAX_GROUPS 48
struct opt_set {
	const char *command;	/* "run", for messages and usage */
	const char *usage;	/* "lkvm run -k KERNEL [options]" */
	int nr;
	struct opt_group groups[OPT_MAX_GROUPS];
	/* Optional: told of every option parsed, in order (snapshots keep a VM's options). */
	void (*seen)(void *ctx, const struct opt *o, const char *arg);
	void *seen_ctx;
};

void opt_set_add(struct opt_set *set, const char *title, const struct opt *opts, void *own);
/*
 * Parse argv[1..] (getopt_long, stops at "--" and, with stop_at_arg, at the
 * first non-option); *next is the index of the first argument left. -1 with
 * err set ("--disk x: ..." or "unknown option '--x'"). -h/--help is left to
 * the caller: it returns 1 then.
 */
int opt_parse(const struct opt_set *set, int argc, char **argv, bool stop_at_arg, int *next);
/*
 * A copy of (the first n bytes of) an option's text that lives as long as the
 * process: parsed options hold pointers into it. Kept reachable, never freed.
 */
char *opt_strndup(const char *s, size_t n);
char *opt_strdup(const char *s);

/* What --help prints. */
void opt_usage(const struct opt_set *set, FILE *out);
/* The README's table: | option | meaning |. */
void opt_markdown(const struct opt_set *set, FILE *out);
/* The OPTIONS section of the man page (roff). */
void opt_man(const struct opt_set *set, FILE *out);
/* Every option name, for bash completion: "-k --kernel ...", and those taking files. */
void opt_words(const struct opt_set *set, FILE *out, bool files_only);

#endif
