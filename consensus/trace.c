/* trace.c — topic parsing and line formatting for the core's debug log. */
#include "trace.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	unsigned bit;
} topics[] = {
    {"VOTE", TRACE_VOTE}, {"LEAD", TRACE_LEAD}, {"TERM", TRACE_TERM}, {"LOG", TRACE_LOG},
    {"CMIT", TRACE_CMIT}, {"PERS", TRACE_PERS}, {"SNAP", TRACE_SNAP}, {"TIMR", TRACE_TIMR},
    {"DROP", TRACE_DROP}, {"READ", TRACE_READ}, {"PROG", TRACE_PROG},
};

static unsigned topic_bit(const char *name, size_t len)
{
	if (len == 3 && strncasecmp(name, "all", 3) == 0)
		return ~0u;
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
		if (strlen(topics[i].name) == len && strncasecmp(name, topics[i].name, len) == 0)
			return topics[i].bit;
	return 0;
}

static const char *topic_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
		if (topics[i].bit == bit)
			return topics[i].name;
	return "?";
}

unsigned raft_trace_mask_from_env(void)
{
	const char *s = getenv("RAFTFS_DEBUG");
	unsigned mask = 0;
	while (s && *s) {
		size_t len = strcspn(s, ", ");
		mask |= topic_bit(s, len);
		s += len;
		s += strspn(s, ", ");
	}
	return mask;
}

void raft_trace_write(uint64_t tick, uint64_t id, uint64_t term, unsigned topic, const char *fmt,
		      ...)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%6llu n%llu t%llu %-4s: ", (unsigned long long)tick,
			 (unsigned long long)id, (unsigned long long)term, topic_name(topic));
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fputs per line so lines of several nodes do not interleave. */
	fprintf(stderr, "%s\n", line);
}
