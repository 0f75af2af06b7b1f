/*
 * virtio-net: receive queue 0, transmit queue 1, MAC and link status in the
 * config space, mergeable receive buffers. Offloads are offered only where
 * the backend can honour them (tap with a vnet header passes them through).
 * Each NIC has one I/O thread: vCPU kicks reach it through an eventfd, and it
 * polls the backend's fds, so a backend never needs locking of its own.
 */
#include <errno.h>
#include <linux/virtio_ids.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "device.h"
#include "devices.h"
#include "json.h"
#include "net.h"
#include "net_user.h"
#include "snapshot.h"
#include "options.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

enum { Q_RX, Q_TX };
#define MAX_POLL 64
#define RX_MAX_CHAINS 64	/* mergeable buffers one frame may take */
#define TX_BATCH 128	/* transmit chains per turn of the I/O loop */

struct vnet {
	struct virtio_dev dev;
	uint8_t config[10];	/* mac[6], le16 status, le16 max_virtqueue_pairs */
	struct net_backend *be;
	int kick_fd;
	bool rx_starved;	/* the last frame found no buffers: wait for an RX kick */
	uint64_t features_seen;
	pthread_t thread;
	uint8_t txbuf[VNET_HDR_LEN];
	bool stopping;		/* stop(): the thread leaves at its next turn */
	bool running;
	bool owns_be;		/* made by net_create: freed with the device */
	/* vnet_rx's chains for one frame (~135 KB: kept here, not on the I/O thread's stack). */
	struct virtq_chain rx_chains[RX_MAX_CHAINS];
	uint64_t rx_frames, tx_frames, rx_dropped;
};

static bool mergeable(struct vnet *n) { return n->dev.driver_features >> VIRTIO_NET_F_MRG_RXBUF & 1; }

int vnet_rx(struct vnet *n, const uint8_t *hdr, const void *frame, size_t len)
{
	return vnet_rx_iov(n, hdr, &(struct iovec){ (void *)frame, len }, 1, len);
}

int vnet_rx_iov(struct vnet *n, const uint8_t *hdr, const struct iovec *frame, int nf, size_t len)
{
	struct virtio_dev *d = &n->dev;
	uint8_t h[VNET_HDR_LEN] = { 0 };
	if (hdr)
		memcpy(h, hdr, VNET_HDR_LEN);
	size_t total = VNET_HDR_LEN + len;
	struct virtq_chain *c = n->rx_chains;	/* only the NIC's I/O thread receives */
	uint16_t heads[RX_MAX_CHAINS];
	uint32_t lens[RX_MAX_CHAINS];
	int k = 0, max = mergeable(n) ? RX_MAX_CHAINS : 1;
	uint64_t room = 0;
	while (room < total && k < max) {
		int r = virtq_pop(d, Q_RX, &c[k]);
		if (r < 0)
			return 1;	/* a broken ring: the device waits for a reset */
		if (r == 0)
			break;
		if (!c[k].in_len) {	/* nothing writable: the driver's mistake; all returned unused */
			for (int i = 0; i <= k; i++) {
				heads[i] = c[i].head;
				lens[i] = 0;
			}
			virtq_push_n(d, Q_RX, heads, lens, k + 1);
			n->rx_dropped++;
			return 1;
		}
		room += c[k].in_len;
		k++;
	}
	if (room < total) {
		if (k < max && k < d->q[Q_RX].size) {	/* not enough buffers yet: hand them back and wait */
			virtq_unpop(d, Q_RX, k);
			n->rx_starved = true;
			return -1;
		}
		/* The driver's buffers can never hold it: drop the frame, not the buffers. */
		virtq_unpop(d, Q_RX, k);
		n->rx_dropped++;
		return 1;
	}
	put_le16(h + 10, k);	/* num_buffers */
	size_t off = 0;
	for (int i = 0; i < k; i++) {
		struct iovec *iov = c[i].iov + c[i].nout;
		size_t w = 0, cap = MIN(c[i].in_len, total - off);
		if (off < VNET_HDR_LEN)
			w = buf_to_iov(iov, c[i].nin, 0, h + off, MIN(VNET_HDR_LEN - off, cap));
		/* The frame's pieces that land in this chain, one copy each. */
		struct iovec part[VNET_RX_FRAME_IOV];
		size_t got;
		int np = w < cap ? iov_sub(frame, nf, off + w - VNET_HDR_LEN, cap - w, part, VNET_RX_FRAME_IOV, &got) : 0;
		for (int j = 0; j < np; j++)
			w += buf_to_iov(iov, c[i].nin, w, part[j].iov_base, part[j].iov_len);
		heads[i] = c[i].head;
		lens[i] = w;
		off += w;
	}
	virtq_push_n(d, Q_RX, heads, lens, k);
	n->rx_frames++;
	return 0;
}

