// Node ids (fs/sm.c's reservation) across what empties or replaces a data
// dir: a node rebuilt from its log, a snapshot installed while the node
// allocates. An id is never handed out twice.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "sm_snapshot.h"

#define NODE 2ULL
#define OURS(counter) ((NODE << 48) | (counter))
#define THEIRS(counter) ((1ULL << 48) | (counter))
#define BLOCK 4096 // fs/sm.c's ID_BLOCK

struct fx {
	char *dir;
	struct sm *sm;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tl_mkdtemp();
	if (!f || sm_open(f->dir, (uint32_t)NODE, &f->sm))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sm);
	tl_rmtree(f->dir);
	free(f);
	return 0;
}

// The reservation on disk (DATA/sm/next_id): counters below it are taken.
// 0 when there is none.
static uint64_t stored_reservation(const char *dir)
{
	char path[4096];
	uint64_t v = 0;
	snprintf(path, sizeof(path), "%s/sm/next_id", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 0; // nothing reserved yet
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &v, sizeof(v), 0), sizeof(v));
	close(fd);
	return v;
}

static uint64_t alloc_counter(struct sm *sm)
{
	uint64_t id;
	assert_int_equal(sm_alloc_id(sm, &id), 0);
	assert_int_equal(id >> 48, NODE);
	return id & 0xffffffffffffULL;
}

// Removes what the power-loss drop takes out of a data dir (fs/sm_reset.h):
// tree, ids index, journal, duplicate table.
static void drop_state(const char *dir)
{
	const char *parts[] = {"tree", "ids", "sm/journal", "sm/dedup"};
	char path[4096];
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, parts[i]);
		char *copy = strdup(path);
		assert_non_null(copy);
		tl_rmtree(copy);
	}
}

// A Batch of a mknod and a mkdir, as a mount's held commands travel.
static uint8_t *pack_batch(uint64_t file, uint64_t dir, size_t *len)
{
	Fspb__Command sub[2] = {FSPB__COMMAND__INIT, FSPB__COMMAND__INIT};
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	Fspb__Mkdir d = FSPB__MKDIR__INIT;
	m.parent = SM_ROOT_ID;
	m.name = "batched-file";
	m.ino = file;
	m.mode = S_IFREG | 0644;
	sub[0].op_case = FSPB__COMMAND__OP_MKNOD;
	sub[0].mknod = &m;
	d.parent = SM_ROOT_ID;
	d.name = "batched-dir";
	d.ino = dir;
	d.mode = 0755;
	sub[1].op_case = FSPB__COMMAND__OP_MKDIR;
	sub[1].mkdir = &d;
	ProtobufCBinaryData parts[2];
	for (int k = 0; k < 2; k++)
		parts[k].data = tl_pack(&sub[k], &parts[k].len);
	Fspb__Batch b = FSPB__BATCH__INIT;
	Fspb__Command c = FSPB__COMMAND__INIT;
	b.n_cmds = 2;
	b.cmds = parts;
	c.node = (uint32_t)NODE;
	c.op_case = FSPB__COMMAND__OP_BATCH;
	c.batch = &b;
	uint8_t *buf = tl_pack(&c, len);
	for (int k = 0; k < 2; k++)
		free(parts[k].data);
	return buf;
}

