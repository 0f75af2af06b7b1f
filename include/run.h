/* The runner (cmd/run.c), for the commands built on it (lkvm sandbox). */
#ifndef LKVM_RUN_H
#define LKVM_RUN_H

#include <stdbool.h>

struct opt_set;
struct vm_config;
struct snap_reader;

/* `lkvm run`'s options into set: the runner's own (written to ctx), the board's and every device's. */
void run_options(struct opt_set *set, struct vm_config *cfg, void *ctx);
/* Build, run and destroy one VM; its exit status (or 1 when it could not be built). */
int run_vm(struct vm_config *cfg);
/* lkvm run on a command line; from a snapshot when restore is given (guest RAM in ram_file). */
int run_command(int argc, char **argv, struct snap_reader *restore, const char *ram_file);
/* cmd/restore.c: lkvm run --restore DIR [--clone]; args are the other options given, "--name=value". */
int run_restore(const char *dir, bool clone, int nr_args, char **args);

#endif
