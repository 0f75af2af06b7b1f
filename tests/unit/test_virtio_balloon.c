/*
 * virtio-balloon driven as a guest's driver would: the target moves with
 * balloon_adjust() (what `lkvm balloon` calls) and raises a config interrupt;
 * inflated pages leave the process (mincore says so, they read back zero),
 * deflated ones are usable again; bad PFNs and odd lengths are harmless.
 */
#include <sys/mman.h>
#include "devices.h"
#include "test.h"
#include "virtio_fixture.h"
#include "vm.h"

#define PAGES 0x200000	/* the guest pages we balloon */
#define DESC1 0x104000	/* deflate queue */
#define AVAIL1 0x105000
#define USED1 0x106000

static bool resident(uint64_t gpa)
{
	unsigned char v = 0;
	mincore(guest_ptr(&vm.mem, gpa, 4096), 4096, &v);
	return v & 1;
}

/* PFN list at BUF on queue qi (0 inflate, 1 deflate); the device answers during the kick. */
static int send_pfns(int qi, const uint32_t *pfn, int n, uint32_t len)
{
	uint64_t dt = qi ? DESC1 : DESC, av = qi ? AVAIL1 : AVAIL, used = qi ? USED1 : USED;
	for (int i = 0; i < n; i++)
		put_le32(g(BUF + 4 * i), pfn[i]);
	uint8_t *d = g(dt);
	put_le64(d, BUF); put_le32(d + 8, len); put_le16(d + 12, 0); put_le16(d + 14, 0);
	uint16_t before = get_le16(g(used + 2));
	post_on(qi, av, 0);
	return get_le16(g(used + 2)) == (uint16_t)(before + 1) ? 0 : -1;
}

TEST(balloon)
{
	setup_vm();
	CHECK_EQ(device_type_option(&vm.cfg, &virtio_balloon_device, "balloon", NULL), 0);
	CHECK_EQ(device_type_create(&vm, &virtio_balloon_device), 0);
	struct pci_dev *p = dev_at(1);
	CHECK_EQ(pci_cfg_read(p, 0x02, 2), 0x1040 + 5);	/* modern virtio-balloon */
	CHECK_EQ(driver_init(p, 1ULL << VIRTIO_F_VERSION_1), 0);
	setup_queue(1, DESC1, AVAIL1, USED1);	/* the deflate queue */
	CHECK_EQ(rd(VPCI_DEVICE, 4), 0);

	/* lkvm balloon NAME inflate 2: target 512 pages, config interrupt (INTx, ISR bit 1). */
	intx_level = 0;
	CHECK_EQ(balloon_adjust(&vm, 2), 0);
	CHECK_EQ(rd(VPCI_DEVICE, 4), 512);
	CHECK_EQ(intx_level, 1);
	CHECK_EQ(rd(VPCI_ISR, 1), 2);

	/* Three touched pages handed over: released to the host, zero when touched again. */
	memset(g(PAGES), 0xa5, 3 * 4096);
	CHECK(resident(PAGES) && resident(PAGES + 8192));
	uint32_t pfns[] = { PAGES >> 12, (PAGES >> 12) + 1, (PAGES >> 12) + 2, 0xfffff0 /* not RAM */ };
	CHECK_EQ(send_pfns(0, pfns, 4, 16), 0);
	CHECK(!resident(PAGES) && !resident(PAGES + 4096) && !resident(PAGES + 8192));
	CHECK_EQ(*g(PAGES + 100), 0);
	struct balloon_stats st;
	CHECK_EQ(balloon_stats(&vm, &st), 0);
	CHECK_EQ(st.inflated, 4);
	CHECK_EQ(st.target_pages, 512);

	/* The driver reports what it holds in `actual`; num_pages is ours alone. */
	wr(VPCI_DEVICE + 4, 3, 4);
	wr(VPCI_DEVICE, 99999, 4);
	balloon_stats(&vm, &st);
	CHECK_EQ(st.actual_pages, 3);
	CHECK_EQ(rd(VPCI_DEVICE, 4), 512);

	/* Deflate gives the pages back: the guest writes them again. */
	CHECK_EQ(send_pfns(1, pfns, 3, 12), 0);
	balloon_stats(&vm, &st);
	CHECK_EQ(st.deflated, 3);
	memset(g(PAGES), 0x11, 4096);
	CHECK_EQ(*g(PAGES + 4095), 0x11);

	/* The target stays within [0, RAM]. */
	CHECK_EQ(balloon_adjust(&vm, -100), 0);
	CHECK_EQ(rd(VPCI_DEVICE, 4), 0);
	CHECK_EQ(balloon_adjust(&vm, 1000000), 0);
	CHECK_EQ(rd(VPCI_DEVICE, 4), MiB(16) >> 12);

	/* A length that is not a whole PFN, and a write-only buffer: harmless. */
	CHECK_EQ(send_pfns(0, pfns, 1, 6), 0);
	balloon_stats(&vm, &st);
	CHECK_EQ(st.inflated, 5);
	CHECK_EQ(device_find(&vm, "virtio-balloon", 0) != NULL, 1);
}

TEST(no_balloon)
{
	struct vm v2;
	fake_vm_init(&v2, &fake_irq_recorder);
	struct balloon_stats st;
	CHECK_EQ(device_type_create(&v2, &virtio_balloon_device), 0);
	CHECK_EQ(balloon_adjust(&v2, 1), -1);
	CHECK(strstr(err_msg(), "--balloon") != NULL);
	CHECK_EQ(balloon_stats(&v2, &st), -1);
}

TEST_MAIN()
