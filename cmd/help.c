/*
 * lkvm help / lkvm version, and the texts made from the option tables:
 *   lkvm help --markdown run     the README's option table
 *   lkvm help --man              the man page, lkvm(1)
 *   lkvm help --bash-completion  the bash completion script
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "board.h"
#include "commands.h"
#include "device.h"
#include "options.h"
#include "run.h"
#include "util.h"
#include "vm.h"

/* Commands lkvm runs itself (a guest's init): no user's business. */
static bool internal(const struct command *c)
{
	return c->summary[0] == '(';
}

static void run_set(struct opt_set *set, struct vm_config *cfg)
{
	static char ctx[256];	/* the parsers are never called here */
	memset(set, 0, sizeof(*set));
	set->command = "run";
	set->usage = "lkvm run -k KERNEL [options]";
	run_options(set, cfg, ctx);
}

static void man_page(void)
{
	struct vm_config cfg = { 0 };
	struct opt_set set;
	run_set(&set, &cfg);
	printf(".TH LKVM 1 \"\" \"lkvm %s\" \"User Commands\"\n", LKVM_VERSION);
	printf(".SH NAME\nlkvm \\- a small standalone virtual machine monitor for KVM\n");
	printf(".SH SYNOPSIS\n.B lkvm run\n\\-k \\fIKERNEL\\fR [\\fIoptions\\fR]\n.br\n"
	       ".B lkvm\n\\fICOMMAND\\fR [\\fIarguments\\fR]\n");
	printf(".SH DESCRIPTION\nlkvm opens /dev/kvm, loads a Linux kernel (or a test image), runs one host "
	       "thread per virtual CPU and emulates the devices a guest needs itself: 8250 serial ports, i8042, "
	       "RTC, PIT, a PCI host bridge, and virtio-blk, virtio-net, virtio-9p, virtio-console, virtio-rng and "
	       "virtio-balloon over virtio-pci.\n");
	printf(".SH COMMANDS\n");
	for (int i = 0; i < nr_commands; i++)
		if (!internal(&commands[i]))
			printf(".TP\n.B %s\n%s\n", commands[i].name, commands[i].summary);
	printf(".SH OPTIONS OF lkvm run\n");
	opt_man(&set, stdout);
	printf(".SH EXIT STATUS\n0 when the guest powers off or resets; the value a guest writes to the "
	       "debug-exit port 0xf4; 1 for bad input or when the VM cannot be built; 2 for a guest crash "
	       "(triple fault, KVM internal error); 128+N after signal N.\n");
	printf(".SH FILES\n.TP\n$XDG_RUNTIME_DIR/lkvm/NAME.sock, ~/.lkvm/NAME.sock\ncontrol sockets of running VMs\n");
	printf(".SH SEE ALSO\nThe README and docs/ of the lkvm sources.\n");
	vm_config_free(&cfg);
}

static void bash_completion(void)
{
	struct vm_config cfg = { 0 };
	struct opt_set set;
	run_set(&set, &cfg);
	printf("# bash completion for lkvm (made by `lkvm help --bash-completion`)\n");
	printf("_lkvm() {\n\tlocal cur prev\n\tcur=${COMP_WORDS[COMP_CWORD]}\n\tprev=${COMP_WORDS[COMP_CWORD-1]}\n");
	printf("\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n\t\tCOMPREPLY=($(compgen -W \"");
	for (int i = 0; i < nr_commands; i++)
		if (!internal(&commands[i]))
			printf("%s%s", i ? " " : "", commands[i].name);
	printf("\" -- \"$cur\"))\n\t\treturn\n\tfi\n");
	printf("\tcase \"$prev\" in\n\t");
	char *words = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&words, &len);
	opt_words(&set, m, true);
	fclose(m);
	for (char *p = words; *p; p++)
		if (*p == ' ')
			*p = '|';
	if (words[0] && words[0] != '\n') {
		words[strcspn(words, "\n")] = 0;
		printf("%s) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n\t", words);
	}
	free(words);
	printf("esac\n\tcase \"${COMP_WORDS[1]}\" in\n\trun|sandbox) COMPREPLY=($(compgen -W \"");
	words = NULL;
	m = open_memstream(&words, &len);
	opt_words(&set, m, false);
	fclose(m);
	words[strcspn(words, "\n")] = 0;
	printf("%s\" -- \"$cur\")) ;;\n", words);
	free(words);
	printf("\tstop|pause|resume|debug|stat|balloon|gdb|snapshot|exec) COMPREPLY=($(compgen -W \"$(lkvm list 2>/dev/null | "
	       "awk 'NR>1{print $1}')\" -- \"$cur\")) ;;\n\tesac\n}\ncomplete -F _lkvm lkvm\n");
	vm_config_free(&cfg);
}

int cmd_help(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "--man")) {
		man_page();
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--bash-completion")) {
		bash_completion();
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "--markdown") && !strcmp(argv[2], "run")) {
		struct vm_config cfg = { 0 };
		struct opt_set set;
		run_set(&set, &cfg);
		opt_markdown(&set, stdout);
		vm_config_free(&cfg);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "-h") && strcmp(argv[1], "--help")) {
		fprintf(stderr, "lkvm help: unknown argument '%s' (--man, --bash-completion, --markdown run)\n", argv[1]);
		return EXIT_USAGE;
	}
	printf("usage: lkvm COMMAND [OPTIONS]\n\ncommands:\n");
	for (int i = 0; i < nr_commands; i++)
		printf("  %-12s %s\n", commands[i].name, commands[i].summary);
	printf("\n'lkvm COMMAND --help' describes each command's options.\n");
	return 0;
}

int cmd_version(int argc, char **argv)
{
	printf("lkvm version %s\ndevices:", LKVM_VERSION);
	for (int i = 0; pc_board.devices[i]; i++)
		printf(" %s", pc_board.devices[i]->name);
	printf("\n");
	return 0;
}