/*
 * Chains on the transmit queue go to the backend, header split off; at most
 * TX_BATCH a turn, so a guest that keeps the queue full cannot starve the
 * receive side (a tap's queue would overflow and drop the host's ACKs).
 * True if chains were left for the next turn.
 */
static bool drain_tx_batch(struct vnet *n)
{
	struct virtq_chain c;
	for (int done = 0;; done++) {
		if (done == TX_BATCH)
			return true;
		if (virtq_pop(&n->dev, Q_TX, &c) != 1)
			return false;
		uint8_t hdr[VNET_HDR_LEN] = { 0 };
		size_t got = iov_to_buf(c.iov, c.nout, 0, hdr, VNET_HDR_LEN);
		if (got == VNET_HDR_LEN && c.out_len > VNET_HDR_LEN && c.out_len - VNET_HDR_LEN <= VNET_MAX_FRAME) {
			struct iovec iov[VIRTQ_MAX_SEGS];
			int m = 0;
			size_t skip = VNET_HDR_LEN;
			for (int i = 0; i < c.nout; i++) {
				if (skip >= c.iov[i].iov_len) {
					skip -= c.iov[i].iov_len;
					continue;
				}
				iov[m++] = (struct iovec){ (uint8_t *)c.iov[i].iov_base + skip, c.iov[i].iov_len - skip };
				skip = 0;
			}
			n->be->ops->tx(n->be->priv, hdr, iov, m, c.out_len - VNET_HDR_LEN);
			n->tx_frames++;
		}
		virtq_push(&n->dev, Q_TX, c.head, 0);
	}
}

/* The batch ends: a backend that holds frames back (tap, merging segments) sends them now. */
static bool drain_tx(struct vnet *n)
{
	bool left = drain_tx_batch(n);
	if (n->be->ops->tx_done)
		n->be->ops->tx_done(n->be->priv);
	return left;
}

