/* client.h — a blocking client of a node's transport, for the raftfs
 * command-line tools and tests (status, kv put/get). One request at a time.
 */
#ifndef RAFTFS_CLIENT_H
#define RAFTFS_CLIENT_H

#include <stddef.h>

#include "transport.pb-c.h"

typedef struct client client;

/* Connects to addr ("host:port") and does the client handshake within
 * timeout_ms. 0, or a negative errno with the reason in err. */
int client_connect(const char *addr, unsigned timeout_ms, client **out, char *err, size_t errlen);

/* Sends req (its id is set here) and waits up to timeout_ms for the
 * response; *resp is the caller's to free with
 * transportpb__response__free_unpacked(). 0 or a negative errno with err. */
int client_call(client *c, Transportpb__Request *req, Transportpb__Response **resp,
		unsigned timeout_ms, char *err, size_t errlen);

void client_close(client *c);

/* Makes a client_call under way in another thread fail at once (the
 * connection is shut down); client_close still frees it. */
void client_abort(client *c);

#endif
