// Crash safety, exhaustively: for every command of a scenario covering every op, stop its execution
// after each of its steps in turn (as a crash there would), restart, redo, finish, and compare with
// a clean run.
#include <errno.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "tree_compare.h"

#define D1 ((1ULL << 48) | 1)
#define D2 ((1ULL << 48) | 2)
#define D3 ((1ULL << 48) | 3)
#define F1 ((1ULL << 48) | 11)
#define F2 ((1ULL << 48) | 12)
#define F3 ((1ULL << 48) | 13)
#define F4 ((1ULL << 48) | 14)

#define MAX_CMDS TL_CMDS_MAX

static void setattr_(uint64_t ino, uint32_t valid, uint32_t uid, uint32_t gid, uint32_t mode)
{
	Fspb__SetAttr a = FSPB__SET_ATTR__INIT;
	a.ino = ino;
	a.valid = valid;
	a.uid = uid;
	a.gid = gid;
	a.mode = mode;
	tl_setattr(NULL, &a);
}

// Every op, by uid 1000 gid 100 (not the node's own ids), recorded in s.
static void build(struct tl_cmds *s)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	s->uid = 1000;
	s->gid = 100;
	tl_record(s);
	tl_mkdir(NULL, SM_ROOT_ID, "a", D1, 0755);
	tl_mkdir(NULL, SM_ROOT_ID, "b", D2, 02775);
	tl_mknod(NULL, D1, "f", F1, S_IFREG | 0644);
	tl_write(NULL, F1, 0, "hello", 5);
	Fspb__Write w = FSPB__WRITE__INIT; // an append: tl_write makes none
	w.ino = F1;
	w.offset = 2;
	w.data.data = (uint8_t *)"world";
	w.data.len = 5;
	w.append = 1;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	tl_apply(NULL, &c);
	tl_setxattr(NULL, F1, "user.x", "1", 0);
	tl_link(NULL, F1, D2, "g");
	tl_symlink(NULL, D1, "l", F2, "f");
	tl_mknod(NULL, D1, "p", F3, S_IFIFO | 0600);
	setattr_(F1, SM_SET_UID | SM_SET_GID | SM_SET_MODE, 7, 8, 04755);
	Fspb__SetAttr sb = FSPB__SET_ATTR__INIT;
	sb.ino = F1;
	sb.valid = SM_SET_SIZE | SM_SET_MTIME | SM_SET_ATIME;
	sb.size = 7;
	sb.mtime_ns = 123456789;
	sb.atime_ns = 987654321;
	tl_setattr(NULL, &sb);
	tl_fallocate(NULL, F1, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2);
	tl_mknod(NULL, D2, "h", F4, S_IFREG | 0600);
	tl_rename(NULL, D2, "h", D1, "l", 0);		    // over a symlink: F2 an orphan
	tl_rename(NULL, D1, "p", D2, "g", RENAME_EXCHANGE); // a FIFO and a file swap places
	tl_mkdir(NULL, SM_ROOT_ID, "e", D3, 0700);
	tl_rename(NULL, SM_ROOT_ID, "a", SM_ROOT_ID, "e", 0); // a directory onto an empty one
	tl_rename(NULL, SM_ROOT_ID, "b", D1, "bb", 0);	      // a directory to another parent
	tl_removexattr(NULL, F1, "user.x");
	tl_unlink(NULL, D1, "p", 0);
	tl_unlink(NULL, D1, "f", 0); // F1 an orphan
	tl_write(NULL, F1, 100, "orphan data", 11);
	tl_release(NULL, F2);
	tl_release(NULL, F1);
	tl_unlink(NULL, D2, "g", 0);
	tl_unlink(NULL, D1, "bb", 1);
	tl_record(NULL);
}

// Creates and SetAttrs by the node's own ids, where apply skips a chown or
// chmod to what an object already has (apply.c, set_owner_mode), and the
// ones it must still make: a mode the umask masked, set-id bits, a chown
// to the same owner that clears set-uid or removes a capability.
static void build_own_ids(struct tl_cmds *s)
{
	uint32_t u = geteuid(), g = getegid();
	s->uid = u;
	s->gid = g;
	tl_record(s);
	tl_mkdir(NULL, SM_ROOT_ID, "a", D1, 0755);
	tl_mkdir(NULL, SM_ROOT_ID, "b", D2, 02777);
	tl_mknod(NULL, D1, "f", F1, S_IFREG | 0644);
	tl_mknod(NULL, D2, "g", F2, S_IFREG | 04755);
	setattr_(F1, SM_SET_UID | SM_SET_GID, u, g, 0);
	setattr_(F1, SM_SET_MODE, 0, 0, 0644);
	setattr_(F2, SM_SET_UID, u, 0, 0); // clears set-uid
	setattr_(D1, SM_SET_UID | SM_SET_GID | SM_SET_MODE, u, g, 0700);
	if (u == 0) { // security.capability needs CAP_SETFCAP
		// struct vfs_cap_data, revision 2: CAP_NET_BIND_SERVICE permitted.
		static uint8_t cap[20] = {0x00, 0x00, 0x00, 0x02, 0x00, 0x04};
		Fspb__Command c = FSPB__COMMAND__INIT;
		Fspb__SetXattr sx = FSPB__SET_XATTR__INIT;
		sx.ino = F1;
		sx.name = "security.capability";
		sx.value.data = cap;
		sx.value.len = sizeof(cap);
		c.op_case = FSPB__COMMAND__OP_SETXATTR;
		c.setxattr = &sx;
		tl_apply(NULL, &c);
		setattr_(F1, SM_SET_UID | SM_SET_GID, u, g, 0); // removes it
	}
	setattr_(F1, SM_SET_UID | SM_SET_GID | SM_SET_MODE, 1000, 100, 0640);
	tl_record(NULL);
}

