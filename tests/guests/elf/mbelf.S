/* mb32 as an ELF Multiboot kernel: no address fields, the loader reads its program headers. */
#define MB_ELF
#include "mb32.S"
