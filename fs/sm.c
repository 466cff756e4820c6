// The state machine's life cycle: opening a data dir, the apply loop step with journal and
// duplicate table, id allocation.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "dedup.h"
#include "sm_impl.h"
#include "sm_decode.h"
#include "sm_direct.h"
#include "sm_reset.h"
#include "test_gate.h"

// Ids are reserved in blocks: one fsync per block, not per create.
#define ID_BLOCK 4096
#define COUNTER_MASK 0xffffffffffffULL
// Default journal size at which the duplicate table is saved whole and the
// journal started afresh: 32768 records, replayed at start in milliseconds.
#define JOURNAL_MAX (4 << 20)

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) && errno != EEXIST) {
		int err = errno;
		fprintf(stderr, "sm: mkdir %s: %s\n", path, strerror(err));
		return -err;
	}
	return 0;
}

static int make_layout(const char *data)
{
	char path[PATH_MAX];
	int rc = make_dir(data);
	const char *subs[] = {"tree", "ids", "sm"};
	for (size_t i = 0; !rc && i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", data, subs[i]);
		rc = make_dir(path);
	}
	return rc; // the 256 buckets of ids/ are made on first use
}

// Gives a fresh tree its root identity: id 1, 0755, root:root, times 0, so
// every node starts from the same state.
static int init_root(const char *data)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/tree", data);
	uint64_t id;
	int rc = tree_read_id(path, &id);
	if (rc == 0)
		return id == SM_ROOT_ID ? 0 : -EIO;
	if (rc != -ENODATA) {
		fprintf(stderr, "sm: read id of %s: %s\n", path, strerror(-rc));
		return rc;
	}
	struct timespec zero[2] = {{0, 0}, {0, 0}};
	if (chown(path, 0, 0) || chmod(path, 0755) || utimensat(AT_FDCWD, path, zero, 0)) {
		rc = -errno;
	} else {
		rc = tree_write_ctime(path, 0);
		if (!rc)
			rc = tree_write_id(path, SM_ROOT_ID);
	}
	if (rc)
		fprintf(stderr, "sm: initialise root %s: %s\n", path, strerror(-rc));
	return rc;
}

static int load_reserved(struct sm *sm)
{
	uint64_t v = 0;
	int fd = openat(sm->sm_fd, "next_id", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (pread(fd, &v, sizeof(v), 0) != sizeof(v))
			v = 0;
		close(fd);
	} else if (errno != ENOENT) {
		int err = errno;
		fprintf(stderr, "sm: open %s/sm/next_id: %s\n", sm->data_dir, strerror(err));
		return -err;
	}
	if (v > sm->next_counter)
		sm->next_counter = v;
	if (sm->next_counter == 0)
		sm->next_counter = 1;
	// What is on disk, not what the scan found: ids in the tree above it
	// (an installed image's) are reserved durably by the next allocation
	// or apply of an id of ours (reserve_past).
	sm->reserved_to = v;
	return 0;
}

int sm_replace_file_at(int dirfd, const char *dir, const char *tmp, const char *name,
		       const void *buf, size_t len, bool durable, const char *what)
{
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t put = -1;
	int rc = 0;

	if (fd < 0 || (put = write(fd, buf, len)) < 0)
		rc = -errno;
	else if (put != (ssize_t)len)
		rc = -EIO; // a short write sets no errno
	else if ((durable && fsync(fd)) || renameat(dirfd, tmp, dirfd, name) ||
		 (durable && fsync(dirfd)))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc)
		fprintf(stderr, "sm: %s in %s/%s: %s\n", what, dir, name, strerror(-rc));
	return rc;
}

int sm_replace_file(struct sm *sm, const char *tmp, const char *name, const void *buf,
		    size_t len, bool durable, const char *what)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/sm", sm->data_dir);
	return sm_replace_file_at(sm->sm_fd, dir, tmp, name, buf, len, durable, what);
}

// Durably reserves counters up to `to`.
static int store_reserved(struct sm *sm, uint64_t to)
{
	return sm_replace_file(sm, "next_id.tmp", "next_id", &to, sizeof(to), true, "reserve ids");
}

int sm_alloc_id(struct sm *sm, uint64_t *id)
{
	int rc = 0;
	pthread_mutex_lock(&sm->id_lock);
	if (sm->next_counter >= sm->reserved_to) {
		rc = store_reserved(sm, sm->next_counter + ID_BLOCK);
		if (!rc)
			sm->reserved_to = sm->next_counter + ID_BLOCK;
	}
	if (!rc && sm->next_counter > COUNTER_MASK)
		rc = -ENOSPC;
	if (!rc)
		*id = ((uint64_t)sm->node_id << 48) | sm->next_counter++;
	pthread_mutex_unlock(&sm->id_lock);
	return rc;
}

// Raises the counter to at least `counter` and makes every counter below it
// durably reserved before returning, so that a drop of the tree (power loss,
// fs/README-sm.md) cannot hand any of them out again. Caller holds id_lock.
static int reserve_past(struct sm *sm, uint64_t counter)
{
	if (counter > sm->next_counter)
		sm->next_counter = counter;
	if (sm->next_counter <= sm->reserved_to)
		return 0;
	uint64_t to = sm->next_counter + ID_BLOCK;
	int rc = store_reserved(sm, to);
	if (!rc)
		sm->reserved_to = to;
	return rc;
}

