// test_setattr_merge.c — a merged SetAttr (fs/cmd_merge.h) leaves the
// state machine exactly as its parts applied one after the other: two data
// dirs get the same files, one the commands one by one, the other their
// merge, and must compare identical (tree_compare: modes, owners, times,
// ctimes) for every combination of what each part sets.
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "cmd_merge.h"
#include "sm.h"
#include "tree_compare.h"

struct fx {
	char *dir[2];
	struct sm *sm[2];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	for (int i = 0; i < 2; i++) {
		f->dir[i] = tl_mkdtemp();
		if (sm_open(f->dir[i], 1, &f->sm[i]))
			return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	for (int i = 0; i < 2; i++) {
		sm_close(f->sm[i]);
		tl_rmtree(f->dir[i]);
	}
	free(f);
	return 0;
}

// Applies c at time t (the proposer's clock, as the mount stamps it).
static int apply_at(struct sm *sm, Fspb__Command *c, int64_t t)
{
	size_t len;
	int result = -1;
	c->time_ns = t;
	uint8_t *buf = tl_pack(c, &len);
	int rc = sm_apply(sm, sm_applied_index(sm) + 1, 0, 0, 0, buf, len, &result);
	free(buf);
	assert_int_equal(rc, 0);
	return result;
}

static int setattr_at(struct sm *sm, const Fspb__SetAttr *s, int64_t t)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = (Fspb__SetAttr *)s;
	return apply_at(sm, &c, t);
}

static void diff(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "difference: %s\n", msg);
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

// Modes with and without set-id bits and group execute: what chown clears
// depends on all three.
static const uint32_t modes[] = {0644, 04755, 02755, 06755, 02745, 06711, 04600, 07777, 0};

// A random part: any subset of mode, owner, group, times (explicit or now),
// as fuse_behind_setattr proposes them (never a size). A NOW bit comes with
// the proposer's clock in the field, as ffs/fuse_behind_setattr put it.
static void random_part(Fspb__SetAttr *s, uint64_t ino, int64_t t, bool symlink)
{
	uint32_t bits[] = {SM_SET_MODE,	 SM_SET_UID,	   SM_SET_GID,
			   SM_SET_ATIME, SM_SET_MTIME, SM_SET_ATIME_NOW,
			   SM_SET_MTIME_NOW};
	*s = (Fspb__SetAttr)FSPB__SET_ATTR__INIT;
	s->ino = ino;
	do {
		s->valid = 0;
		for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
			if (next() % 3 == 0)
				s->valid |= bits[i];
		if (symlink)
			s->valid &= ~SM_SET_MODE; // EOPNOTSUPP, never proposed
		if ((s->valid & SM_SET_ATIME) && (s->valid & SM_SET_ATIME_NOW))
			s->valid &= ~SM_SET_ATIME;
		if ((s->valid & SM_SET_MTIME) && (s->valid & SM_SET_MTIME_NOW))
			s->valid &= ~SM_SET_MTIME;
	} while (!s->valid);
	s->mode = modes[next() % (sizeof(modes) / sizeof(modes[0]))];
	s->uid = (uint32_t)(next() % 3);
	s->gid = (uint32_t)(next() % 3);
	s->atime_ns = (s->valid & SM_SET_ATIME_NOW) ? t : (int64_t)(next() % 1000000) * 1000 + 7;
	s->mtime_ns = (s->valid & SM_SET_MTIME_NOW) ? t : (int64_t)(next() % 1000000) * 1000 + 9;
}

#define CASES 600