// A node rebuilt under its old id with an empty data dir (packaging/README.md
// §7) applies from the log the creates it proposed before: every kind of
// create, one in a batch, one removed again, one of another node. Its next
// id is above all of its own, and stays so once the tree is dropped again.
static void test_applied_ids_raise_counter(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", OURS(5), S_IFREG | 0644), 0);
	assert_int_equal(tl_symlink(f->sm, SM_ROOT_ID, "s", OURS(7), "f"), 0);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", OURS(9), 0755), 0);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "gone", OURS(20), S_IFREG | 0644), 0);
	assert_int_equal(tl_unlink(f->sm, SM_ROOT_ID, "gone", 0), 0);
	assert_int_equal(tl_release(f->sm, OURS(20)), 0);
	size_t len;
	uint8_t *buf = pack_batch(OURS(30), OURS(31), &len);
	int res;
	uint64_t next = sm_applied_index(f->sm) + 1;
	assert_int_equal(sm_apply(f->sm, next, 0, 0, 0, buf, len, &res), 0);
	free(buf);
	struct stat st;
	assert_int_equal(sm_getattr(f->sm, OURS(31), &st), 0);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "theirs", THEIRS(1000), 0755), 0);
	// Durable at apply, before any allocation or close.
	assert_true(stored_reservation(f->dir) > 31);
	assert_int_equal(alloc_counter(f->sm), 32);
	// The tree is dropped again (power loss): nothing to scan, the
	// reservation alone keeps the counter up.
	sm_close(f->sm);
	drop_state(f->dir);
	assert_int_equal(sm_open(f->dir, (uint32_t)NODE, &f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 0);
	assert_true(alloc_counter(f->sm) > 32);
}

// A replay far past the reservation stores it once per block crossed, not
// per create, and never falls behind the applied ids.
static void test_applied_ids_past_block(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "a", OURS(3 * BLOCK), 0755), 0);
	uint64_t r = stored_reservation(f->dir);
	assert_true(r > 3 * BLOCK);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "b", OURS(3 * BLOCK + 1), 0755), 0);
	assert_int_equal(stored_reservation(f->dir), r);
	assert_int_equal(alloc_counter(f->sm), 3 * BLOCK + 2);
}

// ---- A snapshot installed while the node allocates ids.

// A thread that, holding the tree's read lock (from an sm_readdir callback,
// so the install cannot swap its state in meanwhile), waits until the
// install copied sm/next_id into the state it builds, then allocates past
// the block reserved at the copy.
struct racer {
	struct sm *sm;
	const char *dir;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool locked;	// the read lock is held: the install may start
	uint64_t last; // the highest counter allocated
	int rc;
};

// Adds an inotify watch on dir/sub for creations; then whether dir/sub/name
// exists already (created before the watch).
static bool watch_for(int in, const char *dir, const char *sub, const char *name, int *rc)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (inotify_add_watch(in, path, IN_CREATE | IN_MOVED_TO) < 0 && !*rc)
		*rc = -errno;
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	return access(path, F_OK) == 0;
}

// Waits for the creation of name in a watched directory (or *rc set).
static void await_name(int in, const char *name, int *rc)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (!*rc) {
		struct pollfd p = {.fd = in, .events = POLLIN};
		if (poll(&p, 1, 30000) != 1) {
			*rc = -ETIMEDOUT;
			return;
		}
		ssize_t n = read(in, buf, sizeof(buf));
		for (ssize_t o = 0; o < n;) {
			const struct inotify_event *e = (const void *)(buf + o);
			if (e->len && !strcmp(e->name, name))
				return;
			o += (ssize_t)(sizeof(*e) + e->len);
		}
	}
}

// snap/ → snap/new → snap/new/sm → snap/new/sm/next_id, each watched
// before looking whether it is there already.
static void await_copy(struct racer *r)
{
	int in = inotify_init1(IN_CLOEXEC);
	if (in < 0) {
		r->rc = -errno;
		return;
	}
	static const char *const chain[][2] = {
	    {"snap", "new"}, {"snap/new", "sm"}, {"snap/new/sm", "next_id"}};
	for (size_t i = 0; i < 3 && !r->rc; i++) {
		if (!watch_for(in, r->dir, chain[i][0], chain[i][1], &r->rc))
			await_name(in, chain[i][1], &r->rc);
	}
	close(in);
}

static int alloc_after_copy(void *arg, const char *name, const struct stat *st, off_t next)
{
	struct racer *r = arg;
	(void)name;
	(void)st;
	(void)next;
	pthread_mutex_lock(&r->mu);
	r->locked = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	await_copy(r);
	for (int i = 0; i < BLOCK + 1 && !r->rc; i++) {
		uint64_t id;
		r->rc = sm_alloc_id(r->sm, &id);
		r->last = id & 0xffffffffffffULL;
	}
	return 1; // one entry is enough
}

