// A filesystem node knows its own client id from the runtime the moment
// it is attached (fs/fs_node.c, fs_node_attach): commands carrying it are
// this mount's own and get no kernel invalidation. It used to be guessed
// from the entry applied last when the first proposal completed, which a
// proposal answered from a restored snapshot (consensus/node.c,
// node_answer_restored) could make another node's client for good: that
// node's changes then never reached this mount's kernel caches.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fs_node.h"
#include "fs_testlib.h"
#include "node.h"
#include "config.h"

static void own_client_is_the_runtimes(void **state)
{
	(void)state;
	char *dir = tl_mkdtemp();
	node_config cfg;
	struct fs_node *f = NULL;
	node_sm iface;
	node *n = NULL;
	char err[256];

	/* Node 1 of a one-node cluster; never launched, so the port is not
	 * listened on. */
	config_defaults(&cfg);
	cfg.id = 1;
	snprintf(cfg.cluster, sizeof(cfg.cluster), "fsclient");
	cfg.peers[0].id = 1;
	snprintf(cfg.peers[0].host, sizeof(cfg.peers[0].host), "127.0.0.1");
	cfg.peers[0].port = 9;
	cfg.n_peers = 1;
	snprintf(cfg.listen_host, sizeof(cfg.listen_host), "127.0.0.1");
	cfg.listen_port = 9;
	snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s/n1", dir);
	assert_int_equal(mkdir(cfg.data_dir, 0700), 0);
	assert_int_equal(fs_node_open(cfg.data_dir, 1, &f), 0);
	fs_node_iface(f, &iface);
	assert_int_equal(node_new(&cfg, &iface, &n, err, sizeof(err)), 0);
	assert_int_equal(fs_node_own_client(f), 0);
	fs_node_attach(f, n);
	/* Known before any proposal completed, and the runtime's. */
	assert_true(node_client_id(n) != 0);
	assert_true(fs_node_own_client(f) == node_client_id(n));
	node_free(n);
	fs_node_close(f);
	tl_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(own_client_is_the_runtimes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