static void *io_thread(void *arg)
{
	struct vnet *n = arg;
	struct net_backend *be = n->be;
	pthread_setname_np(pthread_self(), "lkvm-net");
	bool tx_left = false;
	for (;;) {
		struct pollfd fds[MAX_POLL] = { { .fd = n->kick_fd, .events = POLLIN } };
		int nfds = 1 + be->ops->poll_fds(be->priv, fds + 1, MAX_POLL - 1, !n->rx_starved);
		int timeout = tx_left ? 0 : be->ops->timeout_ms ? be->ops->timeout_ms(be->priv) : -1;
		if (poll(fds, nfds, timeout) < 0 && errno != EINTR)
			break;
		if (__atomic_load_n(&n->stopping, __ATOMIC_ACQUIRE))
			break;
		if (fds[0].revents & POLLIN) {
			uint64_t v;
			if (read(n->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			n->rx_starved = false;
		}
		if (n->dev.driver_features != n->features_seen && (n->dev.status & VIRTIO_STATUS_DRIVER_OK)) {
			n->features_seen = n->dev.driver_features;
			if (be->ops->features)
				be->ops->features(be->priv, n->features_seen);
		}
		tx_left = (n->dev.status & VIRTIO_STATUS_DRIVER_OK) && drain_tx(n);
		be->ops->poll_events(be->priv, fds + 1, nfds - 1);
	}
	return NULL;
}

static void net_notify(struct virtio_dev *d, int qi)
{
	struct vnet *n = d->priv;
	uint64_t one = 1;
	if (write(n->kick_fd, &one, sizeof(one)) < 0)
		pr_debug("virtio-net: kick lost");
}

static void net_reset(struct virtio_dev *d)
{
	struct vnet *n = d->priv;
	n->rx_starved = false;
}

static const struct virtio_ops net_ops = { .notify = net_notify, .reset = net_reset };

static int net_start(struct device *dev)
{
	struct vnet *n = dev->priv;
	if (thread_start(&n->thread, io_thread, n))
		return err_set("virtio-net: cannot start its I/O thread");
	n->running = true;
	return 0;
}

static void net_stop(struct device *dev)
{
	struct vnet *n = dev->priv;
	if (!n->running)
		return;
	__atomic_store_n(&n->stopping, true, __ATOMIC_RELEASE);
	uint64_t one = 1;
	if (write(n->kick_fd, &one, sizeof(one)) < 0) {}
	pthread_join(n->thread, NULL);
	n->running = false;
	n->stopping = false;
}

static void net_destroy(struct device *dev)
{
	struct vnet *n = dev->priv;
	if (n->dev.vm)
		virtio_pci_unregister(&n->dev);
	if (n->be && n->be->ops && n->be->ops->close)
		n->be->ops->close(n->be->priv);
	if (n->owns_be)
		free(n->be);
	if (n->kick_fd >= 0)
		close(n->kick_fd);
	free(n);
}

static void net_stat_members(struct device *dev, struct json_writer *j)
{
	struct vnet *n = dev->priv;
	char key[64];
	snprintf(key, sizeof(key), "net%d_rx_frames", dev->index);
	json_u64(j, key, __atomic_load_n(&n->rx_frames, __ATOMIC_RELAXED));
	snprintf(key, sizeof(key), "net%d_tx_frames", dev->index);
	json_u64(j, key, __atomic_load_n(&n->tx_frames, __ATOMIC_RELAXED));
	snprintf(key, sizeof(key), "net%d_rx_dropped", dev->index);
	json_u64(j, key, __atomic_load_n(&n->rx_dropped, __ATOMIC_RELAXED));
	if (n->be && n->be->ops && n->be->ops->tx_done) {	/* tap: segments it merged */
		snprintf(key, sizeof(key), "net%d_tx_merged", dev->index);
		json_u64(j, key, __atomic_load_n(&n->be->tx_merged, __ATOMIC_RELAXED));
	}
	if (n->be && n->be->ops && n->be->ops->stats) {	/* user mode: its TCP/UDP stack */
		struct net_user_stats st;
		uint64_t backlog_dropped;
		n->be->ops->stats(n->be->priv, &st, &backlog_dropped);
		const struct { const char *name; uint64_t v; } f[] = {
			{ "refused", st.policy_refused }, { "tcp_conns", st.tcp_conns }, { "udp_flows", st.udp_flows },
			{ "tcp_rst_sent", st.tcp_rst_sent }, { "tcp_retransmits", st.tcp_retransmits },
			{ "tcp_host_full", st.tcp_host_full }, { "tcp_gso_sent", st.tcp_gso_sent },
			{ "stack_dropped", st.rx_dropped }, { "backlog_dropped", backlog_dropped },
		};
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			snprintf(key, sizeof(key), "net%d_%s", dev->index, f[i].name);
			json_u64(j, key, f[i].v);
		}
	}
}

/*
 * Snapshots: the transport, then what a user-mode backend knows of the guest
 * (its MAC, its TCP connections: reset after a restore). A restored NIC may
 * have another backend (tap for user, or the reverse): the guest keeps its
 * driver, the new backend starts fresh, a tap device is opened anew.
 */
static int net_save(struct device *dev, struct snap_writer *w)
{
	struct vnet *n = dev->priv;
	virtio_pci_save(&n->dev, w);
	if (!n->be->ops->get_state) {
		snap_u8(w, 0);
		return 0;
	}
	struct net_user_state *st = xcalloc(1, sizeof(*st));
	n->be->ops->get_state(n->be->priv, st);
	snap_u8(w, 1);
	snap_bytes(w, st->guest_mac, 6);
	snap_u32(w, st->nr_flows);
	for (unsigned i = 0; i < st->nr_flows; i++) {
		snap_u32(w, st->flows[i].rip);
		snap_u16(w, st->flows[i].rport);
		snap_u16(w, st->flows[i].gport);
		snap_u32(w, st->flows[i].seq);
		snap_u32(w, st->flows[i].ack);
	}
	free(st);
	return 0;
}

static int net_load(struct device *dev, struct snap_reader *r)
{
	struct vnet *n = dev->priv;
	if (virtio_pci_load(&n->dev, r) < 0)
		return -1;
	if (!snap_get_bool(r))
		return 0;
	struct net_user_state *st = xcalloc(1, sizeof(*st));
	snap_get_bytes(r, st->guest_mac, 6);
	st->nr_flows = snap_get_u32(r);
	if (st->nr_flows > NET_USER_MAX_TCP) {
		unsigned nr = st->nr_flows;
		free(st);
		return snap_bad(r, "%u TCP connections, more than the stack tracks", nr);
	}
	for (unsigned i = 0; i < st->nr_flows; i++) {
		st->flows[i].rip = snap_get_u32(r);
		st->flows[i].rport = snap_get_u16(r);
		st->flows[i].gport = snap_get_u16(r);
		st->flows[i].seq = snap_get_u32(r);
		st->flows[i].ack = snap_get_u32(r);
	}
	if (!snap_failed(r) && n->be->ops->set_state)
		n->be->ops->set_state(n->be->priv, st);
	free(st);
	n->rx_starved = false;
	return 0;
}

static const struct device_ops net_dev_ops = {
	.start = net_start, .stop = net_stop, .destroy = net_destroy, .stats = net_stat_members,
	.save = net_save, .load = net_load, .snap_version = 1,
};

/* owns_be: be was allocated for this NIC and goes with it. */
static struct vnet *vnet_add(struct vm *vm, const struct net_opt *o, struct net_backend *be, bool owns_be)
{
	struct vnet *n = xcalloc(1, sizeof(*n));
	n->be = be;
	n->owns_be = owns_be;
	be->owner = n;
	device_add(vm, "virtio-net", &net_dev_ops, n);
	n->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->kick_fd < 0) {
		err_errno("virtio-net: eventfd");
		return NULL;
	}
	memcpy(n->config, o->mac, 6);
	put_le16(n->config + 6, VIRTIO_NET_S_LINK_UP);
	put_le16(n->config + 8, 1);	/* max_virtqueue_pairs */
	struct virtio_dev *d = &n->dev;
	d->name = "virtio-net";
	d->device_id = VIRTIO_ID_NET;
	d->nr_queues = 2;
	d->config = n->config;
	d->config_len = sizeof(n->config);
	d->features = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
		      be->offloads;
	d->ops = &net_ops;
	d->priv = n;
	if (virtio_pci_register(vm, d) < 0)
		return NULL;
	return n;
}

