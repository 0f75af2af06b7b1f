/* Control protocol: the JSON subset and request handling without a VM running. */
#include "test.h"
#include "control.h"
#include "util.h"
#include "vm.h"

TEST(json)
{
	char s[32];
	long long n;
	CHECK(json_valid_object("{}"));
	CHECK(json_valid_object(" {\"cmd\" : \"info\", \"v\":1 } "));
	CHECK(!json_valid_object("{"));
	CHECK(!json_valid_object("garbage"));
	CHECK(!json_valid_object("{\"cmd\":}"));
	CHECK(!json_valid_object("{\"cmd\":\"x\"} trailing"));
	CHECK(!json_valid_object("{\"cmd\":\"unterminated}"));
	CHECK(!json_valid_object(""));
	CHECK(json_get_str("{\"a\":1,\"cmd\":\"st\\\"op\"}", "cmd", s, sizeof(s)));
	CHECK(!strcmp(s, "st\"op"));
	CHECK(!json_get_str("{\"cmd\":5}", "cmd", s, sizeof(s)));
	CHECK(json_get_num("{\"mib\":-12}", "mib", &n));
	CHECK_EQ(n, -12);
	CHECK(!json_get_num("{\"mib\":\"12\"}", "mib", &n));
	/* Truncation never overflows the output buffer. */
	char small[4];
	CHECK(json_get_str("{\"cmd\":\"abcdefgh\"}", "cmd", small, sizeof(small)));
	CHECK(!strcmp(small, "abc"));
}

TEST(handle)
{
	struct vm vm;
	memset(&vm, 0, sizeof(vm));
	vm.vm_fd = -1;	/* no KVM: control_handle reads counters and state only */
	vm.mem.ram_size = MiB(128);
	vm.exit_efd = -1;
	struct control *c = control_new(&vm, "test");
	char out[4096];
	control_handle(c, "{\"cmd\":\"info\"}", out, sizeof(out));
	CHECK(strstr(out, "\"ok\":true") && strstr(out, "\"mem_mib\":128") && strstr(out, "\"state\":\"running\""));
	control_handle(c, "{\"v\":1,\"cmd\":\"stat\"}", out, sizeof(out));
	CHECK(strstr(out, "\"pio_writes\":0") != NULL);
	control_handle(c, "not json", out, sizeof(out));
	CHECK(strstr(out, "\"ok\":false") != NULL);
	control_handle(c, "{\"cmd\":\"frobnicate\"}", out, sizeof(out));
	CHECK(strstr(out, "unknown command") != NULL);
	control_handle(c, "{\"v\":2,\"cmd\":\"info\"}", out, sizeof(out));
	CHECK(strstr(out, "version 2 not supported") != NULL);
	control_handle(c, "{\"cmd\":\"stop\"}", out, sizeof(out));
	CHECK(strstr(out, "\"ok\":true") != NULL);
	CHECK_EQ(vm.exit_reason, VM_POWEROFF);
	CHECK_EQ(vm.exit_status, 0);
	/* Replies are always one line, however small the buffer. */
	control_handle(c, "{\"cmd\":\"info\"}", out, 16);
	CHECK(strlen(out) < 16);
	control_free(c);
}

TEST_MAIN()
