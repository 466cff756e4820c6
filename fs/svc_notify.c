/* svc_notify.c — $NOTIFY_SOCKET datagrams (sd_notify(3)'s protocol). */
#include "svc_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int svc_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	ssize_t sent;
	int fd, rc = 0;

	if (!path || !path[0])
		return 0;
	len = strlen(path);
	/* systemd passes a path, or '@name' for the abstract namespace
	 * (sun_path starting with a NUL byte). */
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	if (sent < 0)
		rc = -errno;
	else if ((size_t)sent != strlen(state))
		rc = -EMSGSIZE;
	close(fd);
	return rc;
}