int sm_note_id(struct sm *sm, uint64_t id)
{
	int hw = sm_id_hw_note(sm, id); // every node's, for images

	if (hw)
		return hw;
	if ((id >> 48) != sm->node_id)
		return 0; // another node's counter: not ours to keep
	pthread_mutex_lock(&sm->id_lock);
	int rc = reserve_past(sm, (id & COUNTER_MASK) + 1);
	pthread_mutex_unlock(&sm->id_lock);
	return rc;
}

int sm_ids_take_over(struct sm *live, const struct sm *fresh, uint64_t bound)
{
	pthread_mutex_lock(&live->id_lock);
	// live's sm/ is fresh's now: its reservation is the one on disk.
	live->reserved_to = fresh->reserved_to;
	// One hold of the lock for both: an id allocated between a raise to
	// fresh's counter and one to the image's bound would be one handed out
	// before the image.
	int rc = reserve_past(live, fresh->next_counter > bound ? fresh->next_counter : bound);
	pthread_mutex_unlock(&live->id_lock);
	return rc;
}

// Records an executed command's result in the duplicate table. Only if the
// table does not have it yet: a redo after a crash may find it there already.
// A batch's is recorded once, from its last record, with all its results.
static int record_dedup(struct sm *sm, const struct sm_record *r)
{
	int64_t prev;
	if (!r->client || !sm_rec_ends_entry(r) ||
	    dedup_check(sm->dd, r->client, r->seq, &prev) != DEDUP_NEW)
		return 0;
	// At its index: the table's clock for expiring idle clients, the same
	// in a replay of the journal as when applied (dedup.h).
	return dedup_record_at(sm->dd, r->index, r->client, r->seq, r->min_pending,
			       sm_rec_entry_result(r));
}

// DATA/sm/dedup: magic u32 | pad u32 | index u64 | len u64 | table | hash u64.
// The duplicate table as of `index`, saved when the journal is restarted.
#define DEDUP_MAGIC 0x44505552u

static int save_dedup(struct sm *sm, uint64_t index)
{
	uint8_t *blob;
	size_t len;
	int rc = dedup_serialize(sm->dd, &blob, &len);
	if (rc)
		return rc;
	size_t total = 24 + len + 8;
	uint8_t *buf = malloc(total);
	if (!buf) {
		free(blob);
		return -ENOMEM;
	}
	uint32_t magic = DEDUP_MAGIC, pad = 0;
	uint64_t len64 = len;
	memcpy(buf, &magic, 4);
	memcpy(buf + 4, &pad, 4);
	memcpy(buf + 8, &index, 8);
	memcpy(buf + 16, &len64, 8);
	memcpy(buf + 24, blob, len);
	uint64_t h = sm_hash(buf, 24 + len);
	memcpy(buf + 24 + len, &h, 8);
	free(blob);
	rc = sm_replace_file(sm, "dedup.new", "dedup", buf, total, false, "save duplicate table");
	free(buf);
	return rc;
}

static int load_dedup(struct sm *sm)
{
	sm->dedup_index = 0;
	int fd = openat(sm->sm_fd, "dedup", O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		sm->dd = dedup_new();
		return sm->dd ? 0 : -ENOMEM;
	}
	struct stat st;
	uint8_t *buf = NULL;
	int rc = 0;
	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
	} else if (st.st_size < 32) {
		rc = -EIO;
	} else if (!(buf = malloc((size_t)st.st_size))) {
		rc = -ENOMEM;
	} else if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		rc = -EIO;
	}
	if (fd >= 0)
		close(fd);
	uint32_t magic = 0;
	uint64_t len = 0, h = 0;
	if (!rc) {
		memcpy(&magic, buf, 4);
		memcpy(&sm->dedup_index, buf + 8, 8);
		memcpy(&len, buf + 16, 8);
		if (len + 32 == (uint64_t)st.st_size)
			memcpy(&h, buf + 24 + len, 8);
		if (magic != DEDUP_MAGIC || len + 32 != (uint64_t)st.st_size ||
		    h != sm_hash(buf, 24 + len))
			rc = -EIO; // written by rename: never torn but by a power loss
	}
	if (!rc)
		rc = dedup_deserialize(buf + 24, len, &sm->dd);
	free(buf);
	if (rc)
		fprintf(stderr, "sm: load duplicate table %s/sm/dedup: %s\n", sm->data_dir,
			strerror(-rc));
	return rc;
}

// Reads a small text file (at most size-1 bytes) into buf; -errno if absent.
static int read_small(int dirfd, const char *name, char *buf, size_t size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, size - 1);
	int rc = n < 0 ? -errno : 0;
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return rc;
}

