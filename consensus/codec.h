/* codec.h — bytes <-> the plain Raft records of raft_types.h, in the
 * protobuf encoding of proto/raft.proto (wire format and on-disk records).
 *
 * Encoders come in two shapes. For the flat records, *_size() + *_pack()
 * write into a buffer the caller owns (no allocation: the store packs every
 * entry into one reused scratch buffer). For a whole message,
 * codec_msg_encode() makes exactly one allocation: the output buffer, with
 * room reserved in front for the transport's frame header.
 *
 * Decoders never trust their input: bytes that are not a valid encoding, or
 * that decode into values the C records cannot hold or the core must never
 * see (unknown message/entry/conf-change type, entry data over 4 GiB, a
 * snapshot on a message that is not MSG_SNAP), return RAFT_ECORRUPT with
 * *out left zeroed and nothing allocated. On success *out owns what it
 * points to; release it with the matching *_free_contents().
 */
#ifndef RAFTFS_CODEC_H
#define RAFTFS_CODEC_H

#include "raft_types.h"

/* Same numbering as raftpb.ConfChangeType. */
typedef enum {
	RAFT_CONF_ADD_NODE = 0,
	RAFT_CONF_REMOVE_NODE = 1,
	RAFT_CONF_ADD_LEARNER = 2,
} raft_conf_change_type;

/* The payload of a RAFT_ENTRY_CONF_CHANGE entry (raftpb.ConfChange). */
typedef struct raft_conf_change {
	raft_conf_change_type type;
	uint64_t node_id;
	uint8_t *context; /* owned; NULL when context_len == 0 (e.g. the node's address) */
	size_t context_len;
} raft_conf_change;

void raft_conf_change_free_contents(raft_conf_change *cc);

/* raft_entry <-> raftpb.Entry. codec_entry_pack() writes exactly
 * codec_entry_size(e) bytes to out and returns that count. */
size_t codec_entry_size(const raft_entry *e);
size_t codec_entry_pack(const raft_entry *e, uint8_t *out);
int codec_entry_decode(const uint8_t *buf, size_t len, raft_entry *out);

/* raft_hard_state <-> raftpb.HardState (no pointers: nothing to free). */
size_t codec_hard_state_size(const raft_hard_state *hs);
size_t codec_hard_state_pack(const raft_hard_state *hs, uint8_t *out);
int codec_hard_state_decode(const uint8_t *buf, size_t len, raft_hard_state *out);

/* raft_conf_state <-> raftpb.ConfState. */
size_t codec_conf_state_size(const raft_conf_state *cs);
size_t codec_conf_state_pack(const raft_conf_state *cs, uint8_t *out);
int codec_conf_state_decode(const uint8_t *buf, size_t len, raft_conf_state *out);

/* raft_snapshot_meta <-> raftpb.SnapshotMetadata. A missing conf_state
 * decodes as an empty one. Free with raft_conf_state_free_contents(&out->conf). */
size_t codec_snapshot_meta_size(const raft_snapshot_meta *m);
size_t codec_snapshot_meta_pack(const raft_snapshot_meta *m, uint8_t *out);
int codec_snapshot_meta_decode(const uint8_t *buf, size_t len, raft_snapshot_meta *out);

/* raft_conf_change <-> raftpb.ConfChange. */
size_t codec_conf_change_size(const raft_conf_change *cc);
size_t codec_conf_change_pack(const raft_conf_change *cc, uint8_t *out);
int codec_conf_change_decode(const uint8_t *buf, size_t len, raft_conf_change *out);

/* raft_msg -> raftpb.Message, entries, snapshot and context included,
 * and m->elided (an append's elided_len/elided_crc, where set). *out is
 * one malloc'd buffer of headroom + encoded bytes (the first headroom
 * bytes are left for the caller, e.g. a frame header); *len is the encoded
 * length without the headroom. The caller frees *out. Returns 0,
 * RAFT_ENOMEM, or RAFT_EINVAL for a message the decoder would refuse
 * (unknown type, snapshot on a non-MSG_SNAP message, an elision outside
 * an append's normal entry or not longer than the entry's data). */
int codec_msg_encode(const raft_msg *m, size_t headroom, uint8_t **out, size_t *len);

/* One piece of an encoded message: len bytes at data. */
typedef struct codec_seg {
	const uint8_t *data;
	size_t len;
} codec_seg;

/* Entry data at least this long is left where it is by
 * codec_msg_encode_segs. */
#define CODEC_SEG_MIN_BYTES 4096u

/* codec_msg_encode without copying the data of large entries: a leader
 * sends each big entry to every follower, and the data is already in
 * memory. *out gets the headroom and every byte of the encoding except the
 * data of up to (max_segs - 1) / 2 entries of CODEC_SEG_MIN_BYTES or more;
 * segs[0..*n_segs) then list, in order, the pieces to write: the headroom
 * and the encoding, alternately from *out and from the entries' own data.
 * *len is the whole encoding's length (without headroom), as for
 * codec_msg_encode. The segments point into m's entries: use them before
 * those change. max_segs must be at least 1; the caller frees *out. */
int codec_msg_encode_segs(const raft_msg *m, size_t headroom, uint8_t **out, size_t *len,
			  codec_seg *segs, size_t max_segs, size_t *n_segs);

/* The longest whole entry an elision may name: the largest max_frame_bytes
 * a configuration accepts (consensus/config.c), since an entry is sent
 * whole in one frame. Longer is refused as corrupt by codec_msg_decode. */
#define CODEC_ELIDED_MAX_BYTES (1ull << 31)

/* raftpb.Message -> raft_msg. MSG_SNAP must carry a snapshot and no other
 * type may; a snapshot without metadata decodes as index 0, term 0. An
 * entry with elided data (only in MSG_APP, of a normal entry, longer than
 * what came) decodes with only what came as data and its length and CRC
 * in out->elided (allocated only then); codec_entry_decode (a log's
 * record) refuses one. */
int codec_msg_decode(const uint8_t *buf, size_t len, raft_msg *out);

/* Entry data at least this long is left where it arrived by
 * codec_msg_decode_in. */
#define CODEC_SLICE_MIN_BYTES (64u << 10)

/* codec_msg_decode of buf[0..len), which lies in the bytes of block (from
 * raft_blob_new; a received frame, frame_reader_init_shared): the data of
 * entries of CODEC_SLICE_MIN_BYTES or more stays where it is, each a
 * reference to block (raft_blob_slice), released with the message or by
 * whoever took the entry (out->blob_data, as for codec_msg_decode). The
 * decoded message is the one codec_msg_decode gives for the same bytes,
 * refusals included. The 8 bytes before each such entry's data (its own
 * encoding's, already read) are overwritten: buf is not decoded twice. */
int codec_msg_decode_in(const uint8_t *block, uint8_t *buf, size_t len, raft_msg *out);

#endif
