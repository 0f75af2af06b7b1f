/*
 * A small 9P2000.L client for the unit tests, the fuzzer and the benchmarks:
 * messages are built into c->req, sent by c->xfer (p9_handle() on the server
 * c->srv unless a caller supplies its own transport, e.g. a virtqueue), and
 * the reply in c->resp is read field by field. Nothing is checked beyond the
 * header: callers assert what they expect.
 *
 * p9c_rpc() returns 0 for the matching R-message, the errno of an Rlerror,
 * or a negative number when the reply is malformed (-1 size, -2 tag, -3 type,
 * -4 an Rlerror of the wrong length).
 */
#ifndef LKVM_TESTS_P9_CLIENT_H
#define LKVM_TESTS_P9_CLIENT_H

#include <stdint.h>
#include <string.h>
#include "p9.h"
#include "util.h"

/* Each user takes what it needs. */
#define P9C static __attribute__((unused))

struct p9c {
	uint8_t *req, *resp;	/* the caller's buffers */
	size_t resp_cap;	/* room for a reply */
	size_t len;		/* bytes of the message being built */
	size_t resplen, rpos;	/* the last reply, and the read position in it */
	uint16_t tag;
	struct p9_server *srv;
	/* Send req[0, len) and leave the reply in resp; its length. NULL: p9_handle(srv). */
	size_t (*xfer)(struct p9c *c, size_t len);
	void *ctx;		/* the transport's own */
};

struct p9c_qid { uint8_t type; uint32_t version; uint64_t path; };

struct p9c_attr {
	struct p9c_qid qid;
	uint32_t mode, uid, gid;
	uint64_t nlink, rdev, size, atime, mtime;
};

/* ---- building a message ---- */

P9C void p9c_msg(struct p9c *c, uint8_t type)
{
	c->req[4] = type;
	c->tag = c->tag % 0xfff0 + 1;
	put_le16(c->req + 5, type == P9_TVERSION ? P9_NOTAG : c->tag);
	c->len = P9_HDR_SIZE;
}
P9C void p9c_8(struct p9c *c, uint8_t v) { c->req[c->len++] = v; }
P9C void p9c_16(struct p9c *c, uint16_t v) { put_le16(c->req + c->len, v); c->len += 2; }
P9C void p9c_32(struct p9c *c, uint32_t v) { put_le32(c->req + c->len, v); c->len += 4; }
P9C void p9c_64(struct p9c *c, uint64_t v) { put_le64(c->req + c->len, v); c->len += 8; }
P9C void p9c_bytes(struct p9c *c, const void *p, size_t n) { memcpy(c->req + c->len, p, n); c->len += n; }
P9C void p9c_strn(struct p9c *c, const char *s, size_t n) { p9c_16(c, n); p9c_bytes(c, s, n); }
P9C void p9c_str(struct p9c *c, const char *s) { p9c_strn(c, s, strlen(s)); }

/* ---- reading the reply ---- */

P9C uint8_t p9c_r8(struct p9c *c) { return c->resp[c->rpos++]; }
P9C uint16_t p9c_r16(struct p9c *c) { c->rpos += 2; return get_le16(c->resp + c->rpos - 2); }
P9C uint32_t p9c_r32(struct p9c *c) { c->rpos += 4; return get_le32(c->resp + c->rpos - 4); }
P9C uint64_t p9c_r64(struct p9c *c) { c->rpos += 8; return get_le64(c->resp + c->rpos - 8); }
P9C void p9c_rqid(struct p9c *c, struct p9c_qid *q)
{
	q->type = p9c_r8(c);
	q->version = p9c_r32(c);
	q->path = p9c_r64(c);
}
P9C void p9c_rstr(struct p9c *c, char *out, size_t cap)
{
	uint16_t n = p9c_r16(c);
	size_t k = MIN((size_t)n, cap - 1);
	memcpy(out, c->resp + c->rpos, k);
	out[k] = 0;
	c->rpos += n;
}

