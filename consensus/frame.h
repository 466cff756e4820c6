/* frame.h — length-prefixed frames of the TCP transport: encoding a header
 * and cutting a received byte stream back into frames.
 *
 * Wire format of one frame: a 4-byte big-endian length L (1 <= L <= max),
 * then L bytes: one type byte (enum frame_type) and L-1 payload bytes. Pure
 * code (no sockets), so malformed input can be unit-tested.
 */
#ifndef RAFTFS_FRAME_H
#define RAFTFS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_BYTES 5

enum frame_type {
	FRAME_HELLO = 1,      /* transportpb.Hello */
	FRAME_RAFT = 2,	      /* raftpb.Message (consensus/codec.h) */
	FRAME_REQUEST = 3,    /* transportpb.Request */
	FRAME_RESPONSE = 4,   /* transportpb.Response */
	FRAME_SNAP_CHUNK = 5, /* transportpb.SnapshotChunk */
	FRAME_TYPE_MAX = 5,
};

/* Writes the 5-byte header of a frame of `type` carrying payload_len bytes. */
void frame_header(uint8_t hdr[FRAME_HEADER_BYTES], uint8_t type, size_t payload_len);

/* Where a reader's buffers come from when others may keep parts of one
 * (frame_reader_init_shared): alloc gives a buffer of at least n bytes
 * (NULL: out of memory), held says whether anyone but the reader still
 * references buf, release drops the reader's own reference. */
typedef struct frame_buf_ops {
	uint8_t *(*alloc)(size_t n);
	bool (*held)(const uint8_t *buf);
	void (*release)(uint8_t *buf);
} frame_buf_ops;

/* Reassembles frames from stream fragments. The reader owns its buffer. */
typedef struct frame_reader {
	uint8_t *buf;
	size_t start; /* first unconsumed byte */
	size_t len;   /* end of valid bytes */
	size_t cap;
	size_t max_frame;	  /* largest accepted L (type byte + payload) */
	const frame_buf_ops *ops; /* NULL: malloc'd, never shared */
} frame_reader;

void frame_reader_init(frame_reader *fr, size_t max_frame);

/* frame_reader_init with buffers from ops: a frame's payload may then be
 * kept referenced after frame_reader_next (the transport's decoded
 * entries, codec_msg_decode_in). A held buffer is never written again:
 * the reader moves what it has not handed out yet to a new one, sized for
 * the frame being received (not doubled: a held buffer pins its size). */
void frame_reader_init_shared(frame_reader *fr, size_t max_frame, const frame_buf_ops *ops);
void frame_reader_free(frame_reader *fr);

/* Appends n received bytes. 0 or -ENOMEM. */
int frame_reader_feed(frame_reader *fr, const void *data, size_t n);

/* Room at the end of the reader's buffer for at least min bytes, or for the
 * rest of the frame being received if that is more (up to max): a socket
 * read goes straight into it, sparing a copy of every received byte
 * through another buffer; frame_reader_commit() then adds what was read.
 * *space is valid until the next call on the reader. 0 or -ENOMEM. */
int frame_reader_space(frame_reader *fr, size_t min, uint8_t **space, size_t *cap);

/* Adds n bytes read into the space frame_reader_space() gave. */
void frame_reader_commit(frame_reader *fr, size_t n);

/* Takes the next complete frame: returns 1 and sets type, payload and len
 * (payload points into the reader, valid until the next feed or next call),
 * 0 if more bytes are needed, -EMSGSIZE for a length of 0 or beyond
 * max_frame, -EPROTO for an unknown frame type. After an error the stream
 * cannot be resynchronised: the caller closes the connection. */
int frame_reader_next(frame_reader *fr, uint8_t *type, const uint8_t **payload, size_t *len);

#endif