struct vnet *virtio_net_add(struct vm *vm, const struct net_opt *o, struct net_backend *be)
{
	return vnet_add(vm, o, be, false);
}

/* ---- options: --network mode=user|tap|none[,tapif=NAME][,guest_mac=MAC][,hostfwd=...][,restrict=on] ---- */

#define MAX_NICS 4
struct net_opts {
	int n;
	struct net_opt nic[MAX_NICS];
};

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || v < 1 || v > 65535)
		return -1;
	*port = v;
	return end - s;
}

/* hostfwd=tcp:HOSTPORT-:GUESTPORT (or udp:) */
static int parse_hostfwd(struct net_opt *n, const char *v)
{
	if (n->nr_fwds == 8)
		return err_set("too many hostfwd= (at most 8): %s", v);
	bool udp = !strncmp(v, "udp:", 4);
	if (!udp && strncmp(v, "tcp:", 4))
		return err_set("hostfwd must be tcp:HOSTPORT-:GUESTPORT or udp:...: '%s'", v);
	uint16_t hp = 0, gp = 0;
	int k = parse_port(v + 4, &hp);
	if (k < 0 || strncmp(v + 4 + k, "-:", 2) || parse_port(v + 6 + k, &gp) != (int)strlen(v + 6 + k))
		return err_set("hostfwd must be tcp:HOSTPORT-:GUESTPORT (ports 1-65535): '%s'", v);
	n->fwds[n->nr_fwds].udp = udp;
	n->fwds[n->nr_fwds].host_port = hp;
	n->fwds[n->nr_fwds].guest_port = gp;
	n->nr_fwds++;
	return 0;
}

static int parse_mac(struct net_opt *n, const char *v)
{
	unsigned m[6];
	char end;
	if (sscanf(v, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &end) != 6 ||
	    m[0] > 255 || m[1] > 255 || m[2] > 255 || m[3] > 255 || m[4] > 255 || m[5] > 255 || (m[0] & 1))
		return err_set("guest_mac must be a unicast MAC like 52:54:00:12:34:56: '%s'", v);
	for (int i = 0; i < 6; i++)
		n->mac[i] = m[i];
	n->mac_set = true;
	return 0;
}

