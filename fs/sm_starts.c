// sm_starts.c — every node's last start command, replicated (sm_starts.h).
#include "sm_starts.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

#include "sm_image.h"
#include "sm_impl.h"

#define STARTS_VERSION 1u
#define ENTRY_BYTES 24u

size_t sm_starts_encode(const struct sm_starts *t, uint8_t *buf)
{
	size_t at = 2;

	buf[0] = STARTS_VERSION;
	buf[1] = (uint8_t)t->n;
	for (uint32_t i = 0; i < t->n; i++) {
		const struct sm_start *e = &t->e[i];

		memcpy(buf + at, &e->node, 4);
		memcpy(buf + at + 4, &e->caps, 4);
		memcpy(buf + at + 8, &e->index, 8);
		memcpy(buf + at + 16, &e->since, 8);
		at += ENTRY_BYTES;
	}
	return at;
}

int sm_starts_decode(const uint8_t *buf, size_t len, struct sm_starts *t)
{
	memset(t, 0, sizeof(*t));
	if (len < 2 || buf[0] != STARTS_VERSION || buf[1] > SM_STARTS_MAX ||
	    len != 2 + (size_t)buf[1] * ENTRY_BYTES)
		return -EBADMSG;
	t->n = buf[1];
	for (uint32_t i = 0; i < t->n; i++) {
		const uint8_t *p = buf + 2 + (size_t)i * ENTRY_BYTES;
		struct sm_start *e = &t->e[i];

		memcpy(&e->node, p, 4);
		memcpy(&e->caps, p + 4, 4);
		memcpy(&e->index, p + 8, 8);
		memcpy(&e->since, p + 16, 8);
	}
	return 0;
}

const struct sm_start *sm_starts_find(const struct sm_starts *t, uint32_t node)
{
	for (uint32_t i = 0; i < t->n; i++)
		if (t->e[i].node == node)
			return &t->e[i];
	return NULL;
}

void sm_starts_put(struct sm_starts *t, uint32_t node, uint32_t caps, uint64_t index,
		   uint64_t since)
{
	struct sm_start *e = (struct sm_start *)sm_starts_find(t, node);

	if (!e && t->n < SM_STARTS_MAX) {
		e = &t->e[t->n++];
	} else if (!e) {
		e = &t->e[0]; // full: the oldest start goes (the same on every node)
		for (uint32_t i = 1; i < t->n; i++)
			if (t->e[i].index < e->index)
				e = &t->e[i];
	}
	*e = (struct sm_start){node, caps, index, since};
}

bool sm_starts_honoured(const struct sm_starts *t, const uint32_t *members, size_t n)
{
	uint64_t min_index = UINT64_MAX, max_since = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		const struct sm_start *e = sm_starts_find(t, members[i]);

		if (!e || !(e->caps & SM_START_CAP_REVOKE_KNOWS))
			return false;
		if (e->index < min_index)
			min_index = e->index;
		if (e->since > max_since)
			max_since = e->since;
	}
	return min_index > max_since;
}

int sm_starts_revoke_result(const struct sm_starts *t, const Fspb__Deleg *g, uint32_t holder)
{
	const struct sm_start *e;

	if (!g->knows_start || !sm_starts_honoured(t, g->members, g->n_members))
		return 0;
	e = sm_starts_find(t, holder);
	return e && e->index > g->holder_start ? SM_RESULT_HOLDER_BACK : 0;
}

bool sm_is_start(const Fspb__Command *c)
{
	return c->op_case == FSPB__COMMAND__OP__NOT_SET && c->node != 0;
}

// The root's local since mark: read, or written (durably: the xattr, then
// an fsync of the root) as sm->applied when absent.
static int load_since(struct sm *sm, const char *root)
{
	uint64_t v;
	ssize_t n = lgetxattr(root, SM_XATTR_START_SINCE, &v, sizeof(v));
	int rc = 0;

	if (n == (ssize_t)sizeof(v)) {
		sm->start_since = v;
		return 0;
	}
	if (n >= 0 || errno != ENODATA) {
		rc = n >= 0 ? -EBADMSG : -errno;
		fprintf(stderr, "sm: read %s of %s: %s\n", SM_XATTR_START_SINCE, root,
			strerror(-rc));
		return rc;
	}
	v = sm->applied;
	if (lsetxattr(root, SM_XATTR_START_SINCE, &v, sizeof(v), 0))
		rc = -errno;
	if (!rc)
		rc = img_fsync_path(root);
	if (rc) {
		fprintf(stderr, "sm: write %s of %s: %s\n", SM_XATTR_START_SINCE, root,
			strerror(-rc));
		return rc;
	}
	sm->start_since = v;
	return 0;
}

