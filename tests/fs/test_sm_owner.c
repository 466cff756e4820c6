// Owner and mode at apply (apply.c, set_owner_mode): a create, mkdir or
// SetAttr that would chown or chmod an object to what it already has makes
// no syscall, and the result is still what chown(2) and chmod(2) one by one
// would leave: set-id bits cleared by a chown to the same owner, file
// capabilities removed by it, a set-group-id directory's bit. The counts
// are sm_test_attr_calls (chown, chmod and security.capability reads); a
// stop after every step of these commands is in test_sm_steps
// (test_own_ids_crash_after_every_step).
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"

#define D1 ((1ULL << 48) | 1)
#define D2 ((1ULL << 48) | 2)
#define F1 ((1ULL << 48) | 11)
#define F2 ((1ULL << 48) | 12)
#define L1 ((1ULL << 48) | 13)

struct fx {
	char *dir;
	struct sm *sm;
	mode_t umask_was;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	// The node's umask limits what a create makes at once; 022 is what
	// the cases below assume (a chmod for a mode it masks is counted).
	f->umask_was = umask(022);
	f->dir = tl_mkdtemp();
	tl_use_own_ids(true); // commands by the node's own uid and gid (root in CI)
	*state = f;
	return sm_open(f->dir, 1, &f->sm);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->sm)
		sm_close(f->sm);
	tl_rmtree(f->dir);
	umask(f->umask_was);
	tl_use_own_ids(false);
	free(f);
	return 0;
}

static int setattr_own(struct sm *sm, uint64_t ino, uint32_t valid, uint32_t mode)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	s.ino = ino;
	s.valid = valid;
	s.uid = geteuid();
	s.gid = getegid();
	s.mode = mode;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &s;
	return tl_apply(sm, &c);
}

static mode_t mode_of(struct sm *sm, uint64_t id)
{
	struct stat st;
	assert_int_equal(sm_getattr(sm, id, &st), 0);
	assert_int_equal(st.st_uid, geteuid());
	assert_int_equal(st.st_gid, getegid());
	return st.st_mode & 07777;
}

// A create by the node's own ids with a mode the umask lets through, then
// tar's chown and chmod to the same: no chown or chmod at all, and no
// read of a capability the file was made without.
static void test_same_owner_and_mode_no_calls(void **state)
{
	struct fx *f = *state;
	uint64_t before = sm_test_attr_calls(f->sm);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0755), 0);
	assert_int_equal(tl_mknod(f->sm, D1, "f", F1, S_IFREG | 0644), 0);
	assert_int_equal(setattr_own(f->sm, F1, SM_SET_UID | SM_SET_GID, 0), 0);
	assert_int_equal(setattr_own(f->sm, F1, SM_SET_MODE, 0644), 0);
	assert_int_equal(setattr_own(f->sm, D1, SM_SET_UID | SM_SET_GID | SM_SET_MODE, 0755), 0);
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 0);
	assert_int_equal(mode_of(f->sm, D1), 0755);
	assert_int_equal(mode_of(f->sm, F1), 0644);
}

// What does change still does, one call each: a mode the umask masks at
// create, set-id and sticky bits, a real chmod.
static void test_changes_still_made(void **state)
{
	struct fx *f = *state;
	uint64_t before = sm_test_attr_calls(f->sm);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "w", D1, 0777), 0); // umask 022: chmod
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 1);
	assert_int_equal(mode_of(f->sm, D1), 0777);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "s", D2, 03755), 0); // set-gid, sticky
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 2);
	assert_int_equal(mode_of(f->sm, D2), 03755);
	assert_int_equal(tl_mknod(f->sm, D2, "f", F1, S_IFREG | 04755), 0); // set-uid: chmod
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 3);
	assert_int_equal(mode_of(f->sm, F1), 04755);
	assert_int_equal(setattr_own(f->sm, F1, SM_SET_MODE, 0600), 0);
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 4);
	assert_int_equal(mode_of(f->sm, F1), 0600);
}

// chown(2) to the same owner still clears set-uid (plan_setattr's mode):
// the chown is skipped, the chmod is not.
static void test_same_owner_clears_setuid(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 06755), 0);
	assert_int_equal(mode_of(f->sm, F1), 06755);
	uint64_t before = sm_test_attr_calls(f->sm);
	assert_int_equal(setattr_own(f->sm, F1, SM_SET_UID, 0), 0);
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 1);
	assert_int_equal(mode_of(f->sm, F1), 0755);
}

