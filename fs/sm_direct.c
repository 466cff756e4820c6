// sm_direct.c — the probe of whether direct writes bypass the page cache (sm_direct.h).
#include "sm_direct.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// A few whole pages: O_DIRECT wants the offset, length and buffer in
// blocks (4096 covers every block size the apply's writes assume).
#define PROBE_PAGES 4
#define PROBE_PAGE 4096

bool sm_direct_bypasses_cache(const char *dir, const char **why)
{
	const size_t len = PROBE_PAGES * PROBE_PAGE;
	// Unnamed: nothing is left behind in the data directory by a crash here.
	int fd = open(dir, O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0) {
		*why = "an unnamed file with O_DIRECT is refused";
		return false;
	}
	void *buf = NULL;
	bool ok = false;
	*why = "out of memory";
	if (posix_memalign(&buf, PROBE_PAGE, len) == 0) {
		memset(buf, 0x5a, len);
		*why = "a direct write is refused";
		if (pwrite(fd, buf, len, 0) == (ssize_t)len) {
			// mincore maps no page in: it only reports what is cached.
			void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
			unsigned char vec[PROBE_PAGES];
			*why = "the residency of its pages cannot be read";
			if (m != MAP_FAILED && mincore(m, len, vec) == 0) {
				ok = true;
				for (int i = 0; i < PROBE_PAGES; i++)
					ok = ok && !(vec[i] & 1);
				*why = ok ? "" : "a direct write is cached all the same";
			}
			if (m != MAP_FAILED)
				munmap(m, len);
		}
	}
	free(buf);
	close(fd);
	return ok;
}
