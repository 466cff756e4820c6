/* local_ports.h — a registry of the loopback ports `raftfs local` clusters
 * own, so that a cluster created while another one has a node stopped never
 * draws that node's port (tests/FLAKY.md, "Port clashes").
 *
 * A claim is a symbolic link REGISTRY/<port> to the absolute path of the
 * owning cluster's directory (its target lives in the inode: no data
 * block per claim). REGISTRY is $RAFTFS_PORT_DIR, or /tmp/raftfs-ports
 * (made mode 1777: shared by every user). A claim lasts for as long as the
 * owner's cluster file exists and one of its nodes' configs names the port:
 * removing the cluster's directory (what every test does at its end)
 * releases its ports; a claim whose owner is gone is taken over by the next
 * cluster that draws it, and every draw removes the claims of clusters that
 * are gone. `local down` does not release: a stopped cluster may be started
 * again. A claim younger than LOCAL_PORTS_GRACE_S counts even before its
 * owner's configs name it (the owner is being created: its cluster file is
 * written first).
 */
#ifndef RAFTFS_LOCAL_PORTS_H
#define RAFTFS_LOCAL_PORTS_H

#include <stddef.h>
#include <stdint.h>

/* How long a fresh claim holds while its cluster's files are written. */
#define LOCAL_PORTS_GRACE_S 60

/* Picks n distinct ports on 127.0.0.1 that no live cluster claims and no
 * process holds (a bind succeeds), and claims them for the cluster in dir.
 * The range is $RAFTFS_LOCAL_PORTS ("LO-HI", for tests), else 10000 up to
 * the kernel's ephemeral range (a port below it is never handed out as the
 * local port of an outgoing connection before the node binds it). Draws
 * are serialized between processes by a lock on the registry. When the
 * registry cannot be used (no writable /tmp, a registry directory or
 * claim this user may not write), ports are drawn unclaimed, as before the
 * registry. A dead claim of another user cannot be removed in the sticky
 * registry directory: its port counts as claimed until one of that user's
 * draws prunes it. 0, or a negative errno with err (-EADDRNOTAVAIL: every
 * port of the range is claimed or held). */
int local_ports_draw(const char *dir, int n, uint16_t *ports, char *err, size_t errlen);

/* Claims port for the cluster in dir unless a live cluster other than dir
 * claims it: `local start` does so, so clusters created before the
 * registry existed, or moved to another directory, are protected while
 * they run. Best effort: 0, or a negative errno (-EADDRINUSE: another live
 * cluster claims it). */
int local_ports_claim(const char *dir, uint16_t port);

/* Drops dir's claim of port (a node moved off it); another owner's claim
 * is left alone. */
void local_ports_release(const char *dir, uint16_t port);

#endif
