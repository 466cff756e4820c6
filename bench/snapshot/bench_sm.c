/* bench_sm.c — commands applied straight to a state machine, for the
 * snapshot benches. */
#define _XOPEN_SOURCE 700
#include "bench_sm.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sm.h"

static int64_t clock_ns; /* the commands' replicated clock */

int bench_apply(struct sm *sm, Fspb__Command *c)
{
	size_t len;
	uint8_t *buf;
	int result = -1, rc;

	c->time_ns = clock_ns += 1000;
	len = fspb__command__get_packed_size(c);
	buf = malloc(len ? len : 1);
	if (!buf)
		return -1;
	fspb__command__pack(c, buf);
	rc = sm_apply(sm, sm_applied_index(sm) + 1, 0, 0, 0, buf, len, &result);
	free(buf);
	if (rc || result) {
		fprintf(stderr, "bench: apply of op %d failed: %d / %d\n", (int)c->op_case, rc,
			result);
		return -1;
	}
	return 0;
}

int bench_create(struct sm *sm, uint64_t parent, const char *name, uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;

	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	return bench_apply(sm, &c);
}

int bench_write(struct sm *sm, uint64_t ino, uint64_t off, const void *data, size_t len)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write m = FSPB__WRITE__INIT;

	m.ino = ino;
	m.offset = off;
	m.data.data = (uint8_t *)data;
	m.data.len = len;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &m;
	return bench_apply(sm, &c);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void bench_rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
