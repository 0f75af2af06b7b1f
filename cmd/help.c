/* lkvm help / lkvm version. */
#include <stdio.h>
#include "commands.h"
#include "devices.h"

int cmd_help(int argc, char **argv)
{
	printf("usage: lkvm COMMAND [OPTIONS]\n\ncommands:\n");
	for (int i = 0; i < nr_commands; i++)
		printf("  %-10s %s\n", commands[i].name, commands[i].summary);
	printf("\n'lkvm COMMAND --help' describes each command's options.\n");
	return 0;
}

int cmd_version(int argc, char **argv)
{
	printf("lkvm version %s\ndevices:", LKVM_VERSION);
	for (int i = 0; i < nr_device_inits; i++)
		printf(" %s", device_inits[i].name);
	printf("\n");
	return 0;
}