// A file capability goes with a chown, to the same owner too (as on a
// local filesystem): that chown is made.
static void test_same_owner_drops_capability(void **state)
{
	struct fx *f = *state;
	if (geteuid() != 0) {
		skip(); // security.capability needs CAP_SETFCAP
		return;
	}
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 0755), 0);
	// struct vfs_cap_data, revision 2: CAP_NET_BIND_SERVICE permitted.
	uint8_t cap[20] = {0x00, 0x00, 0x00, 0x02, 0x00, 0x04};
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetXattr x = FSPB__SET_XATTR__INIT;
	x.ino = F1;
	x.name = "security.capability";
	x.value.data = cap;
	x.value.len = sizeof(cap);
	c.op_case = FSPB__COMMAND__OP_SETXATTR;
	c.setxattr = &x;
	assert_int_equal(tl_apply(f->sm, &c), 0);
	char buf[64];
	assert_int_equal(sm_getxattr(f->sm, F1, "security.capability", buf, sizeof(buf)), 20);
	assert_int_equal(setattr_own(f->sm, F1, SM_SET_UID | SM_SET_GID, 0), 0);
	assert_int_equal(sm_getxattr(f->sm, F1, "security.capability", buf, sizeof(buf)),
			 -ENODATA);
	// Without one, the next chown to the same owner is skipped, after a
	// read: once given one, the file is no longer known to have none.
	uint64_t before = sm_test_attr_calls(f->sm);
	assert_int_equal(setattr_own(f->sm, F1, SM_SET_UID | SM_SET_GID, 0), 0);
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 1);
}

// A file the state machine did not make since it opened may have a
// capability: a chown to the same owner reads it (and, none there, is
// skipped).
static void test_reopened_reads_capability(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 0644), 0);
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	uint64_t before = sm_test_attr_calls(f->sm);
	assert_int_equal(setattr_own(f->sm, F1, SM_SET_UID | SM_SET_GID, 0), 0);
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 1);
	assert_int_equal(mode_of(f->sm, F1), 0644);
}

// A filesystem or file type that keeps no security.* xattrs (the read
// fails with EOPNOTSUPP) has no capability to lose: the chown to the same
// owner is skipped and the apply goes on. Another failure of the read
// still stops the apply (a local fault) rather than guess.
static void test_caps_unsupported_is_none(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "g", F2, S_IFIFO | 0644), 0);
	sm_close(f->sm); // reopened: neither is known to have no capability
	f->sm = NULL;
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	sm_test_caps_errno(f->sm, EOPNOTSUPP);
	uint64_t before = sm_test_attr_calls(f->sm);
	assert_int_equal(setattr_own(f->sm, F1, SM_SET_UID | SM_SET_GID | SM_SET_MODE, 0600), 0);
	assert_int_equal(setattr_own(f->sm, F2, SM_SET_UID | SM_SET_GID, 0), 0);
	// The two reads and F1's chmod; no chown.
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 3);
	assert_int_equal(mode_of(f->sm, F1), 0600);
	assert_int_equal(mode_of(f->sm, F2), 0644);
	sm_test_caps_errno(f->sm, EIO);
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	s.ino = F1;
	s.valid = SM_SET_UID | SM_SET_GID;
	s.uid = geteuid();
	s.gid = getegid();
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &s;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	int result = 0;
	assert_int_equal(sm_apply(f->sm, sm_applied_index(f->sm) + 1, 0, 0, 0, buf, len, &result),
			 -EIO);
	free(buf);
}

// Another owner is given with one chown and one chmod, a symlink's owner
// with its chown only.
static void test_other_owner(void **state)
{
	struct fx *f = *state;
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Symlink s = FSPB__SYMLINK__INIT;
	s.parent = SM_ROOT_ID;
	s.name = "l";
	s.ino = L1;
	s.target = "x";
	c.op_case = FSPB__COMMAND__OP_SYMLINK;
	c.symlink = &s;
	assert_int_equal(tl_apply(f->sm, &c), 0);
	uint64_t before = sm_test_attr_calls(f->sm);
	Fspb__Command m = FSPB__COMMAND__INIT;
	Fspb__Mknod n = FSPB__MKNOD__INIT;
	n.parent = SM_ROOT_ID;
	n.name = "f";
	n.ino = F2;
	n.mode = S_IFREG | 0644;
	m.op_case = FSPB__COMMAND__OP_MKNOD;
	m.mknod = &n;
	m.uid = 1000;
	m.gid = 100;
	assert_int_equal(tl_apply(f->sm, &m), 0);
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 2);
	struct stat st;
	assert_int_equal(sm_getattr(f->sm, F2, &st), 0);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 100);
	assert_int_equal(st.st_mode & 07777, 0644);
	Fspb__Command a = FSPB__COMMAND__INIT;
	Fspb__SetAttr sa = FSPB__SET_ATTR__INIT;
	sa.ino = L1;
	sa.valid = SM_SET_UID | SM_SET_GID;
	sa.uid = 1000;
	sa.gid = 100;
	a.op_case = FSPB__COMMAND__OP_SETATTR;
	a.setattr = &sa;
	assert_int_equal(tl_apply(f->sm, &a), 0);
	assert_int_equal(sm_test_attr_calls(f->sm) - before, 3);
	assert_int_equal(sm_getattr(f->sm, L1, &st), 0);
	assert_int_equal(st.st_uid, 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_same_owner_and_mode_no_calls, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_changes_still_made, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_same_owner_clears_setuid, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_same_owner_drops_capability, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_owner, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopened_reads_capability, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_caps_unsupported_is_none, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