/* ---- one exchange ---- */

/* Send the first len bytes of the message (its size field says c->len). */
P9C int p9c_rpc_len(struct p9c *c, size_t len)
{
	put_le32(c->req, c->len);
	c->resplen = c->xfer ? c->xfer(c, len) : p9_handle(c->srv, c->req, len, c->resp, c->resp_cap);
	c->rpos = P9_HDR_SIZE;
	if (c->resplen < P9_HDR_SIZE || get_le32(c->resp) != c->resplen)
		return -1;
	if (len >= P9_HDR_SIZE && get_le16(c->resp + 5) != get_le16(c->req + 5))
		return -2;
	if (c->resp[4] == P9_RLERROR)
		return c->resplen == 11 ? (int)get_le32(c->resp + 7) : -4;
	return c->resp[4] == c->req[4] + 1 ? 0 : -3;
}
P9C int p9c_rpc(struct p9c *c) { return p9c_rpc_len(c, c->len); }

/* ---- the messages ---- */

P9C int p9c_version(struct p9c *c, uint32_t msize, const char *v, uint32_t *got_msize, char *got_v, size_t vcap)
{
	p9c_msg(c, P9_TVERSION); p9c_32(c, msize); p9c_str(c, v);
	int e = p9c_rpc(c);
	if (!e) {
		*got_msize = p9c_r32(c);
		p9c_rstr(c, got_v, vcap);
	}
	return e;
}

P9C int p9c_attach(struct p9c *c, uint32_t fid, uint32_t uid, struct p9c_qid *q)
{
	p9c_msg(c, P9_TATTACH); p9c_32(c, fid); p9c_32(c, P9_NOFID); p9c_str(c, "root"); p9c_str(c, ""); p9c_32(c, uid);
	int e = p9c_rpc(c);
	if (!e && q)
		p9c_rqid(c, q);
	return e;
}

/* Twalk of n names; *nwqid (-1 on an error) and the qids walked. */
P9C int p9c_walk(struct p9c *c, uint32_t fid, uint32_t newfid, int n, const char *const *names,
		    struct p9c_qid *qids, int *nwqid)
{
	p9c_msg(c, P9_TWALK); p9c_32(c, fid); p9c_32(c, newfid); p9c_16(c, n);
	for (int i = 0; i < n; i++)
		p9c_str(c, names[i]);
	int e = p9c_rpc(c);
	*nwqid = -1;
	if (!e) {
		*nwqid = p9c_r16(c);
		for (int i = 0; i < *nwqid && i < P9_MAX_WALK; i++) {
			struct p9c_qid q;
			p9c_rqid(c, qids ? &qids[i] : &q);
		}
	}
	return e;
}

/* A walk of one name (or none: a clone) that must go all the way. */
P9C int p9c_walk1(struct p9c *c, uint32_t fid, uint32_t newfid, const char *name, struct p9c_qid *q)
{
	struct p9c_qid qs[1];
	int n;
	int e = p9c_walk(c, fid, newfid, name ? 1 : 0, &name, qs, &n);
	if (!e && name && n != 1)
		return ENOENT;
	if (!e && q && name)
		*q = qs[0];
	return e;
}

P9C int p9c_lopen(struct p9c *c, uint32_t fid, uint32_t flags)
{
	p9c_msg(c, P9_TLOPEN); p9c_32(c, fid); p9c_32(c, flags);
	return p9c_rpc(c);
}

P9C int p9c_lcreate(struct p9c *c, uint32_t fid, const char *name, uint32_t flags, uint32_t mode, uint32_t gid,
		       struct p9c_qid *q)
{
	p9c_msg(c, P9_TLCREATE); p9c_32(c, fid); p9c_str(c, name); p9c_32(c, flags); p9c_32(c, mode); p9c_32(c, gid);
	int e = p9c_rpc(c);
	if (!e && q)
		p9c_rqid(c, q);
	return e;
}

