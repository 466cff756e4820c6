/* fz_pick.c — what the next operation acts on: existing entries of the tree, or new random names. */
#include "fz.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Few short names, so creates collide with existing entries and renames
 * land on each other often. */
static const char *const names[] = {"a", "b", "c", "d", "e", "f"};
#define NNAMES (sizeof(names) / sizeof(names[0]))

static char type_of(mode_t m)
{
	return S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : S_ISFIFO(m) ? 'p' : 'f';
}

static int scan_dir(struct fz *z, int dfd, const char *prefix, int depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;

	if (!d) {
		close(dfd);
		return -1;
	}
	while ((e = readdir(d)) && z->nent < FZ_MAX_ENTRIES) {
		struct stat st;
		struct fz_entry *x = &z->ent[z->nent];

		if (e->d_name[0] == '.')
			continue; /* ., .., and the tester's own .fz* files */
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* raced away (chaos mode) */
		int n = snprintf(x->path, FZ_PATH, "%s%s%s", prefix, *prefix ? "/" : "",
				 e->d_name);
		if (n >= FZ_PATH - 16)
			continue;
		x->type = type_of(st.st_mode);
		z->nent++;
		if (x->type == 'd' && depth < 8) {
			int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
			char p[FZ_PATH];

			snprintf(p, FZ_PATH, "%s", x->path);
			if (sub >= 0)
				scan_dir(z, sub, p, depth + 1);
		}
	}
	closedir(d);
	return 0;
}

int fz_scan(struct fz *z)
{
	int root = z->mode == FZ_CHAOS ? z->troot[z->cur] : z->mroot;
	int dfd = openat(root, ".", O_RDONLY | O_DIRECTORY);

	z->nent = 0;
	if (dfd < 0)
		return -1;
	return scan_dir(z, dfd, "", 0);
}

const char *fz_newpath(struct fz *z, char *out)
{
	int depth = 1 + (fz_below(z, 100) >= 50) + (fz_below(z, 100) >= 70);
	size_t n = 0;

	out[0] = 0;
	for (int i = 0; i < depth; i++)
		n += (size_t)snprintf(out + n, FZ_PATH - n, "%s%s", i ? "/" : "",
				      names[fz_below(z, NNAMES)]);
	return out;
}

const char *fz_pick(struct fz *z, const char *types, char *out)
{
	int cand[FZ_MAX_ENTRIES], nc = 0;

	/* One pick in five is a random path (mostly missing: ENOENT, ENOTDIR paths). */
	if (fz_below(z, 5) == 0)
		return fz_newpath(z, out);
	for (int i = 0; i < z->nent; i++)
		if (strchr(types, z->ent[i].type))
			cand[nc++] = i;
	if (!nc)
		return fz_newpath(z, out);
	snprintf(out, FZ_PATH, "%s", z->ent[cand[fz_below(z, (uint64_t)nc)]].path);
	return out;
}
