// sm_id_hw.c — the per-node id high-water table and its file, DATA/sm/id_hw.
#include "sm_id_hw.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sm_impl.h"

// DATA/sm/id_hw: magic u32 | n u32 | n x (node u32 | pad u32 | bound u64)
// | hash u64 (sm_hash of every byte before it). Replaced whole by a rename.
#define HW_MAGIC 0x57484449u // "IDHW"
#define HW_FILE_MAX (8 + SM_ID_HW_MAX * 16 + 8)
#define COUNTER_BITS 48

static size_t encode(const struct sm_id_hw *hw, uint8_t *buf)
{
	uint32_t magic = HW_MAGIC, pad = 0;
	size_t at = 8;
	uint64_t h;

	memcpy(buf, &magic, 4);
	memcpy(buf + 4, &hw->n, 4);
	for (uint32_t i = 0; i < hw->n; i++, at += 16) {
		memcpy(buf + at, &hw->node[i], 4);
		memcpy(buf + at + 4, &pad, 4);
		memcpy(buf + at + 8, &hw->bound[i], 8);
	}
	h = sm_hash(buf, at);
	memcpy(buf + at, &h, 8);
	return at + 8;
}

static int decode(const uint8_t *buf, size_t len, struct sm_id_hw *hw)
{
	uint32_t magic, n;
	uint64_t h;

	if (len < 16)
		return -EBADMSG;
	memcpy(&magic, buf, 4);
	memcpy(&n, buf + 4, 4);
	if (magic != HW_MAGIC || n > SM_ID_HW_MAX || len != 8 + (size_t)n * 16 + 8)
		return -EBADMSG;
	memcpy(&h, buf + len - 8, 8);
	if (h != sm_hash(buf, len - 8))
		return -EBADMSG;
	hw->n = n;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(&hw->node[i], buf + 8 + i * 16, 4);
		memcpy(&hw->bound[i], buf + 16 + i * 16, 8);
	}
	return 0;
}

// Replaces id_hw in directory dirfd (dir names it in messages), durably.
static int write_at(int dirfd, const char *dir, const struct sm_id_hw *hw)
{
	uint8_t buf[HW_FILE_MAX];
	size_t len = encode(hw, buf);

	return sm_replace_file_at(dirfd, dir, "id_hw.tmp", "id_hw", buf, len, true,
				  "save the id high-water marks");
}

// write_at in sm's own directory (DATA/sm).
static int write_own(struct sm *sm, const struct sm_id_hw *hw)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/sm", sm->data_dir);
	return write_at(sm->sm_fd, dir, hw);
}

// Reads sm's file once. A missing file is an empty table (a state from
// before the table existed: ids applied from now on are tracked). A corrupt
// one (it is replaced by renames, so only a disk error makes one) is
// refused: a table lower than the truth would let ids be reused silently.
static int load(struct sm *sm)
{
	uint8_t buf[HW_FILE_MAX + 1];
	ssize_t len;
	int fd, rc = 0;

	if (sm->id_hw.loaded)
		return 0;
	memset(&sm->id_hw, 0, sizeof(sm->id_hw));
	fd = openat(sm->sm_fd, "id_hw", O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT)
		rc = -errno;
	if (fd >= 0) {
		len = read(fd, buf, sizeof(buf));
		rc = len < 0 ? -errno : decode(buf, (size_t)len, &sm->id_hw);
		close(fd);
	}
	if (rc) {
		fprintf(stderr, "sm: reading the id high-water marks %s/sm/id_hw: %s\n",
			sm->data_dir, strerror(-rc));
		return rc;
	}
	sm->id_hw.loaded = true;
	return 0;
}

// Slot of node in hw, added (bound 0) if absent; -1 when full.
static int slot(struct sm_id_hw *hw, uint32_t node)
{
	for (uint32_t i = 0; i < hw->n; i++)
		if (hw->node[i] == node)
			return (int)i;
	if (hw->n == SM_ID_HW_MAX)
		return -1;
	hw->node[hw->n] = node;
	hw->bound[hw->n] = 0;
	return (int)hw->n++;
}

int sm_id_hw_note(struct sm *sm, uint64_t id)
{
	uint32_t node = (uint32_t)(id >> COUNTER_BITS);
	uint64_t counter = id & ((1ULL << COUNTER_BITS) - 1);
	struct sm_id_hw next;
	int i, rc = load(sm);

	if (rc)
		return rc;
	if (node == 0)
		return 0; // the root and other fixed ids: no node hands them out
	for (i = 0; i < (int)sm->id_hw.n; i++)
		if (sm->id_hw.node[i] == node && counter < sm->id_hw.bound[i])
			return 0; // the common case: below the bound on disk
	next = sm->id_hw;
	i = slot(&next, node);
	if (i < 0) {
		if (!sm->id_hw.full_logged)
			fprintf(stderr,
				"sm: %s: more than %d nodes' ids: node %u's are not tracked\n",
				sm->data_dir, SM_ID_HW_MAX, node);
		sm->id_hw.full_logged = true;
		return 0;
	}
	next.bound[i] = (counter / SM_ID_HW_STEP + 2) * SM_ID_HW_STEP;
	rc = write_own(sm, &next);
	if (!rc)
		sm->id_hw = next;
	return rc;
}

int sm_id_hw_get(struct sm *sm, struct sm_id_hw *out)
{
	int rc = load(sm);

	if (!rc)
		*out = sm->id_hw;
	return rc;
}

void sm_id_hw_merge(struct sm_id_hw *into, const struct sm_id_hw *from)
{
	for (uint32_t k = 0; k < from->n; k++) {
		int i = slot(into, from->node[k]);

		if (i >= 0 && into->bound[i] < from->bound[k])
			into->bound[i] = from->bound[k];
	}
}

uint64_t sm_id_hw_bound(const struct sm_id_hw *hw, uint32_t node)
{
	for (uint32_t i = 0; i < hw->n; i++)
		if (hw->node[i] == node)
			return hw->bound[i];
	return 0;
}

int sm_id_hw_write_dir(const char *dir, const struct sm_id_hw *hw)
{
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (dirfd < 0) {
		rc = -errno;
		fprintf(stderr, "sm: open %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	rc = write_at(dirfd, dir, hw);
	close(dirfd);
	return rc;
}

void sm_id_hw_forget(struct sm *sm)
{
	sm->id_hw.loaded = false;
}
