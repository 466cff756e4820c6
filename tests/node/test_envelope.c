/* test_envelope.c — the proposal envelope round-trips and refuses what is
 * too short or of another version. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "envelope.h"

static void test_roundtrip(void **state)
{
	envelope in = {0x1122334455667788ull, 42, 40}, out;
	uint8_t buf[ENVELOPE_BYTES + 3];
	const uint8_t *cmd;
	size_t len;

	envelope_encode(&in, buf);
	memcpy(buf + ENVELOPE_BYTES, "abc", 3);
	assert_int_equal(envelope_decode(buf, sizeof(buf), &out, &cmd, &len), 0);
	assert_int_equal(out.client, in.client);
	assert_int_equal(out.seq, 42);
	assert_int_equal(out.min_pending, 40);
	assert_int_equal(len, 3);
	assert_memory_equal(cmd, "abc", 3);
	/* An empty command is a valid proposal. */
	assert_int_equal(envelope_decode(buf, ENVELOPE_BYTES, &out, &cmd, &len), 0);
	assert_int_equal(len, 0);
}

static void test_refused(void **state)
{
	envelope in = {1, 1, 1}, out;
	uint8_t buf[ENVELOPE_BYTES];
	const uint8_t *cmd;
	size_t len;

	envelope_encode(&in, buf);
	assert_int_equal(envelope_decode(buf, ENVELOPE_BYTES - 1, &out, &cmd, &len), -EINVAL);
	buf[0] = ENVELOPE_VERSION + 1;
	assert_int_equal(envelope_decode(buf, ENVELOPE_BYTES, &out, &cmd, &len), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