// Power-loss guard. Nothing is fsynced per command, so if the machine went
// down (power cut, kernel crash) while the state machine was open, the tree,
// the index and the journal may each have lost a different suffix of
// changes: the node must not apply on top of that. A new boot id since the
// last open, without a clean close since, means exactly that. A clean close
// syncs everything, then leaves DATA/sm/clean (fsynced), which every open
// removes (fsynced) before anything applies: the journal's own "done" mark
// cannot tell, as the records appended after it may be lost while changes
// of the tree that followed them were written. Checked before anything reads
// the tree (which may not even scan). Returns 0 (the boot id recorded, the
// mark removed), or -EUCLEAN when the data dir cannot be trusted (both left
// as they were, so a crash before the caller has dropped the state finds it
// untrusted again).
static int check_boot(struct sm *sm)
{
	char now[64], prev[64];
	int rc = read_small(AT_FDCWD, "/proc/sys/kernel/random/boot_id", now, sizeof(now));
	if (rc)
		return 0; // no boot id (not Linux /proc): no check
	rc = read_small(sm->sm_fd, "boot", prev, sizeof(prev));
	if (rc == 0 && strcmp(prev, now) && faccessat(sm->sm_fd, "clean", F_OK, 0)) {
		fprintf(stderr,
			"sm: open %s: the machine restarted (boot id changed) while this state "
			"machine was open (no clean close since): changes not yet on disk may be "
			"lost, so its tree cannot be trusted\n",
			sm->data_dir);
		return -EUCLEAN;
	}
	if (rc != 0 || strcmp(prev, now)) {
		rc = sm_replace_file(sm, "boot.new", "boot", now, strlen(now), true,
				  "record boot id");
		if (rc)
			return rc;
	}
	if (unlinkat(sm->sm_fd, "clean", 0) == 0) {
		if (fsync(sm->sm_fd)) {
			rc = -errno;
			fprintf(stderr, "sm: open %s: fsync sm/ after removing sm/clean: %s\n",
				sm->data_dir, strerror(-rc));
			return rc;
		}
	} else if (errno != ENOENT) {
		rc = -errno;
		fprintf(stderr, "sm: open %s: remove sm/clean: %s\n", sm->data_dir,
			strerror(-rc));
		return rc;
	}
	return 0;
}

// Symlink targets up to PATH_MAX - 1 bytes are accepted (apply.c) on every
// node alike, so every node's data directory must store them: a filesystem
// that cannot (ext4 with 1 KiB blocks keeps at most 1023 bytes) would fault
// the node on a command the others applied. Refused at start instead, with
// the reason. Returns 0 or -ENAMETOOLONG (or another -errno).
static int check_symlink_room(struct sm *sm)
{
	char target[PATH_MAX];
	const char *name = "symlink-check";
	int rc = 0;

	memset(target, 'x', PATH_MAX - 1);
	target[PATH_MAX - 1] = 0;
	unlinkat(sm->sm_fd, name, 0);
	if (symlinkat(target, sm->sm_fd, name)) {
		rc = -errno;
		fprintf(stderr,
			"sm: open %s: the filesystem under it cannot store a symlink target of "
			"%d bytes (%s); raftfs replicates targets up to that length, so this node "
			"would stop on one the others store: use a filesystem that can (ext4 "
			"with 4 KiB blocks, xfs, btrfs, tmpfs)\n",
			sm->data_dir, PATH_MAX - 1, strerror(-rc));
	}
	unlinkat(sm->sm_fd, name, 0);
	return rc;
}

struct replay {
	struct sm *sm;
	struct sm_record last;
	bool have;
};

// Rebuilds the duplicate table from a journal record. The newest record, unless
// marked done, may be cut short: its redo records it.
static int replay_one(void *arg, const struct sm_record *r, bool newest)
{
	struct replay *rp = arg;
	rp->last = *r;
	rp->have = true;
	if (r->index <= rp->sm->dedup_index || (r->flags & SM_REC_SKIP) ||
	    (newest && !(r->flags & SM_REC_DONE)))
		return 0;
	return record_dedup(rp->sm, r);
}