// Per case a new object (regular file; a directory or a symlink one time in
// six each: chown clears no set-id bit of a directory) made
// in both state machines, then two to four random setattrs: one by one in
// sm[0], merged in sm[1] (as fuse_behind_setattr merges them in the plug).
static void test_merged_equals_sequence(void **state)
{
	struct fx *f = *state;
	int64_t t = 1700000000LL * 1000000000LL;
	unsigned merged_modes = 0, cleared = 0;
	for (unsigned k = 0; k < CASES; k++) {
		uint64_t ino = (1ULL << 48) | (k + 1);
		char name[32];
		bool symlink = k % 6 == 5, dir = k % 6 == 4;
		uint32_t mode = S_IFREG | modes[next() % (sizeof(modes) / sizeof(modes[0]))];
		snprintf(name, sizeof(name), "f%u", k);
		t += 1000;
		for (int i = 0; i < 2; i++) {
			Fspb__Command c = FSPB__COMMAND__INIT;
			Fspb__Mknod m = FSPB__MKNOD__INIT;
			Fspb__Symlink l = FSPB__SYMLINK__INIT;
			Fspb__Mkdir d = FSPB__MKDIR__INIT;
			if (dir) {
				d.parent = SM_ROOT_ID;
				d.name = name;
				d.ino = ino;
				d.mode = S_IFDIR | (mode & 07777);
				c.op_case = FSPB__COMMAND__OP_MKDIR;
				c.mkdir = &d;
			} else if (symlink) {
				l.parent = SM_ROOT_ID;
				l.name = name;
				l.ino = ino;
				l.target = "somewhere";
				c.op_case = FSPB__COMMAND__OP_SYMLINK;
				c.symlink = &l;
			} else {
				m.parent = SM_ROOT_ID;
				m.name = name;
				m.ino = ino;
				m.mode = mode;
				c.op_case = FSPB__COMMAND__OP_MKNOD;
				c.mknod = &m;
			}
			assert_int_equal(apply_at(f->sm[i], &c, t), 0);
		}
		unsigned n = 2 + (unsigned)(next() % 3);
		Fspb__SetAttr merged;
		for (unsigned j = 0; j < n; j++) {
			Fspb__SetAttr s;
			t += 1000;
			random_part(&s, ino, t, symlink);
			assert_int_equal(setattr_at(f->sm[0], &s, t), 0);
			setattr_explicit(&s, t);
			if (j == 0) {
				merged = s;
				continue;
			}
			assert_true(setattr_mergeable(&merged, &s));
			if (!dir && (merged.valid & SM_SET_MODE) && !(s.valid & SM_SET_MODE) &&
			    (s.valid & (SM_SET_UID | SM_SET_GID)) && (merged.mode & 06000))
				cleared++;
			setattr_merge(&merged, &s, dir);
		}
		merged_modes += (merged.valid & SM_SET_MODE) != 0;
		// One command, stamped with the last part's clock.
		assert_int_equal(setattr_at(f->sm[1], &merged, t), 0);
		struct stat a, b;
		assert_int_equal(sm_getattr(f->sm[0], ino, &a), 0);
		assert_int_equal(sm_getattr(f->sm[1], ino, &b), 0);
		assert_int_equal(a.st_mode, b.st_mode);
		assert_int_equal(a.st_uid, b.st_uid);
		assert_int_equal(a.st_gid, b.st_gid);
		assert_int_equal(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
		assert_int_equal(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
		assert_int_equal(a.st_atim.tv_sec, b.st_atim.tv_sec);
		assert_int_equal(a.st_atim.tv_nsec, b.st_atim.tv_nsec);
		assert_int_equal(a.st_ctim.tv_sec, b.st_ctim.tv_sec);
		assert_int_equal(a.st_ctim.tv_nsec, b.st_ctim.tv_nsec);
	}
	// The cases reached what they are about.
	assert_true(merged_modes > CASES / 4);
	assert_true(cleared > 10);
	assert_int_equal(tree_compare(f->dir[0], f->dir[1], TREE_CMP_DATA, diff, NULL), 0);
}

// Not merged: a size change (content, saved per command by the snapshot
// hooks), another object, or a part still carrying its clock in a NOW bit.
static void test_not_mergeable(void **state)
{
	(void)state;
	Fspb__SetAttr a = FSPB__SET_ATTR__INIT, b = FSPB__SET_ATTR__INIT;
	a.ino = b.ino = 5;
	a.valid = SM_SET_MODE;
	b.valid = SM_SET_UID;
	assert_true(setattr_mergeable(&a, &b));
	b.valid = SM_SET_SIZE;
	assert_false(setattr_mergeable(&a, &b));
	b.valid = SM_SET_MTIME_NOW;
	assert_false(setattr_mergeable(&a, &b));
	setattr_explicit(&b, 77);
	assert_true(setattr_mergeable(&a, &b));
	assert_int_equal(b.valid, SM_SET_MTIME);
	assert_int_equal(b.mtime_ns, 77);
	b.ino = 6;
	assert_false(setattr_mergeable(&a, &b));
}

static int write_at(struct sm *sm, Fspb__Command *c, int64_t t)
{
	return apply_at(sm, c, t);
}

// Random small writes to a few files, as a writer makes them: mostly each
// where the last ended, now and then elsewhere, an append, or another
// caller. sm[0] applies each; sm[1] gets them through a one-command "plug"
// that merges a write into the held one when write_mergeable says so.
static void test_writes_merged_equal_sequence(void **state)
{
	struct fx *f = *state;
	int64_t t = 1700000000LL * 1000000000LL;
	enum { FILES = 4, WRITES = 3000 };
	uint64_t end[FILES] = {0};
	unsigned merged = 0, killed = 0, lastk = 0;
	for (unsigned k = 0; k < FILES; k++) {
		char name[16];
		snprintf(name, sizeof(name), "w%u", k);
		for (int i = 0; i < 2; i++) {
			Fspb__Command c = FSPB__COMMAND__INIT;
			Fspb__Mknod m = FSPB__MKNOD__INIT;
			m.parent = SM_ROOT_ID;
			m.name = name;
			m.ino = (2ULL << 48) | k;
			m.mode = S_IFREG | (k % 2 ? 06755 : 0644);
			c.op_case = FSPB__COMMAND__OP_MKNOD;
			c.mknod = &m;
			assert_int_equal(apply_at(f->sm[i], &c, t), 0);
		}
	}
	Fspb__Command held = FSPB__COMMAND__INIT;
	Fspb__Write held_w = FSPB__WRITE__INIT;
	uint8_t *held_data = NULL;
	int64_t held_t = 0;
	bool have = false;
	for (unsigned j = 0; j <= WRITES; j++) {
		Fspb__Command c = FSPB__COMMAND__INIT;
		Fspb__Write w = FSPB__WRITE__INIT;
		uint8_t data[3000];
		// Mostly the file written last, as a writer does.
		unsigned k = next() % 4 ? lastk : (unsigned)(next() % FILES);
		size_t len = 1 + (size_t)(next() % sizeof(data));
		uint64_t r = next() % 20;
		for (size_t i = 0; i < len; i++)
			data[i] = (uint8_t)(next() >> 24);
		w.ino = (2ULL << 48) | k;
		w.offset = r == 0 ? next() % 20000 : end[k];
		w.append = r == 1;
		w.data.data = data;
		w.data.len = len;
		c.uid = r == 2 ? 1000 : 0; // a non-root write clears set-id bits
		c.op_case = FSPB__COMMAND__OP_WRITE;
		c.write = &w;
		t += 1000;
		bool last = j == WRITES;
		lastk = k;
		if (r == 3 || last) {
			// Both caught up (the held write applied): the same state
			// so far, then the set-id bits back, for the next non-root
			// write to clear (or a wrong merge not to).
			if (have) {
				assert_int_equal(write_at(f->sm[1], &held, held_t), 0);
				free(held_data);
				held_data = NULL;
				have = false;
			}
			for (unsigned i = 0; i < FILES; i++) {
				struct stat a, b;
				assert_int_equal(sm_getattr(f->sm[0], (2ULL << 48) | i, &a), 0);
				assert_int_equal(sm_getattr(f->sm[1], (2ULL << 48) | i, &b), 0);
				assert_int_equal(a.st_mode, b.st_mode);
				assert_int_equal(a.st_size, b.st_size);
				assert_int_equal(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
			}
			if (last)
				break;
			Fspb__SetAttr sa = FSPB__SET_ATTR__INIT;
			sa.ino = w.ino;
			sa.valid = SM_SET_MODE;
			sa.mode = 06755;
			for (int i = 0; i < 2; i++)
				assert_int_equal(setattr_at(f->sm[i], &sa, t), 0);
			continue;
		}
		{
			assert_int_equal(write_at(f->sm[0], &c, t), 0);
			killed += c.uid != 0 && k % 2;
			struct stat st;
			assert_int_equal(sm_getattr(f->sm[0], w.ino, &st), 0);
			end[k] = w.append ? (uint64_t)st.st_size : w.offset + len;
		}
		if (have && write_mergeable(&held, &c, 65535)) {
			Fspb__Command out;
			Fspb__Write mw;
			uint8_t *buf = malloc(held_w.data.len + len);
			write_merge(&held, &c, &out, &mw, buf);
			free(held_data);
			held_data = buf;
			held = out;
			held_w = mw;
			held.write = &held_w;
			held_t = t;
			merged++;
			continue;
		}
		if (have) {
			assert_int_equal(write_at(f->sm[1], &held, held_t), 0);
			free(held_data);
			held_data = NULL;
		}
		held = c;
		held_w = w;
		held_data = malloc(len);
		memcpy(held_data, data, len);
		held_w.data.data = held_data;
		held.write = &held_w;
		held_t = t;
		have = true;
	}
	assert_true(merged > WRITES / 4);
	assert_true(killed > 10);
	assert_int_equal(tree_compare(f->dir[0], f->dir[1], TREE_CMP_DATA, diff, NULL), 0);
}

// Not merged: another file, caller or place, an append, a part without
// data, more than the bound together, or an end near the size limit.
static void test_writes_not_mergeable(void **state)
{
	(void)state;
	uint8_t d[8] = {0};
	Fspb__Write x = FSPB__WRITE__INIT, y = FSPB__WRITE__INIT;
	Fspb__Command a = FSPB__COMMAND__INIT, b = FSPB__COMMAND__INIT;
	a.op_case = b.op_case = FSPB__COMMAND__OP_WRITE;
	a.write = &x;
	b.write = &y;
	x.ino = y.ino = 9;
	x.data = (ProtobufCBinaryData){8, d};
	y.data = (ProtobufCBinaryData){8, d};
	y.offset = 8;
	assert_true(write_mergeable(&a, &b, 16));
	assert_false(write_mergeable(&a, &b, 15));
	y.offset = 9;
	assert_false(write_mergeable(&a, &b, 16));
	y.offset = 8;
	b.uid = 1;
	assert_false(write_mergeable(&a, &b, 16));
	b.uid = 0;
	y.append = true;
	assert_false(write_mergeable(&a, &b, 16));
	y.append = false;
	y.ino = 10;
	assert_false(write_mergeable(&a, &b, 16));
	y.ino = 9;
	y.data.len = 0;
	assert_false(write_mergeable(&a, &b, 16));
	y.data.len = 8;
	x.offset = (1ULL << 43) - 12;
	y.offset = x.offset + 8;
	assert_false(write_mergeable(&a, &b, 16));
	b.op_case = FSPB__COMMAND__OP_SETATTR;
	assert_false(write_mergeable(&a, &b, 16));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_merged_equals_sequence, setup, teardown),
	    cmocka_unit_test(test_not_mergeable),
	    cmocka_unit_test_setup_teardown(test_writes_merged_equal_sequence, setup, teardown),
	    cmocka_unit_test(test_writes_not_mergeable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