static void *race_install(void *arg)
{
	struct racer *r = arg;
	int rc = sm_readdir(r->sm, SM_ROOT_ID, 0, false, alloc_after_copy, r);
	pthread_mutex_lock(&r->mu);
	if (rc && !r->rc)
		r->rc = rc;
	r->locked = true; // also when it failed: the test must not wait forever
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

// The install copies sm/next_id without the id lock; the node reserves a
// new block before the copy is swapped in. The reservation on disk after the
// install still covers every id handed out.
static void test_install_keeps_reservation(void **state)
{
	struct fx *f = *state;
	char *img_dir = tl_mkdtemp();
	char path[4096];
	snprintf(path, sizeof(path), "%s/image", img_dir);
	tl_make_image(path, THEIRS(1), THEIRS(2));
	alloc_counter(f->sm); // reserves [1, 1 + BLOCK) on disk
	snprintf(path, sizeof(path), "%s/snap", f->dir);
	assert_int_equal(mkdir(path, 0700), 0); // watched before the install starts
	struct racer r = {.sm = f->sm, .dir = f->dir};
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, race_install, &r), 0);
	pthread_mutex_lock(&r.mu);
	while (!r.locked)
		pthread_cond_wait(&r.cv, &r.mu);
	pthread_mutex_unlock(&r.mu);
	snprintf(path, sizeof(path), "%s/image", img_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	int rc = sm_snapshot_install(f->sm, sm_snap_fd_source, &fd);
	close(fd);
	pthread_join(th, NULL);
	pthread_mutex_destroy(&r.mu);
	pthread_cond_destroy(&r.cv);
	tl_rmtree(img_dir);
	assert_int_equal(rc, 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.last, BLOCK + 2);
	struct stat st;
	assert_int_equal(sm_getattr(f->sm, THEIRS(2), &st), 0);
	assert_true(stored_reservation(f->dir) > r.last);
	assert_true(alloc_counter(f->sm) > r.last);
}

// ---- Ids of objects gone before an image (fs/sm_id_hw.h).

// Writes sm's image to path.
static void image_to(struct sm *sm, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	uint64_t index;
	assert_int_equal(sm_snapshot_make(sm, sm_snap_fd_sink, &fd, &index), 0);
	close(fd);
}

static int install_from(struct sm *sm, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	int rc = sm_snapshot_install(sm, sm_snap_fd_source, &fd);
	close(fd);
	return rc;
}

// Node 1 applied creates of ours (node 2's) whose objects were all deleted
// before its image; then node 1 restarted and its tree was dropped (power
// loss), so neither its tree nor its memory holds them. Node 2, rebuilt
// from an empty data dir (f->sm), installs node 1's image: its next id is
// above every id it handed out, including the deleted ones. Without the
// marks in the image its counter restarted at 1.
static void test_image_reserves_deleted_ids(void **state)
{
	struct fx *f = *state;
	char *src = tl_mkdtemp(), path[4096];
	struct sm *a;
	assert_int_equal(sm_open(src, 1, &a), 0);
	assert_int_equal(tl_mknod(a, SM_ROOT_ID, "x", OURS(7), S_IFREG | 0644), 0);
	assert_int_equal(tl_mkdir(a, SM_ROOT_ID, "y", OURS(2 * BLOCK + 5), 0755), 0);
	assert_int_equal(tl_mkdir(a, SM_ROOT_ID, "kept", THEIRS(3), 0755), 0);
	assert_int_equal(tl_unlink(a, SM_ROOT_ID, "x", 0), 0);
	assert_int_equal(tl_release(a, OURS(7)), 0);
	assert_int_equal(tl_unlink(a, SM_ROOT_ID, "y", 1), 0);
	sm_close(a);
	drop_state(src);
	assert_int_equal(sm_open(src, 1, &a), 0);
	snprintf(path, sizeof(path), "%s/image", src);
	image_to(a, path);
	sm_close(a);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	uint64_t read_before = sm_snapshot_install_progress();
	assert_int_equal(install_from(f->sm, path), 0);
	// Every byte of the image was read, and counted for the start's
	// progress reports (fs/svc_start.h).
	assert_int_equal(sm_snapshot_install_progress() - read_before, st.st_size);
	tl_rmtree(src);
	uint64_t next = alloc_counter(f->sm);
	assert_true(next > 2 * BLOCK + 5);
	assert_true(stored_reservation(f->dir) > next);
	// And it stays above them once this node's own tree is dropped.
	sm_close(f->sm);
	drop_state(f->dir);
	assert_int_equal(sm_open(f->dir, (uint32_t)NODE, &f->sm), 0);
	assert_true(alloc_counter(f->sm) > next);
}