static void print_diff(void *arg, const char *msg)
{
	fprintf(stderr, "  diff (%s): %s\n", (const char *)arg, msg);
}

// Applies commands [0, n) of s to a fresh state machine in dir, left open in
// *slot (where teardown finds it if an assertion fails).
static struct sm *replay_prefix(const struct tl_cmds *s, const char *dir, int n, int *results,
				struct sm **slot)
{
	int res;
	assert_int_equal(sm_open(dir, 1, slot), 0);
	for (int j = 0; j < n; j++) {
		assert_int_equal(
		    sm_apply(*slot, (uint64_t)j + 1, 0, 0, 0, s->cmd[j], s->len[j], &res), 0);
		if (results)
			results[j] = res;
	}
	return *slot;
}

// Everything a run creates, removed by teardown also when an assertion fails.
struct fx {
	struct tl_cmds s;
	char *ref[MAX_CMDS];
	char *dir;
	struct sm *sm;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sm);
	tl_rmtree(f->dir);
	for (int i = 0; i < MAX_CMDS; i++)
		tl_rmtree(f->ref[i]);
	tl_record(NULL); // a failed build left it on
	tl_cmds_free(&f->s);
	free(f);
	return 0;
}

static void crash_after_every_step(struct fx *f, void (*builder)(struct tl_cmds *s))
{
	struct tl_cmds *sp = &f->s;
	builder(sp);
	struct tl_cmds s = *sp;
	// ref[i]: the state after commands 0..i, applied without a crash. A stop
	// inside command i is compared right after its redo, so a redo that
	// diverges cannot be masked by later commands.
	char **ref = f->ref;
	int want[MAX_CMDS];
	for (int i = 0; i < s.n; i++) {
		ref[i] = tl_mkdtemp();
		sm_close(replay_prefix(&s, ref[i], i + 1, want, &f->sm));
		f->sm = NULL;
	}
	for (int i = 0; i < s.n; i++)
		assert_int_equal(want[i], 0); // the scenario is meant to succeed throughout

	int crashes = 0;
	for (int i = 0; i < s.n; i++) {
		for (int k = 1;; k++) {
			char *dir = f->dir = tl_mkdtemp();
			int res;
			struct sm *sm = replay_prefix(&s, dir, i, NULL, &f->sm);
			sm_test_crash_at(sm, k);
			int rc = sm_apply(sm, (uint64_t)i + 1, 0, 0, 0, s.cmd[i], s.len[i], &res);
			sm_close(sm);
			f->sm = NULL;
			if (rc == 0) { // fewer than k steps: every stop point of i visited
				tl_rmtree(dir);
				f->dir = NULL;
				break;
			}
			assert_int_equal(rc, -ECANCELED);
			crashes++;
			// Restart: command i is delivered again and redone.
			assert_int_equal(sm_open(dir, 1, &f->sm), 0);
			sm = f->sm;
			assert_int_equal(sm_applied_index(sm), i);
			assert_int_equal(
			    sm_apply(sm, (uint64_t)i + 1, 0, 0, 0, s.cmd[i], s.len[i], &res), 0);
			assert_int_equal(res, want[i]);
			sm_close(sm);
			f->sm = NULL;
			char where[64];
			snprintf(where, sizeof(where), "stop at step %d of command %d", k, i);
			assert_int_equal(
			    tree_compare(ref[i], dir, TREE_CMP_DATA, print_diff, where), 0);
			tl_rmtree(dir);
		}
	}
	fprintf(stderr, "  %d commands, stopped at %d intermediate states, all converged\n", s.n,
		crashes);
	assert_true(crashes > 3 * s.n);
}

static void test_crash_after_every_step(void **state)
{
	crash_after_every_step(*state, build);
}

static void test_own_ids_crash_after_every_step(void **state)
{
	crash_after_every_step(*state, build_own_ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_crash_after_every_step, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_own_ids_crash_after_every_step, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