static int parse_network(void *own, const char *arg)
{
	struct net_opts *all = own;
	if (all->n == MAX_NICS)
		return err_set("too many NICs (at most %d)", MAX_NICS);
	struct net_opt *n = &all->nic[all->n];
	memset(n, 0, sizeof(*n));
	char *copy = opt_strdup(arg), *save, *tok;
	bool mode = false;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *v = strchr(tok, '=');
		if (!v)
			return err_set("options are KEY=VALUE: '%s'", tok);
		*v++ = 0;
		int r = 0;
		if (!strcmp(tok, "mode")) {
			mode = true;
			if (!strcmp(v, "user")) n->mode = NET_USER;
			else if (!strcmp(v, "tap")) n->mode = NET_TAP;
			else if (!strcmp(v, "none")) n->mode = NET_NONE;
			else r = err_set("mode must be user, tap or none: '%s'", v);
		} else if (!strcmp(tok, "tapif")) {
			if (!*v || strlen(v) >= 16)
				r = err_set("tapif must be an interface name of 1-15 characters: '%s'", v);
			n->tapif = v;
		} else if (!strcmp(tok, "merge")) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				r = err_set("merge must be on or off: '%s'", v);
			n->no_merge = !strcmp(v, "off");
		} else if (!strcmp(tok, "guest_mac")) {
			r = parse_mac(n, v);
		} else if (!strcmp(tok, "hostfwd")) {
			r = parse_hostfwd(n, v);
		} else if (!strcmp(tok, "restrict")) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				r = err_set("restrict must be on or off: '%s'", v);
			n->restricted = !strcmp(v, "on");
		} else if (!strcmp(tok, "policy")) {
			if (strcmp(v, "sandbox") && strcmp(v, "open"))
				r = err_set("policy must be sandbox or open: '%s'", v);
			n->policy_sandbox = !strcmp(v, "sandbox");
		} else if (!strcmp(tok, "host_loopback")) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				r = err_set("host_loopback must be on or off: '%s'", v);
			n->host_loopback = !strcmp(v, "on");
		} else if (!strcmp(tok, "allow")) {
			if (n->nr_allow == NET_USER_MAX_ALLOW)
				r = err_set("at most %d allow= rules", NET_USER_MAX_ALLOW);
			else if (!(r = net_user_parse_rule(v, &n->allow[n->nr_allow])))
				n->nr_allow++;
		} else {
			r = err_set("unknown option '%s' (mode, tapif, merge, guest_mac, hostfwd, restrict, policy, "
				    "host_loopback, allow)", tok);
		}
		if (r < 0)
			return -1;
	}
	if (!mode)
		return err_set("needs mode=user, mode=tap or mode=none");
	if (((n->tapif || n->no_merge) && n->mode != NET_TAP) || ((n->nr_fwds || n->restricted) && n->mode != NET_USER))
		return err_set("tapif= and merge= go with mode=tap; hostfwd= and restrict= with mode=user");
	if ((n->policy_sandbox || n->host_loopback || n->nr_allow) && n->mode != NET_USER)
		return err_set("policy=, host_loopback= and allow= go with mode=user");
	if ((n->host_loopback || n->nr_allow) && !n->policy_sandbox)
		return err_set("host_loopback= and allow= go with policy=sandbox");
	all->n++;
	return 0;
}

static const struct opt net_opts[] = {
	{ "network", 0, "mode=user|tap|none[,tapif=NAME][,merge=off][,guest_mac=MAC][,hostfwd=tcp:HOSTPORT-:GUESTPORT][,restrict=on]"
	  "[,policy=sandbox[,host_loopback=on][,allow=HOST[/BITS][:PORT]]...]",
	  "virtio-net NIC, repeatable (default: one in user mode)", parse_network },
	{ 0 }
};

/* Like kvmtool: networking without set-up. */
static int net_check(struct vm_config *cfg, void *own)
{
	struct net_opts *all = own;
	if (all->n == 0) {
		all->nic[0].mode = NET_USER;
		all->n = 1;
	}
	return 0;
}

static int net_create(struct vm *vm, void *own)
{
	struct net_opts *all = own;
	for (int i = 0; i < all->n; i++) {
		struct net_opt o = all->nic[i];
		if (o.mode == NET_NONE)
			continue;
		if (!o.mac_set) {	/* 52:54:00:12:34:56, :57, ... (locally administered) */
			static const uint8_t base[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
			memcpy(o.mac, base, 6);
			o.mac[5] += i;
		}
		struct net_backend *be = xcalloc(1, sizeof(*be));
		int r = o.mode == NET_TAP ? tap_open(&o, be) : user_net_open(&o, be);
		if (r < 0) {
			free(be);
			return -1;
		}
		if (!vnet_add(vm, &o, be, true))
			return -1;
	}
	return 0;
}

const struct device_type virtio_net_device = {
	.name = "virtio-net", .opts = net_opts, .cfg_size = sizeof(struct net_opts), .check = net_check,
	.create = net_create,
};
