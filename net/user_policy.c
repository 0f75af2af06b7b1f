/*
 * The user-mode network's sandbox policy (policy=sandbox): where a guest's
 * connections may go on the host's behalf. Without it (lkvm run's default,
 * as QEMU's slirp) 10.0.2.2 is the host's 127.0.0.1 and every other address
 * is dialled. With it the internet stays open, but what only the host can
 * reach is closed: its loopback (10.0.2.2 and 127/8), 0/8, link-local
 * 169.254/16 (cloud metadata at 169.254.169.254), the private ranges 10/8,
 * 172.16/12, 192.168/16 and the shared 100.64/10; unless host_loopback=on
 * opens the loopback, or an allow=HOST[/BITS][:PORT] rule names the address.
 * The user-mode DNS at 10.0.2.3 (port 53 to the host's resolver) stays.
 * A refused TCP SYN gets RST at once, a refused UDP datagram or ping is
 * dropped; each is counted (lkvm stat: netN_refused). The stack is IPv4
 * only, so IPv6 (fc00::/7, fe80::/10 ...) is never reached from a guest.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net_user.h"
#include "user_int.h"
#include "util.h"

struct range { uint32_t net; int bits; };

static const struct range closed[] = {
	{ 0x00000000, 8 },	/* "this network" */
	{ 0x0a000000, 8 },	/* 10/8 */
	{ 0x64400000, 10 },	/* 100.64/10, carrier-grade NAT, cloud-internal */
	{ 0x7f000000, 8 },	/* loopback */
	{ 0xa9fe0000, 16 },	/* 169.254/16 link-local, instance metadata */
	{ 0xac100000, 12 },	/* 172.16/12 */
	{ 0xc0a80000, 16 },	/* 192.168/16 */
};

static bool in_range(uint32_t ip, uint32_t net, int bits)
{
	uint32_t mask = bits ? ~0u << (32 - bits) : 0;
	return (ip & mask) == (net & mask);
}

bool nu_policy_allows(struct net_user *nu, uint32_t ip, uint16_t port)
{
	if (!nu->policy_sandbox)
		return true;
	for (int i = 0; i < nu->nr_allow; i++) {
		const struct net_user_rule *r = &nu->allow[i];
		if (in_range(ip, r->ip, r->bits) && (!r->port || r->port == port))
			return true;
	}
	if (nu->host_loopback && in_range(ip, 0x7f000000, 8))
		return true;
	for (size_t i = 0; i < sizeof(closed) / sizeof(closed[0]); i++)
		if (in_range(ip, closed[i].net, closed[i].bits)) {
			__atomic_add_fetch(&nu->st.policy_refused, 1, __ATOMIC_RELAXED);
			return false;
		}
	return true;
}

int net_user_parse_rule(const char *s, struct net_user_rule *r)
{
	char host[256];
	memset(r, 0, sizeof(*r));
	r->bits = 32;
	if (strlen(s) >= sizeof(host))
		return err_set("'%s': too long", s);
	strcpy(host, s);
	char *colon = strrchr(host, ':'), *slash;
	if (colon) {
		char *end;
		unsigned long p = strtoul(colon + 1, &end, 10);
		if (*end || end == colon + 1 || !p || p > 65535)
			return err_set("'%s': the port must be 1-65535", s);
		r->port = p;
		*colon = 0;
	}
	if ((slash = strchr(host, '/'))) {
		char *end;
		unsigned long b = strtoul(slash + 1, &end, 10);
		if (*end || end == slash + 1 || b > 32)
			return err_set("'%s': the prefix length must be 0-32", s);
		r->bits = b;
		*slash = 0;
	}
	if (!*host)
		return err_set("'%s': needs HOST[/BITS][:PORT]", s);
	struct in_addr a;
	if (inet_pton(AF_INET, host, &a) != 1) {
		struct addrinfo hints = { .ai_family = AF_INET }, *res = NULL;
		if (slash || getaddrinfo(host, NULL, &hints, &res) || !res)
			return err_set("'%s': not an IPv4 address or a name that resolves to one", s);
		a = ((struct sockaddr_in *)res->ai_addr)->sin_addr;	/* the first address */
		freeaddrinfo(res);
	}
	r->ip = ntohl(a.s_addr);
	if (r->ip == NU_GW && r->bits == 32)
		r->ip = 0x7f000001;	/* the guest's name for the host's 127.0.0.1 */
	return 0;
}