/* Bytes read (into buf when not NULL), or -errno. */
P9C long p9c_read(struct p9c *c, uint32_t fid, uint64_t off, uint32_t count, void *buf)
{
	p9c_msg(c, P9_TREAD); p9c_32(c, fid); p9c_64(c, off); p9c_32(c, count);
	int e = p9c_rpc(c);
	if (e)
		return -e;
	uint32_t n = p9c_r32(c);
	if (buf)
		memcpy(buf, c->resp + c->rpos, n);
	return n;
}

/* Bytes written, or -errno. data NULL: whatever already is at req + 23 (benchmarks). */
P9C long p9c_write(struct p9c *c, uint32_t fid, uint64_t off, const void *data, uint32_t count)
{
	p9c_msg(c, P9_TWRITE); p9c_32(c, fid); p9c_64(c, off); p9c_32(c, count);
	if (data)
		p9c_bytes(c, data, count);
	else
		c->len += count;
	int e = p9c_rpc(c);
	return e ? -e : (long)p9c_r32(c);
}

P9C int p9c_getattr(struct p9c *c, uint32_t fid, struct p9c_attr *a)
{
	p9c_msg(c, P9_TGETATTR); p9c_32(c, fid); p9c_64(c, P9_GETATTR_BASIC);
	int e = p9c_rpc(c);
	if (e)
		return e;
	if (p9c_r64(c) != P9_GETATTR_BASIC)
		return -5;
	p9c_rqid(c, &a->qid);
	a->mode = p9c_r32(c); a->uid = p9c_r32(c); a->gid = p9c_r32(c);
	a->nlink = p9c_r64(c); a->rdev = p9c_r64(c); a->size = p9c_r64(c); p9c_r64(c); p9c_r64(c);
	a->atime = p9c_r64(c); p9c_r64(c); a->mtime = p9c_r64(c);
	return 0;
}

P9C int p9c_setattr(struct p9c *c, uint32_t fid, uint32_t valid, uint32_t mode, uint32_t uid, uint32_t gid,
		       uint64_t size, uint64_t atime, uint64_t mtime)
{
	p9c_msg(c, P9_TSETATTR); p9c_32(c, fid); p9c_32(c, valid); p9c_32(c, mode); p9c_32(c, uid); p9c_32(c, gid);
	p9c_64(c, size); p9c_64(c, atime); p9c_64(c, 0); p9c_64(c, mtime); p9c_64(c, 0);
	return p9c_rpc(c);
}

P9C int p9c_mkdir(struct p9c *c, uint32_t dfid, const char *name, uint32_t mode, uint32_t gid, struct p9c_qid *q)
{
	p9c_msg(c, P9_TMKDIR); p9c_32(c, dfid); p9c_str(c, name); p9c_32(c, mode); p9c_32(c, gid);
	int e = p9c_rpc(c);
	if (!e && q)
		p9c_rqid(c, q);
	return e;
}

P9C int p9c_symlink(struct p9c *c, uint32_t dfid, const char *name, const char *target, uint32_t gid,
		       struct p9c_qid *q)
{
	p9c_msg(c, P9_TSYMLINK); p9c_32(c, dfid); p9c_str(c, name); p9c_str(c, target); p9c_32(c, gid);
	int e = p9c_rpc(c);
	if (!e && q)
		p9c_rqid(c, q);
	return e;
}

P9C int p9c_mknod(struct p9c *c, uint32_t dfid, const char *name, uint32_t mode, uint32_t major, uint32_t minor,
		     uint32_t gid)
{
	p9c_msg(c, P9_TMKNOD); p9c_32(c, dfid); p9c_str(c, name); p9c_32(c, mode); p9c_32(c, major); p9c_32(c, minor);
	p9c_32(c, gid);
	return p9c_rpc(c);
}