// An id allocated by a FUSE thread (which takes the id lock, not the tree's)
// at the first instant the image's state is live.
static void alloc_at_swap(struct sm *sm, void *arg)
{
	uint64_t *id = arg;
	if (sm_alloc_id(sm, id))
		*id = 0;
}

// The same image's marks, seen by an id allocated just as the install swaps
// the new state in: the counter was raised past the image's mark together
// with the swap, not after it (an id allocated between the two was below
// the mark: one handed out before the image).
static void test_image_ids_raised_with_swap(void **state)
{
	struct fx *f = *state;
	char *src = tl_mkdtemp(), path[4096];
	struct sm *a;
	assert_int_equal(sm_open(src, 1, &a), 0);
	assert_int_equal(tl_mkdir(a, SM_ROOT_ID, "y", OURS(2 * BLOCK + 5), 0755), 0);
	assert_int_equal(tl_unlink(a, SM_ROOT_ID, "y", 1), 0);
	snprintf(path, sizeof(path), "%s/image", src);
	image_to(a, path);
	sm_close(a);
	uint64_t id = 0;
	sm_snapshot_set_swap_hook(alloc_at_swap, &id);
	int rc = install_from(f->sm, path);
	sm_snapshot_set_swap_hook(NULL, NULL);
	tl_rmtree(src);
	assert_int_equal(rc, 0);
	assert_int_equal(id >> 48, NODE);
	assert_true((id & 0xffffffffffffULL) > 2 * BLOCK + 5);
	assert_true(alloc_counter(f->sm) > (id & 0xffffffffffffULL));
}

// FNV-1a 64, as images are checksummed (fs/sm_image.h).
static uint64_t fnv(const uint8_t *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

// An image of the version before the marks (1: no table after the
// duplicate table) still installs: made here from a version 2 image by
// taking the table out.
static void test_old_image_installs(void **state)
{
	struct fx *f = *state;
	char *src = tl_mkdtemp(), path[4096];
	snprintf(path, sizeof(path), "%s/image", src);
	tl_make_image(path, THEIRS(1), THEIRS(2));
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	size_t len = (size_t)st.st_size;
	uint8_t *img = malloc(len);
	assert_non_null(img);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, img, len, 0), (ssize_t)len);
	// "RFSSNAP1" | version u32 | index u64 | dedup_len u64 | dedup | n u32 | n x 12
	uint32_t version, n;
	uint64_t dedup_len, h;
	memcpy(&version, img + 8, 4);
	assert_int_equal(version, 2);
	memcpy(&dedup_len, img + 20, 8);
	size_t at = 28 + dedup_len;
	memcpy(&n, img + at, 4);
	assert_true(n >= 1); // node 1's own creates
	size_t cut = 4 + (size_t)n * 12;
	memmove(img + at, img + at + cut, len - at - cut);
	len -= cut;
	version = 1;
	memcpy(img + 8, &version, 4);
	h = fnv(img, len - 8);
	memcpy(img + len - 8, &h, 8);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, img, len, 0), (ssize_t)len);
	close(fd);
	free(img);
	assert_int_equal(install_from(f->sm, path), 0);
	tl_rmtree(src);
	assert_int_equal(sm_getattr(f->sm, THEIRS(2), &st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_applied_ids_raise_counter, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_applied_ids_past_block, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_install_keeps_reservation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_image_reserves_deleted_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_image_ids_raised_with_swap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_old_image_installs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
