/* test_raft.c — what the core does beyond the paper: pre-vote, check-quorum, flow control, reads, snapshots. */
#include "test_util.h"

int main(void)
{
	const struct CMUnitTest tests[] = {
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