P9C int p9c_readlink(struct p9c *c, uint32_t fid, char *out, size_t cap)
{
	p9c_msg(c, P9_TREADLINK); p9c_32(c, fid);
	int e = p9c_rpc(c);
	if (!e)
		p9c_rstr(c, out, cap);
	return e;
}

P9C int p9c_link(struct p9c *c, uint32_t dfid, uint32_t fid, const char *name)
{
	p9c_msg(c, P9_TLINK); p9c_32(c, dfid); p9c_32(c, fid); p9c_str(c, name);
	return p9c_rpc(c);
}

P9C int p9c_rename(struct p9c *c, uint32_t fid, uint32_t dfid, const char *name)
{
	p9c_msg(c, P9_TRENAME); p9c_32(c, fid); p9c_32(c, dfid); p9c_str(c, name);
	return p9c_rpc(c);
}

P9C int p9c_renameat(struct p9c *c, uint32_t od, const char *on, uint32_t nd, const char *nn)
{
	p9c_msg(c, P9_TRENAMEAT); p9c_32(c, od); p9c_str(c, on); p9c_32(c, nd); p9c_str(c, nn);
	return p9c_rpc(c);
}

P9C int p9c_unlinkat(struct p9c *c, uint32_t dfid, const char *name, uint32_t flags)
{
	p9c_msg(c, P9_TUNLINKAT); p9c_32(c, dfid); p9c_str(c, name); p9c_32(c, flags);
	return p9c_rpc(c);
}

/* A message whose body is one fid: Tclunk, Tremove, Treadlink, Tstatfs. */
P9C int p9c_fid1(struct p9c *c, uint8_t type, uint32_t fid)
{
	p9c_msg(c, type); p9c_32(c, fid);
	return p9c_rpc(c);
}
P9C int p9c_clunk(struct p9c *c, uint32_t fid) { return p9c_fid1(c, P9_TCLUNK, fid); }

/* Txattrwalk: *size is the value's (or the list's) length. */
P9C int p9c_xattrwalk(struct p9c *c, uint32_t fid, uint32_t newfid, const char *name, uint64_t *size)
{
	p9c_msg(c, P9_TXATTRWALK); p9c_32(c, fid); p9c_32(c, newfid); p9c_str(c, name);
	int e = p9c_rpc(c);
	if (!e && size)
		*size = p9c_r64(c);
	return e;
}

P9C int p9c_xattrcreate(struct p9c *c, uint32_t fid, const char *name, uint64_t size, uint32_t flags)
{
	p9c_msg(c, P9_TXATTRCREATE); p9c_32(c, fid); p9c_str(c, name); p9c_64(c, size); p9c_32(c, flags);
	return p9c_rpc(c);
}

/* Set an xattr the way the Linux client does: Txattrcreate on a clone, Twrite, Tclunk. */
P9C int p9c_setxattr(struct p9c *c, uint32_t fid, uint32_t tmpfid, const char *name, const void *v, size_t n)
{
	int e = p9c_walk1(c, fid, tmpfid, NULL, NULL);
	if (e)
		return e;
	e = p9c_xattrcreate(c, tmpfid, name, n, 0);
	if (!e && n && p9c_write(c, tmpfid, 0, v, n) != (long)n)
		e = EIO;
	int ce = p9c_clunk(c, tmpfid);	/* sets the value */
	return e ? e : ce;
}

/* Read a whole xattr value (or the list, name "") into buf; its length, or -errno. */
P9C long p9c_getxattr(struct p9c *c, uint32_t fid, uint32_t tmpfid, const char *name, void *buf, size_t cap)
{
	uint64_t size = 0;
	int e = p9c_xattrwalk(c, fid, tmpfid, name, &size);
	if (e)
		return -e;
	long n = size <= cap ? p9c_read(c, tmpfid, 0, size, buf) : -ERANGE;
	p9c_clunk(c, tmpfid);
	return n;
}

#endif
