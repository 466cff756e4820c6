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

// Removes path and everything under it (what the power-loss drop or an
// emptied data dir leaves out).
static void remove_part(const char *dir, const char *part)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, part);
	char *copy = strdup(path);
	assert_non_null(copy);
	tl_rmtree(copy);
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
	remove_part(f->dir, "tree");
	remove_part(f->dir, "ids");
	remove_part(f->dir, "sm/journal");
	remove_part(f->dir, "sm/dedup");
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

// Makes node 1's image of a tree with a directory and a file into path.
static void make_image(const char *path)
{
	char *src = tl_mkdtemp();
	struct sm *a;
	assert_int_equal(sm_open(src, 1, &a), 0);
	assert_int_equal(tl_mkdir(a, SM_ROOT_ID, "d", THEIRS(1), 0755), 0);
	assert_int_equal(tl_mknod(a, THEIRS(1), "f", THEIRS(2), S_IFREG | 0644), 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	uint64_t index;
	assert_int_equal(sm_snapshot_make(a, sm_snap_fd_sink, &fd, &index), 0);
	close(fd);
	sm_close(a);
	tl_rmtree(src);
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
	make_image(path);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_applied_ids_raise_counter, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_applied_ids_past_block, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_install_keeps_reservation, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
