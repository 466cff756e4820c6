/* runtime_log.c — topic log lines of the node runtime. */
#include "runtime_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic unsigned mask = RLOG_ERR | RLOG_INFO;
static _Atomic uint64_t log_id;
static _Atomic uint64_t log_term;

static const struct {
	const char *name;
	unsigned bit;
} topics[] = {
    {"ERR", RLOG_ERR},	 {"INFO", RLOG_INFO}, {"NET", RLOG_NET},
    {"CLNT", RLOG_CLNT}, {"APPL", RLOG_APPL}, {"PERS", RLOG_PERS},
};

static unsigned parse_topics(const char *s)
{
	unsigned m = 0;
	char buf[256], *save = NULL, *tok;

	if (!s)
		return 0;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (!strcasecmp(tok, "all"))
			return ~0u;
		for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
			if (!strcasecmp(tok, topics[i].name))
				m |= topics[i].bit;
	}
	return m;
}

void rlog_init(uint64_t node_id, const char *t)
{
	log_id = node_id;
	mask = RLOG_ERR | RLOG_INFO | parse_topics(t) | parse_topics(getenv("RAFTFS_DEBUG"));
}

void rlog_set_term(uint64_t term)
{
	log_term = term;
}

int rlog_on(unsigned topic)
{
	return (mask & topic) != 0;
}

void rlog_write(unsigned topic, const char *fmt, ...)
{
	char line[1024], ts[32];
	const char *name = "?";
	struct timespec now;
	struct tm tm;
	va_list ap;
	int n;

	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
		if (topics[i].bit == topic)
			name = topics[i].name;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ld n%llu t%llu %s: ", ts, now.tv_nsec / 1000000,
		     (unsigned long long)log_id, (unsigned long long)log_term, name);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line so lines of concurrent threads do not interleave. */
	fprintf(stderr, "%s\n", line);
}