// sm_open but for an untrusted data dir: then -EUCLEAN, *out NULL.
static int open_once(const char *data_dir, uint32_t node_id, struct sm **out)
{
	if (node_id == 0 || node_id > 0xffff) {
		fprintf(stderr, "sm: open %s: node id %u out of range 1..65535\n", data_dir,
			node_id);
		return -EINVAL;
	}
	struct sm *sm = calloc(1, sizeof(*sm));
	if (!sm)
		return -ENOMEM;
	sm->sm_fd = -1;
	sm->journal.fd = -1;
	sm->node_id = node_id;
	sm->journal_max = JOURNAL_MAX;
	const char *delay = test_hook_env("RAFTFS_TEST_APPLY_DELAY_US");
	if (delay)
		sm->test_apply_delay_us = (unsigned)strtoul(delay, NULL, 10);
	sm->test_apply_gate = test_hook_env("RAFTFS_TEST_APPLY_GATE");
	const char *start_kill = test_hook_env("RAFTFS_TEST_START_KILL");
	if (start_kill)
		sm->test_start_kill = atoi(start_kill);
	const char *direct = getenv("RAFTFS_APPLY_DIRECT");
	const char *fill_us = getenv("RAFTFS_APPLY_DIRECT_FILL_US");
	sm->direct_mode = !direct		  ? SM_DIRECT_AUTO
			  : strcmp(direct, "0") == 0 ? SM_DIRECT_OFF
			  : strcmp(direct, "1") == 0 ? SM_DIRECT_ON
						     : SM_DIRECT_AUTO;
	// 1 ms per MiB: a fill under 1 GB/s, where a copy into cached pages
	// runs at 5-10: the host is backing fresh pages (apply.c, exec_write).
	sm->direct_fill_ns = fill_us ? (int64_t)strtoull(fill_us, NULL, 10) * 1000 : 1000000;
	sm->fill_ns_mib = -1;
	sm->direct_ns_mib = -1;
	for (int i = 0; i < SM_FD_CACHE; i++)
		sm->fds[i].fd = -1;
	// Writer-preferring: a steady stream of FUSE reads must not starve the
	// apply thread (glibc's default prefers readers). Readers therefore never
	// take the lock recursively.
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&sm->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&sm->id_lock, NULL);
	int rc = -ENOMEM;
	sm->data_dir = realpath(data_dir, NULL);
	if (!sm->data_dir && errno == ENOENT && make_dir(data_dir) == 0)
		sm->data_dir = realpath(data_dir, NULL);
	if (!sm->data_dir) {
		rc = -errno;
		fprintf(stderr, "sm: open %s: %s\n", data_dir, strerror(-rc));
		free(sm);
		return rc;
	}
	if ((rc = tree_map_init(&sm->by_id)) || (rc = tree_map_init(&sm->by_ino)))
		goto fail;
	if ((rc = make_layout(sm->data_dir)))
		goto fail;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/sm", sm->data_dir);
	sm->sm_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sm->sm_fd < 0) {
		rc = -errno;
		fprintf(stderr, "sm: open %s: %s\n", path, strerror(-rc));
		goto fail;
	}
	if ((rc = check_boot(sm)) || (rc = init_root(sm->data_dir)))
		goto fail;
	// Auto goes direct only where that bypasses the cache: elsewhere a
	// direct write costs the aligned copy and the same fill, and auto
	// measures only buffered fills (apply.c, exec_write). =1 still forces it.
	const char *why;
	snprintf(path, sizeof(path), "%s/ids", sm->data_dir);
	if (sm->direct_mode == SM_DIRECT_AUTO && !sm_direct_bypasses_cache(path, &why)) {
		fprintf(stderr, "sm: %s: %s: big writes go through the page cache\n", path, why);
		sm->direct_mode = SM_DIRECT_OFF;
	}
	if ((rc = check_symlink_room(sm)) || (rc = tree_scan(sm)) || (rc = load_reserved(sm)))
		goto fail;
	if ((rc = load_dedup(sm)))
		goto fail;
	struct replay r = {sm, {0}, false};
	if ((rc = sm_journal_open(sm->sm_fd, &sm->journal, replay_one, &r)))
		goto fail;
	if (r.have && (r.last.flags & SM_REC_DONE)) {
		sm->applied = r.last.index; // closed cleanly
	} else if (r.have) {
		// The last recorded command may have been cut short: count it as not
		// applied, so the runtime delivers it again and sm_apply redoes it.
		sm->applied = r.last.index - 1;
		sm->redo_pending = true;
		sm->redo_rec = r.last;
	}
	sm->last_rec = r.last;
	if ((rc = sm_starts_load(sm)))
		goto fail;
	*out = sm;
	return 0;
fail:
	sm_close(sm);
	return rc;
}

int sm_open(const char *data_dir, uint32_t node_id, struct sm **out)
{
	int rc = open_once(data_dir, node_id, out);

	if (rc == -EUCLEAN) {
		// Not repaired: rebuilt. The node's stored snapshot and its Raft
		// log after it are durable (synced before anything is
		// acknowledged), and the runtime restores a stored snapshot ahead
		// of the state machine at start and replays the committed log
		// after it (consensus/node.c restore_from_store; Raft §7). So an
		// empty state machine at 0, with the id reservation kept, catches
		// up by itself, even when a majority lost power at once.
		rc = sm_reset_drop(data_dir);
		if (!rc)
			rc = open_once(data_dir, node_id, out);
		if (rc == -EUCLEAN)
			rc = -EIO; // no journal left: cannot happen
		if (rc)
			fprintf(stderr, "sm: open %s: dropping the untrusted state failed: %s\n",
				data_dir, strerror(-rc));
		else
			fprintf(stderr,
				"sm: open %s: dropped the untrusted tree, index and journal (moved "
				"to %s/dropped/, deleted in the background), kept the id "
				"reservation: starting empty at 0, rebuilt from this node's stored "
				"snapshot and Raft log\n",
				data_dir, data_dir);
	}
	if (rc)
		return rc;
	// A dropped tree (this time, or one a previous run did not finish
	// deleting) goes in the background; failing to start that is no fault.
	// But one that had to go first (space short) and could not is: the
	// open fails now, visibly, rather than an apply later (the next start
	// tries again).
	rc = sm_reset_start_deleting((*out)->data_dir, &(*out)->reset);
	if (rc) {
		fprintf(stderr,
			"sm: open %s: deleting %s/dropped/ before the rebuild (too short of "
			"space for both) failed: %s: not opening (tried again at the next start)\n",
			data_dir, data_dir, strerror(-rc));
		sm_close(*out);
		*out = NULL;
	}
	return rc;
}

