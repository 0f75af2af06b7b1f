/* libFuzzer target: the kernel-image parsers (format detection, bzImage header, ELF of both classes, Multiboot). */
#include <stddef.h>
#include <stdint.h>
#include "boot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bzimage_info bi;
	struct elf_info ei;
	struct multiboot_header mh;
	multiboot_find("fuzz", data, size, &mh);
	switch (image_detect(data, size)) {
	case IMAGE_BZIMAGE: bzimage_parse("fuzz", data, size, &bi); break;
	case IMAGE_ELF: elf_parse("fuzz", data, size, &ei); break;
	default: break;
	}
	return 0;
}
