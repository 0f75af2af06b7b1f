/* The runner (cmd/run.c), for the commands built on it (lkvm sandbox). */
#ifndef LKVM_RUN_H
#define LKVM_RUN_H

struct opt_set;
struct vm_config;

/* `lkvm run`'s options into set: the runner's own (written to ctx), the board's and every device's. */
void run_options(struct opt_set *set, struct vm_config *cfg, void *ctx);
/* Build, run and destroy one VM; its exit status (or 1 when it could not be built). */
int run_vm(struct vm_config *cfg);

#endif