void sm_close(struct sm *sm)
{
	if (!sm)
		return;
	sm_reset_stop(sm->reset);
	for (int i = 0; i < SM_FD_CACHE; i++)
		if (sm->fds[i].fd >= 0)
			close(sm->fds[i].fd);
	// A clean close syncs the tree, then marks the last command done, so a
	// restart needs no redo, even after a power loss.
	if (sm->journal.fd >= 0 && !sm->fault && !sm->redo_pending &&
	    sm->last_rec.index == sm->applied && sm->applied > 0) {
		sm->last_rec.flags |= SM_REC_DONE;
		if (syncfs(sm->sm_fd) || sm_journal_rewrite_last(&sm->journal, &sm->last_rec) ||
		    fdatasync(sm->journal.fd))
			fprintf(stderr, "sm: close %s: sync: %s\n", sm->data_dir, strerror(errno));
		else // all on disk: a power loss from now on loses nothing
			sm_replace_file(sm, "clean.new", "clean", "", 0, true, "mark a clean close");
	}
	sm_journal_close(&sm->journal);
	dedup_free(sm->dd);
	if (sm->sm_fd >= 0)
		close(sm->sm_fd);
	if (sm->by_id.keys)
		tree_free(sm);
	pthread_rwlock_destroy(&sm->lock);
	pthread_mutex_destroy(&sm->id_lock);
	// What auto decided (apply.c, exec_write), for seq_write.sh and the
	// operator who wonders.
	if (sm->n_direct || sm->n_buffered)
		fprintf(stderr,
			"sm: big writes of other nodes: %llu direct, %llu buffered; buffered fills "
			"%.2f ms CPU per MiB lately, direct writes %.2f\n",
			(unsigned long long)sm->n_direct, (unsigned long long)sm->n_buffered,
			sm->fill_ns_mib < 0 ? 0.0 : (double)sm->fill_ns_mib / 1e6,
			sm->direct_ns_mib < 0 ? 0.0 : (double)sm->direct_ns_mib / 1e6);
	free(sm->direct_buf);
	free(sm->data_dir);
	free(sm);
}

uint64_t sm_applied_index(struct sm *sm)
{
	return sm->applied;
}

const struct dedup *sm_dedup(struct sm *sm)
{
	return sm->dd;
}

int sm_fault(struct sm *sm)
{
	return sm->fault;
}

int sm_client_result(struct sm *sm, uint64_t client_id, uint64_t seq, int *result)
{
	int64_t r;
	switch (dedup_check(sm->dd, client_id, seq, &r)) {
	case DEDUP_DUPLICATE:
		*result = (int)r;
		return 0;
	case DEDUP_STALE:
		return -ESTALE;
	default:
		return -ENOENT;
	}
}

static int fail(struct sm *sm, uint64_t index, int rc)
{
	fprintf(stderr, "sm: apply %llu: local fault %s: node stops applying\n",
		(unsigned long long)index, strerror(-rc));
	sm->fault = rc;
	return rc;
}

void sm_test_crash_at(struct sm *sm, int steps)
{
	sm->crash_at = steps;
}

uint64_t sm_test_attr_calls(const struct sm *sm)
{
	return sm->attr_calls;
}

void sm_test_caps_errno(struct sm *sm, int err)
{
	sm->test_caps_errno = err;
}

void sm_test_refuse_direct(struct sm *sm, bool on)
{
	sm->test_refuse_direct = on;
}

void sm_test_pin_direct_cost(struct sm *sm, int64_t ns_per_mib)
{
	sm->direct_ns_mib = ns_per_mib;
	sm->test_direct_pinned = true;
}

void sm_test_big_writes(const struct sm *sm, uint64_t *direct, uint64_t *buffered)
{
	*direct = sm->n_direct;
	*buffered = sm->n_buffered;
}

// The slot of node in the per-node counts; with add, taken if free (apply
// thread). -1: not there (or the table is full: then it is not counted).
static int from_slot(struct sm *sm, uint32_t node, bool add)
{
	for (unsigned k = 0; k < SM_FROM_SLOTS; k++) {
		unsigned i = (node + k) % SM_FROM_SLOTS;
		uint32_t n = __atomic_load_n(&sm->from_node[i], __ATOMIC_ACQUIRE);
		if (n == node)
			return (int)i;
		if (n == 0) {
			if (!add)
				return -1;
			__atomic_store_n(&sm->from_node[i], node, __ATOMIC_RELEASE);
			return (int)i;
		}
	}
	return -1;
}

uint64_t sm_applied_from(struct sm *sm, uint32_t node)
{
	int i = node ? from_slot(sm, node, false) : -1;
	return i < 0 ? 0 : __atomic_load_n(&sm->from_count[i], __ATOMIC_RELAXED);
}