int sm_starts_load(struct sm *sm)
{
	char root[PATH_MAX];
	uint8_t buf[SM_STARTS_BYTES];
	ssize_t n;
	int rc;

	snprintf(root, sizeof(root), "%s/tree", sm->data_dir);
	memset(&sm->starts, 0, sizeof(sm->starts));
	n = lgetxattr(root, SM_XATTR_STARTS, buf, sizeof(buf));
	if (n < 0 && errno != ENODATA) {
		rc = -errno;
		fprintf(stderr, "sm: read %s of %s: %s\n", SM_XATTR_STARTS, root, strerror(-rc));
		return rc;
	}
	if (n >= 0 && (rc = sm_starts_decode(buf, (size_t)n, &sm->starts))) {
		fprintf(stderr, "sm: %s of %s is not a table of start commands\n", SM_XATTR_STARTS,
			root);
		return rc;
	}
	return load_since(sm, root);
}

int sm_starts_note(struct sm *sm, const Fspb__Command *c, uint64_t index)
{
	struct sm_starts t = sm->starts;
	uint8_t buf[SM_STARTS_BYTES];
	char root[PATH_MAX];
	size_t len;

	sm_starts_put(&t, c->node, c->start_caps, index, c->start_since);
	len = sm_starts_encode(&t, buf);
	snprintf(root, sizeof(root), "%s/tree", sm->data_dir);
	sm_meta_hook(sm, SM_ROOT_ID); // an image being made keeps the table it had
	if (lsetxattr(root, SM_XATTR_STARTS, buf, len, 0)) {
		int rc = -errno;

		fprintf(stderr, "sm: record the start command at %llu in %s: %s\n",
			(unsigned long long)index, root, strerror(-rc));
		return rc;
	}
	pthread_rwlock_wrlock(&sm->lock);
	sm->starts = t;
	pthread_rwlock_unlock(&sm->lock);
	return 0;
}

uint64_t sm_start_index(struct sm *sm, uint32_t node)
{
	const struct sm_start *e;
	uint64_t index;

	pthread_rwlock_rdlock(&sm->lock);
	e = sm_starts_find(&sm->starts, node);
	index = e ? e->index : 0;
	pthread_rwlock_unlock(&sm->lock);
	return index;
}

void sm_start_fill(struct sm *sm, Fspb__Command *c)
{
	c->start_caps = SM_START_CAP_REVOKE_KNOWS;
	c->start_since = sm->start_since;
}

bool sm_start_outdated(struct sm *sm, uint32_t node)
{
	const struct sm_start *mine;
	bool outdated = false;

	pthread_rwlock_rdlock(&sm->lock);
	mine = sm_starts_find(&sm->starts, node);
	// This node's own table began after its last start said (it installed
	// an image since): its entries up to the image are the sender's. Or
	// its own start is not in the table at all: the image's sender kept
	// none (an older binary), so the peers still have the start this
	// node's table lost, and decide Revokes on it. (Asked once its start
	// applied, fuse_run.c: not the missing entry of a node starting.)
	if (node == sm->node_id && (!mine || mine->since < sm->start_since))
		outdated = true;
	// An entry's since is below its own index (its node's applied index
	// when it opened, before it proposed): one that is not would have
	// every node start again and again until the log passed it.
	for (uint32_t i = 0; mine && i < sm->starts.n; i++)
		if ((sm->starts.e[i].caps & SM_START_CAP_REVOKE_KNOWS) &&
		    sm->starts.e[i].since < sm->starts.e[i].index &&
		    sm->starts.e[i].since >= mine->index)
			outdated = true;
	pthread_rwlock_unlock(&sm->lock);
	return outdated;
}

bool sm_start_knows(struct sm *sm)
{
	return !sm_start_outdated(sm, sm->node_id);
}
