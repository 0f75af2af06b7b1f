/*
 * DHCP server (RFC 2131, options from RFC 2132) for the one guest: it always
 * gets 10.0.2.15, whatever its hardware address, with 10.0.2.2 as router and
 * server and 10.0.2.3 as DNS.
 */
#include <string.h>
#include "user_int.h"
#include "util.h"

#define BOOTP_FIXED	236	/* op .. file */
#define DHCP_MIN	(BOOTP_FIXED + 4)
#define BOOTP_MIN_REPLY	300	/* old clients want at least a BOOTP-sized message */
#define LEASE_SECONDS	86400

enum { DISCOVER = 1, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM };

static const uint8_t cookie[4] = { 99, 130, 83, 99 };
static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

struct dhcp_req {
	int type;
	uint32_t requested, server;
	bool has_requested, has_server;
};

/* Options are untrusted TLVs: stop at the first one that runs past the end. */
static void parse_options(const uint8_t *o, size_t len, struct dhcp_req *r)
{
	size_t i = 0;
	while (i < len) {
		uint8_t code = o[i];
		if (code == 0) {
			i++;
			continue;
		}
		if (code == 255 || i + 1 >= len || i + 2 + o[i + 1] > len)
			break;
		uint8_t n = o[i + 1];
		const uint8_t *v = o + i + 2;
		if (code == 53 && n >= 1)
			r->type = v[0];
		else if (code == 50 && n >= 4)
			r->requested = be32(v), r->has_requested = true;
		else if (code == 54 && n >= 4)
			r->server = be32(v), r->has_server = true;
		i += 2 + n;
	}
}

static uint8_t *opt_u32(uint8_t *p, uint8_t code, uint32_t v)
{
	p[0] = code;
	p[1] = 4;
	wbe32(p + 2, v);
	return p + 6;
}

static void reply(struct net_user *nu, const uint8_t *req, int type, bool inform)
{
	uint8_t *m = nu_l4(nu) + UDP_HLEN;
	uint32_t ciaddr = be32(req + 12);
	memset(m, 0, BOOTP_MIN_REPLY);
	m[0] = 2;			/* BOOTREPLY */
	m[1] = 1;
	m[2] = 6;
	memcpy(m + 4, req + 4, 4);	/* xid */
	memcpy(m + 10, req + 10, 2);	/* flags */
	if (type != NAK && !inform)
		wbe32(m + 16, NU_GUEST);	/* yiaddr */
	if (type != NAK)
		memcpy(m + 12, req + 12, 4);	/* ciaddr */
	wbe32(m + 20, NU_GW);		/* siaddr */
	memcpy(m + 28, req + 28, 16);	/* chaddr */
	memcpy(m + BOOTP_FIXED, cookie, 4);
	uint8_t *o = m + DHCP_MIN;
	*o++ = 53;
	*o++ = 1;
	*o++ = type;
	o = opt_u32(o, 54, NU_GW);
	if (type != NAK) {
		if (!inform)	/* INFORM: the client has its address, configure the rest */
			o = opt_u32(o, 51, LEASE_SECONDS);
		o = opt_u32(o, 1, NU_MASK);
		o = opt_u32(o, 3, NU_GW);
		o = opt_u32(o, 6, NU_DNS);
		o = opt_u32(o, 28, NU_BCAST);
	}
	*o++ = 255;
	size_t len = MAX((size_t)(o - m), (size_t)BOOTP_MIN_REPLY);

	/* RFC 2131 4.1: NAKs and broadcast-flag requests go to everyone; renewals to ciaddr. */
	bool bcast = type == NAK || (!ciaddr && (be16(req + 10) & 0x8000));
	uint32_t dst = bcast ? 0xffffffffu : ciaddr ? ciaddr : NU_GUEST;
	const uint8_t *mac = bcast ? bcast_mac : req + 28;	/* chaddr (hlen checked: 6) */
	nu_send_udp(nu, mac, NU_GW, 67, dst, 68, len);
}

void nu_dhcp_input(struct net_user *nu, const uint8_t *msg, size_t len)
{
	if (len < DHCP_MIN || msg[0] != 1 || msg[1] != 1 || msg[2] != 6 || memcmp(msg + BOOTP_FIXED, cookie, 4))
		return;
	struct dhcp_req r = { 0 };
	parse_options(msg + DHCP_MIN, len - DHCP_MIN, &r);
	uint32_t ciaddr = be32(msg + 12);
	switch (r.type) {
	case DISCOVER:
		reply(nu, msg, OFFER, false);
		break;
	case REQUEST: {
		if (r.has_server && r.server != NU_GW)
			return;		/* the client picked another server */
		/* SELECTING and INIT-REBOOT name the address in option 50; RENEWING in ciaddr. */
		uint32_t want = r.has_requested ? r.requested : ciaddr;
		reply(nu, msg, want == NU_GUEST ? ACK : NAK, false);
		break;
	}
	case INFORM:
		if (ciaddr)
			reply(nu, msg, ACK, true);
		break;
	}
	/* DECLINE and RELEASE need no answer: the address stays the guest's. */
}