// Counts a command of node (sm_applied_from).
static void count_from(struct sm *sm, uint32_t node)
{
	int i = node ? from_slot(sm, node, true) : -1;
	if (i >= 0)
		__atomic_fetch_add(&sm->from_count[i], 1, __ATOMIC_RELAXED);
}

void sm_set_content_hook(struct sm *sm, sm_content_hook fn, void *arg)
{
	sm->content_hook = fn;
	sm->content_hook_arg = arg;
}

void sm_set_orphan_hook(struct sm *sm, sm_orphan_hook fn, void *arg)
{
	sm->orphan_hook = fn;
	sm->orphan_hook_arg = arg;
}

void sm_set_deleg_hook(struct sm *sm, sm_deleg_hook fn, void *arg)
{
	sm->deleg_hook = fn;
	sm->deleg_hook_arg = arg;
}

void sm_set_apply_hook(struct sm *sm, sm_apply_hook fn, void *arg)
{
	sm->apply_hook = fn;
	sm->apply_hook_arg = arg;
}

void sm_set_journal_limit(struct sm *sm, size_t bytes)
{
	sm->journal_max = bytes;
}

// Keeps the journal short: saves the duplicate table as of the newest
// (complete) record, then restarts the journal with just that record.
static int compact(struct sm *sm)
{
	int rc = save_dedup(sm, sm->last_rec.index);
	if (rc)
		return rc;
	sm->last_rec.flags |= SM_REC_DONE;
	return sm_journal_restart(&sm->journal, &sm->last_rec);
}

// protobuf-c answers NULL both for bytes that do not decode and for a failed
// allocation; only the first is a (deterministic) result.
static void *pb_alloc(void *data, size_t size)
{
	void *p = malloc(size);
	if (!p)
		*(bool *)data = true;
	return p;
}

static void pb_free(void *data, void *p)
{
	free(p);
}

// Decodes a command: 0 with *c (NULL if the bytes are not a command), or
// -ENOMEM (a local fault, not a result). in_place (an entry's command): a
// big write's data stays in cmd (not copied out, sm_decode.h), so the
// command is freed with sm_decode_free.
static int decode(const void *cmd, size_t len, bool in_place, Fspb__Command **c)
{
	bool oom = false;
	ProtobufCAllocator a = {pb_alloc, pb_free, &oom};
	*c = in_place ? sm_decode(&a, cmd, len) : fspb__command__unpack(&a, len, cmd);
	return oom ? -ENOMEM : 0;
}

// Called before applying the next index, not at the end of the previous apply:
// marking a record done is only right once the caller has taken its result.
static int maybe_compact(struct sm *sm)
{
	if (sm->redo_pending || sm_journal_size(&sm->journal) <= (off_t)sm->journal_max)
		return 0;
	return compact(sm);
}

// Whether index may be applied now: the sticky fault if there is one,
// -EALREADY for an index already applied, -EINVAL for one that skips ahead.
static int check_next_index(const struct sm *sm, uint64_t index)
{
	if (sm->fault)
		return sm->fault;
	if (index <= sm->applied)
		return -EALREADY;
	if (index != sm->applied + 1)
		return -EINVAL;
	return 0;
}

// A fresh tree's root has times 0 (init_root: every node starts alike).
// The first command applied stamps its mtime and ctime with that command's
// time (the proposer's clock): the cluster's birth, the same on every node
// and carried in snapshots. Every node proposes a command without an
// operation at every start (fuse_run.c, propose_hello); ctime 0
// means unstamped, as no command can set a ctime. Redo-safe: the same time
// again, or nothing once stamped.
static int stamp_root(struct sm *sm, int64_t t)
{
	struct sm_obj *o = tree_get(sm, SM_ROOT_ID);
	if (!o || t <= 0 || __atomic_load_n(&o->ctime_ns, __ATOMIC_RELAXED) != 0)
		return 0;
	sm_meta_hook(sm, SM_ROOT_ID);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/tree", sm->data_dir);
	struct timespec ts[2] = {{t / 1000000000, t % 1000000000}, {t / 1000000000, t % 1000000000}};
	int rc = utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
	if (!rc)
		rc = tree_write_ctime(path, t);
	if (rc) {
		fprintf(stderr, "sm: stamp the root %s with its birth time: %s\n", path,
			strerror(-rc));
		return rc;
	}
	__atomic_store_n(&o->ctime_ns, t, __ATOMIC_RELAXED);
	return 0;
}

// Sub-command k's result in its batch entry's result (byte k). Results are
// errnos (below 256); anything else shows as EINVAL, the same everywhere.
static uint64_t batch_byte(uint32_t k, int32_t result)
{
	uint64_t r = result >= 0 && result < 256 ? (uint64_t)result : EINVAL;
	return r << (8 * k);
}

// A whole-entry result of a batch entry (refused as a whole, or skipped as
// a stale retry): every sub-command's caller gets it, so it goes in every
// byte — the proposer reads byte k for sub-command k (fs_node.c).
static uint64_t batch_all(int32_t result)
{
	uint64_t r = 0;
	for (uint32_t k = 0; k < SM_BATCH_MAX; k++)
		r |= batch_byte(k, result);
	return r;
}

