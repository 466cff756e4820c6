/* cmd_merge.c — merging consecutive commands of one object: the utimens,
 * chown and chmod tar x makes of every file, and the two writes it makes of
 * a file whose data crosses a record of the archive. */
#include "cmd_merge.h"

#include <string.h>
#include <sys/stat.h>

#include "sm.h"

void setattr_explicit(Fspb__SetAttr *s, int64_t time_ns)
{
	if (s->valid & SM_SET_ATIME_NOW) {
		s->valid = (s->valid & ~SM_SET_ATIME_NOW) | SM_SET_ATIME;
		s->atime_ns = time_ns;
	}
	if (s->valid & SM_SET_MTIME_NOW) {
		s->valid = (s->valid & ~SM_SET_MTIME_NOW) | SM_SET_MTIME;
		s->mtime_ns = time_ns;
	}
}

bool setattr_mergeable(const Fspb__SetAttr *a, const Fspb__SetAttr *b)
{
	const uint32_t now = SM_SET_ATIME_NOW | SM_SET_MTIME_NOW | SM_SET_SIZE;

	return a->ino == b->ino && !(a->valid & now) && !(b->valid & now);
}

void setattr_merge(Fspb__SetAttr *a, const Fspb__SetAttr *b, bool dir)
{
	if (b->valid & SM_SET_MODE) {
		a->mode = b->mode;
	} else if ((b->valid & (SM_SET_UID | SM_SET_GID)) && (a->valid & SM_SET_MODE) && !dir) {
		/* b's chown clears set-id bits of the mode a set (apply.c
		 * decides it from the mode before the command); a mode the
		 * merged command carries is set as it is. */
		a->mode = sm_drop_setid(a->mode);
	}
	if (b->valid & SM_SET_UID)
		a->uid = b->uid;
	if (b->valid & SM_SET_GID)
		a->gid = b->gid;
	if (b->valid & SM_SET_ATIME)
		a->atime_ns = b->atime_ns;
	if (b->valid & SM_SET_MTIME)
		a->mtime_ns = b->mtime_ns;
	a->valid |= b->valid;
}

/* Below apply.c's MAX_FILE_SIZE (8 TiB): a merged write ending here could
 * not fail with EFBIG, nor could its parts. */
#define MERGE_END_MAX (1ULL << 40)

bool write_mergeable(const Fspb__Command *a, const Fspb__Command *b, size_t max_len)
{
	const Fspb__Write *x, *y;

	if (a->op_case != FSPB__COMMAND__OP_WRITE || b->op_case != FSPB__COMMAND__OP_WRITE)
		return false;
	x = a->write;
	y = b->write;
	return x->ino == y->ino && !x->append && !y->append && x->data.len && y->data.len &&
	       x->data.len <= max_len && y->data.len <= max_len - x->data.len &&
	       x->offset + x->data.len == y->offset && y->offset <= MERGE_END_MAX &&
	       y->data.len <= MERGE_END_MAX - y->offset && a->uid == b->uid &&
	       a->gid == b->gid && a->node == b->node && a->behind == b->behind;
}

void write_merge(const Fspb__Command *a, const Fspb__Command *b, Fspb__Command *out,
		 Fspb__Write *w, uint8_t *buf)
{
	*out = *b;
	*w = *b->write;
	memcpy(buf, a->write->data.data, a->write->data.len);
	memcpy(buf + a->write->data.len, b->write->data.data, b->write->data.len);
	w->offset = a->write->offset;
	w->data.data = buf;
	w->data.len = a->write->data.len + b->write->data.len;
	out->write = w;
}
