/* test_members.c — the pure parts of membership changes: the address book
 * that travels in raft_conf_state.context (node_members.h) through the
 * codec and the store's record, and the config of a joining node. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "config.h"
#include "node_members.h"

static config_peer peer(uint64_t id, const char *host, uint16_t port)
{
	config_peer p = {.id = id, .port = port};

	snprintf(p.host, sizeof(p.host), "%s", host);
	return p;
}

static int decode_str(const char *s, config_peer *out, size_t cap, size_t *n)
{
	return node_members_decode((const uint8_t *)s, strlen(s), out, cap, n);
}

static void test_book_round_trip(void **state)
{
	config_peer in[3] = {peer(1, "127.0.0.1", 7001), peer(42, "node-b.example", 65535),
			     peer(UINT64_MAX, "::1", 1)};
	config_peer out[CONFIG_MAX_PEERS];
	uint8_t *buf;
	size_t len, n;

	(void)state;
	assert_int_equal(node_members_encode(in, 3, &buf, &len), 0);
	assert_int_equal(node_members_decode(buf, len, out, CONFIG_MAX_PEERS, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_true(out[i].id == in[i].id);
		assert_string_equal(out[i].host, in[i].host);
		assert_int_equal(out[i].port, in[i].port);
	}
	free(buf);
	/* An empty book is valid and empty. */
	assert_int_equal(node_members_encode(in, 0, &buf, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(node_members_decode(buf, len, out, CONFIG_MAX_PEERS, &n), 0);
	assert_int_equal(n, 0);
	free(buf);
}

/* A book read from disk or the network is never trusted. */
static void test_book_refuses_garbage(void **state)
{
	static const char *bad[] = {
	    "1 h:1",		 /* no newline at the end */
	    "\n",		 /* empty line */
	    "0 h:1\n",		 /* id 0 */
	    "-1 h:1\n",		 /* negative */
	    "x h:1\n",		 /* not a number */
	    "1h:1\n",		 /* no separator */
	    "1 h\n",		 /* no port */
	    "1 h:0\n",		 /* port 0 */
	    "1 h:70000\n",	 /* port too big */
	    "1 h:1\n1 g:2\n",	 /* duplicate id */
	    "99999999999999999999 h:1\n", /* id overflows */
	};
	config_peer out[2];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = decode_str(bad[i], out, 2, &n);

		if (rc != -EINVAL)
			fail_msg("accepted bad book %zu: '%s'", i, bad[i]);
	}
	/* More entries than room. */
	assert_int_equal(decode_str("1 h:1\n2 h:2\n3 h:3\n", out, 2, &n), -EINVAL);
	/* A NUL inside a line. */
	assert_int_equal(node_members_decode((const uint8_t *)"1 h\0:1\n", 7, out, 2, &n), -EINVAL);
}

/* The book rides in the conf state through its codec (the store's record
 * and snapshot metadata), untouched. */
static void test_book_in_conf_state(void **state)
{
	config_peer in[2] = {peer(1, "10.0.0.1", 7001), peer(4, "10.0.0.4", 7004)}, out[4];
	uint64_t voters[] = {1}, learners[] = {4};
	raft_conf_state cs = {.voters = voters, .n_voters = 1, .learners = learners, .n_learners = 1},
			got;
	raft_snapshot_meta meta = {.index = 9, .term = 2}, gm;
	uint8_t buf[512];
	size_t len, n;

	(void)state;
	assert_int_equal(node_members_encode(in, 2, &cs.context, &cs.context_len), 0);
	len = codec_conf_state_pack(&cs, buf);
	assert_int_equal(codec_conf_state_decode(buf, len, &got), 0);
	assert_int_equal(node_members_decode(got.context, got.context_len, out, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_true(out[1].id == 4 && out[1].port == 7004);
	assert_int_equal(got.n_learners, 1);
	raft_conf_state_free_contents(&got);
	assert_int_equal(raft_conf_state_copy(&meta.conf, &cs), 0);
	len = codec_snapshot_meta_pack(&meta, buf);
	assert_int_equal(codec_snapshot_meta_decode(buf, len, &gm), 0);
	assert_int_equal(gm.conf.context_len, cs.context_len);
	assert_memory_equal(gm.conf.context, cs.context, cs.context_len);
	raft_conf_state_free_contents(&gm.conf);
	raft_conf_state_free_contents(&meta.conf);
	free(cs.context);
}

static int load(const char *text, node_config *cfg, char *err, size_t errlen)
{
	char path[] = "/tmp/raftfs-test-members-XXXXXX";
	int fd = mkstemp(path), rc;
	FILE *f;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	config_defaults(cfg);
	rc = config_load_file(cfg, path, err, errlen);
	if (rc == 0)
		rc = config_validate(cfg, err, errlen);
	unlink(path);
	return rc;
}

static void test_config_join(void **state)
{
	char err[256] = "", path[] = "/tmp/raftfs-test-members-XXXXXX";
	node_config cfg, again;
	int fd;

	(void)state;
	assert_int_equal(load("[node]\nid = 4\ndata_dir = /d\njoin = true\n[peers]\n"
			      "1 = 127.0.0.1:7001\n4 = 127.0.0.1:7004\n",
			      &cfg, err, sizeof(err)),
			 0);
	assert_true(cfg.join);
	/* Written back (raftfs local add), the key survives. */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(config_write_file(&cfg, path), 0);
	config_defaults(&again);
	assert_int_equal(config_load_file(&again, path, err, sizeof(err)), 0);
	unlink(path);
	assert_true(again.join);
	assert_int_equal(load("[node]\nid = 1\ndata_dir = /d\n[peers]\n1 = 127.0.0.1:7001\n", &cfg,
			      err, sizeof(err)),
			 0);
	assert_false(cfg.join);
}

static void test_config_duplicate_address(void **state)
{
	char err[256] = "";
	node_config cfg;

	(void)state;
	assert_int_equal(load("[node]\nid = 1\ndata_dir = /d\n[peers]\n1 = 127.0.0.1:7001\n"
			      "2 = 127.0.0.1:7001\n",
			      &cfg, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "[peers] 1 and 2 have the same address 127.0.0.1:7001"));
	assert_int_equal(load("[node]\nid = 1\ndata_dir = /d\njoin = maybe\n[peers]\n"
			      "1 = 127.0.0.1:7001\n",
			      &cfg, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "join"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_book_round_trip),
	    cmocka_unit_test(test_book_refuses_garbage),
	    cmocka_unit_test(test_book_in_conf_state),
	    cmocka_unit_test(test_config_join),
	    cmocka_unit_test(test_config_duplicate_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