// Step k of start command c (apply_step), where the test hook
// RAFTFS_TEST_START_KILL kills the node as a crash there would.
static int start_step(struct sm *sm, const Fspb__Command *c, int k)
{
	if (sm->test_start_kill == k && c->node != sm->node_id) {
		fprintf(stderr, "sm: test hook: killed at step %d of node %u's start command\n", k,
			c->node);
		raise(SIGKILL);
	}
	return apply_step(sm);
}

// Decides (apply_plan), journals and executes command c (NULL: one that does
// not decode: EINVAL) of entry rec->index: the whole entry's, or a batch's
// sub-command rec->sub. redo: rec is the record written before a crash, and
// only the execution is repeated (its steps are redo-safe).
static int run_one(struct sm *sm, uint64_t client_id, const Fspb__Command *c,
		   struct sm_record *rec, bool redo)
{
	int rc = 0;
	if (!redo) {
		if (!c)
			rec->result = EINVAL; // the same bytes fail the same everywhere
		else
			rc = apply_plan(sm, c, rec);
		if (rec->sub)
			rec->results |= batch_byte(rec->sub - 1, rec->result);
		if (!rc)
			rc = sm_journal_append(&sm->journal, rec);
		if (!rc)
			sm->last_rec = *rec;
	}
	if (!rc && c)
		rc = stamp_root(sm, c->time_ns);
	// Every node's last start command (sm_starts.h). A redo notes it
	// again, from the table loaded at open: a crash before its xattr
	// (the steps, for sm_test_crash_at) loses nothing, one after it
	// writes the same bytes.
	if (!rc && c && sm_is_start(c) && !(rc = start_step(sm, c, 1)) &&
	    !(rc = sm_starts_note(sm, c, rec->index)))
		rc = start_step(sm, c, 2);
	bool exec = !rc && rec->result == 0 && c;
	if (exec && sm->apply_hook)
		sm->apply_hook(sm->apply_hook_arg, client_id, c, false);
	if (exec)
		rc = apply_exec(sm, c, rec);
	if (exec && !rc && sm->apply_hook)
		sm->apply_hook(sm->apply_hook_arg, client_id, c, true);
	return rc;
}

// In a redo of a batch cut short at sub-command rec->sub: what the ones
// before it, which ran whole, left for the batch's end (apply_batch_replay).
static int replay_done(struct sm *sm, const Fspb__Batch *b, const struct sm_record *rec)
{
	for (uint32_t k = 0; k + 1 < rec->sub; k++) {
		Fspb__Command *c = NULL;
		int rc = decode(b->cmds[k].data, b->cmds[k].len, false, &c);
		if (rc)
			return rc;
		if (c && c->op_case == FSPB__COMMAND__OP_BATCH) {
			fspb__command__free_unpacked(c, NULL);
			c = NULL; // refused as in run_batch
		}
		apply_batch_replay(sm, c, (int)((rec->results >> (8 * k)) & 0xff));
		if (c)
			fspb__command__free_unpacked(c, NULL);
	}
	return 0;
}

// A Batch entry (fs.proto): its sub-commands in order, each as run_one, each
// with a record of its own written before it executes. After a crash the
// newest record names the sub-command that was cut short (rec, redo): those
// before it executed whole, so the batch resumes there, and the entry is
// applied exactly once. The last record carries every result.
static int run_batch(struct sm *sm, uint64_t client_id, const Fspb__Batch *b,
		     struct sm_record *rec, bool redo)
{
	uint32_t n = (uint32_t)b->n_cmds; // sm_apply_entry checked it (and a redo's)
	struct sm_record r = *rec;
	int rc = 0;

	apply_batch_begin(sm, client_id);
	if (redo)
		rc = replay_done(sm, b, rec);
	for (uint32_t k = redo ? r.sub - 1 : 0; !rc && k < n; k++) {
		bool again = redo && k + 1 == rec->sub;
		Fspb__Command *c = NULL;

		if (!again) {
			r.sub = k + 1;
			r.nsub = n;
			r.result = 0;
			r.flags = 0;
			r.a = r.b = 0;
			r.mode = r.gid = 0;
		}
		rc = decode(b->cmds[k].data, b->cmds[k].len, false, &c);
		if (rc)
			break;
		if (c && c->op_case == FSPB__COMMAND__OP_BATCH) {
			fspb__command__free_unpacked(c, NULL);
			c = NULL; // no batch in a batch: EINVAL
		}
		rc = apply_batch_prepare(sm, c, false);
		if (!rc)
			rc = run_one(sm, client_id, c, &r, again);
		if (c)
			fspb__command__free_unpacked(c, NULL);
	}
	int end = apply_batch_end(sm, !rc);
	*rec = r;
	return rc ? rc : end;
}

