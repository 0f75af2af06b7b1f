/*
 * lkvm's snapshot state file: a header ("LKVMSNAP", the format version) and
 * named records, each with its own version, length and CRC32, ended by an
 * "end" record that counts them (a file without it was cut short). Every
 * part of a VM (board, vCPUs, each device) writes its own records; a reader
 * checks the whole file before anything is taken from it, and every value
 * read is bounded by its record, so a corrupt or hostile file can only make
 * a load fail, never read past what it holds.
 *
 * Guest RAM is not in this file: it is one file of its own, next to it.
 */
#ifndef LKVM_SNAPSHOT_H
#define LKVM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC "LKVMSNAP"
#define SNAP_FORMAT_VERSION 1
#define SNAP_NAME_MAX 64		/* bytes of a record name */
#define SNAP_FILE_MAX (256u << 20)	/* a state file larger than this is refused */

/* ---- writing ---- */

struct snap_writer;

/* Records go to fd (its header first); path names it in messages. */
struct snap_writer *snap_writer_new(int fd, const char *path);
/* Start a record; the values below go into it until snap_end(). */
void snap_begin(struct snap_writer *w, const char *name, uint32_t version);
void snap_u8(struct snap_writer *w, uint8_t v);
void snap_u16(struct snap_writer *w, uint16_t v);
void snap_u32(struct snap_writer *w, uint32_t v);
void snap_u64(struct snap_writer *w, uint64_t v);
void snap_i64(struct snap_writer *w, int64_t v);
void snap_bool(struct snap_writer *w, bool v);
void snap_bytes(struct snap_writer *w, const void *p, size_t n);
void snap_str(struct snap_writer *w, const char *s);	/* le16 length, bytes; at most 65535 */
/* Checksum and write the record: 0, or -1 with err set. */
int snap_end(struct snap_writer *w);
/* The end record; 0 if everything reached fd, else -1 with err set (the first failure). Frees w. */
int snap_writer_close(struct snap_writer *w);
/* Give up: free w without an end record (the file is then refused as truncated). */
void snap_writer_abort(struct snap_writer *w);

/* ---- reading ---- */

struct snap_reader;

/*
 * Check a whole state file held in buf (header, every record's bounds and
 * CRC, unique names, the end record): the reader, or NULL with err set
 * naming path and what is wrong. The reader keeps its own copy of buf.
 */
struct snap_reader *snap_reader_new(const uint8_t *buf, size_t len, const char *path);
/* The same from a file (refused over SNAP_FILE_MAX). */
struct snap_reader *snap_reader_open(const char *path);
void snap_reader_free(struct snap_reader *r);
const char *snap_path(const struct snap_reader *r);

int snap_count(const struct snap_reader *r);
const char *snap_name_at(const struct snap_reader *r, int i);
bool snap_has(const struct snap_reader *r, const char *name);

/*
 * Make name the current record: 0, or -1 with err set when it is missing or
 * has another version than this lkvm reads.
 */
int snap_open(struct snap_reader *r, const char *name, uint32_t version);
/* Values of the current record, in order; past its end they read as 0 and the record is bad. */
uint8_t snap_get_u8(struct snap_reader *r);
uint16_t snap_get_u16(struct snap_reader *r);
uint32_t snap_get_u32(struct snap_reader *r);
uint64_t snap_get_u64(struct snap_reader *r);
int64_t snap_get_i64(struct snap_reader *r);
bool snap_get_bool(struct snap_reader *r);	/* anything but 0 or 1 makes the record bad */
void snap_get_bytes(struct snap_reader *r, void *p, size_t n);
/* A string into out (NUL-terminated); too long for cap or holding a NUL: the record is bad. */
void snap_get_str(struct snap_reader *r, char *out, size_t cap);
/* Bytes of the current record not read yet. */
size_t snap_left(const struct snap_reader *r);
/* The record was read exactly to its end: 0, or -1 with err set. */
int snap_close(struct snap_reader *r);
/* A value of the current record is wrong: err set to "PATH: record NAME: <message>", -1. */
int snap_bad(struct snap_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether a read ran past the record or found a malformed value. */
bool snap_failed(const struct snap_reader *r);

#endif