int sm_apply_entry(struct sm *sm, uint64_t index, uint64_t client_id, uint64_t seq,
		   uint64_t min_pending, const void *cmd, size_t len, int64_t *result)
{
	int rc = check_next_index(sm, index);
	if (rc)
		return rc;
	struct sm_record rec;
	if ((rc = maybe_compact(sm)))
		return fail(sm, index, rc);
	uint64_t cmd_hash = sm_cmd_hash(cmd, len);
	bool redo = sm->redo_pending && sm->redo_rec.index == index;
	if (redo) {
		// Decided before the crash; do not decide again. It must be the
		// same command, or the caller's log is not the one we applied. A
		// journal written before sm_cmd_hash holds the FNV-1a of the
		// command: accept that too.
		if ((sm->redo_rec.cmd_hash != cmd_hash &&
		     sm->redo_rec.cmd_hash != sm_hash(cmd, len)) ||
		    sm->redo_rec.client != client_id || sm->redo_rec.seq != seq) {
			fprintf(stderr,
				"sm: apply %llu: not the command being applied at the crash\n",
				(unsigned long long)index);
			return -EINVAL;
		}
		rec = sm->redo_rec;
	} else {
		memset(&rec, 0, sizeof(rec));
		rec.index = index;
		rec.client = client_id;
		rec.seq = seq;
		rec.min_pending = min_pending;
		rec.cmd_hash = cmd_hash;
	}
	Fspb__Command *c = NULL;
	if (!(rec.flags & SM_REC_SKIP) && (rc = decode(cmd, len, true, &c)))
		return fail(sm, index, rc);
	bool is_batch = c && c->op_case == FSPB__COMMAND__OP_BATCH;
	bool batch = is_batch && c->batch->n_cmds > 0 && c->batch->n_cmds <= SM_BATCH_MAX;
	// A batch's records name their sub-command (sub >= 1); a redo record
	// of a batch with none would resume nowhere and mark it applied.
	if (redo && !(rec.flags & SM_REC_SKIP) &&
	    (rec.sub ? !batch || c->batch->n_cmds != rec.nsub : batch)) {
		fprintf(stderr, "sm: apply %llu: not the batch being applied at the crash\n",
			(unsigned long long)index);
		sm_decode_free(c, cmd, len);
		return -EINVAL;
	}
	if (sm->test_apply_delay_us)
		usleep(sm->test_apply_delay_us);
	test_gate_wait(sm->test_apply_gate);
	// Counted once it applies: not while a test hook holds it.
	if (c)
		count_from(sm, c->node);
	if (!redo) {
		int64_t prev;
		enum dedup_verdict v = dedup_check(sm->dd, client_id, seq, &prev);
		if (v != DEDUP_NEW) {
			rec.flags = SM_REC_SKIP;
			rec.result = v == DEDUP_DUPLICATE ? (int32_t)prev : SM_RESULT_STALE;
			// A batch's result does not fit `result`; a stale batch's
			// callers all get SM_RESULT_STALE.
			if (v == DEDUP_DUPLICATE)
				rec.results = (uint64_t)prev;
			else if (is_batch)
				rec.results = batch_all(SM_RESULT_STALE);
			rc = sm_journal_append(&sm->journal, &rec);
			if (!rc)
				sm->last_rec = rec;
		}
	}
	sm->redo_pending = false;
	if (!rc && batch && !(rec.flags & SM_REC_SKIP)) {
		rc = run_batch(sm, client_id, c->batch, &rec, redo);
	} else if (!rc && !(rec.flags & SM_REC_SKIP)) {
		// A batch too big or empty is an undecodable command (EINVAL),
		// refused as a whole: the errno is every sub-command's.
		if (is_batch && !redo)
			rec.results = batch_all(EINVAL);
		rc = run_one(sm, client_id, is_batch ? NULL : c, &rec, redo);
	}
	if (!rc && !(rec.flags & SM_REC_SKIP))
		rc = record_dedup(sm, &rec);
	sm_decode_free(c, cmd, len);
	if (rc)
		return fail(sm, index, rc);
	sm->applied = index;
	*result = sm_rec_entry_result(&rec);
	return 0;
}

int sm_apply(struct sm *sm, uint64_t index, uint64_t client_id, uint64_t seq, uint64_t min_pending,
	     const void *cmd, size_t len, int *result)
{
	int64_t r = 0;
	int rc = sm_apply_entry(sm, index, client_id, seq, min_pending, cmd, len, &r);

	if (!rc)
		*result = (int)r;
	return rc;
}

int sm_apply_empty(struct sm *sm, uint64_t index)
{
	int rc = check_next_index(sm, index);
	if (rc)
		return rc;
	struct sm_record rec = {.index = index, .flags = SM_REC_SKIP};
	if (sm->redo_pending && sm->redo_rec.index == index &&
	    (sm->redo_rec.cmd_hash != 0 || sm->redo_rec.client != 0)) {
		fprintf(stderr,
			"sm: apply %llu: empty, but a command was being applied at the crash\n",
			(unsigned long long)index);
		return -EINVAL;
	}
	rc = maybe_compact(sm);
	sm->redo_pending = false;
	if (!rc)
		rc = sm_journal_append(&sm->journal, &rec);
	if (rc)
		return fail(sm, index, rc);
	sm->last_rec = rec;
	sm->applied = index;
	return 0;
}
