/* local_cluster.h — the on-disk layout of a `raftfs local` cluster and the
 * node processes it runs (fs/cli_local.c is the command around it).
 *
 * DIR/cluster holds "N CLUSTER-NAME KIND" (KIND fs or kv); node i lives in
 * DIR/n<i>/ (kv) or DIR/node<i>/ (fs; DIR/n<i> is then its mount) with its
 * raftfs.ini, data/ (data directory), node.log (stdout+stderr) and pid.
 */
#ifndef RAFTFS_LOCAL_CLUSTER_H
#define RAFTFS_LOCAL_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Creates DIR with configs for n nodes on free loopback ports (none
 * started). 0 or a negative errno with err. */
int local_create(const char *dir, int n, char *err, size_t errlen);

/* The node count of the cluster in dir, or a negative errno with err. */
int local_count(const char *dir, char *err, size_t errlen);

/* The ids of the nodes of dir that were not removed (raftfs local remove),
 * ascending, into ids[max] (max >= local_count). Their number, or a
 * negative errno with err. */
int local_members(const char *dir, int *ids, int max, char *err, size_t errlen);

/* The cluster name of dir (the nodes refuse peers of another name) into
 * name. 0 or a negative errno. */
int local_name(const char *dir, char *name, size_t len);

/* Node id's listen address "host:port" into addr. 0 or a negative errno. */
int local_addr(const char *dir, int id, char *addr, size_t len, char *err, size_t errlen);

/* Starts node id in the background (a new session; output to its
 * node.log) unless it runs already. 0 or a negative errno with err. */
int local_start(const char *dir, int id, char *err, size_t errlen);

/* Sends sig to node id and waits up to wait_ms for it to exit (SIGKILL
 * after that when escalate). 0 if it is not running afterwards (also when
 * it was not running), else -ETIMEDOUT. */
int local_signal(const char *dir, int id, int sig, unsigned wait_ms, bool escalate);

/* The pid of node id if it runs, else 0. */
pid_t local_pid(const char *dir, int id);

/* Whether dir holds a filesystem cluster (RAFTFS_LOCAL_SM=fs, the default,
 * when it was created) rather than one of the kv test state machine. In a
 * filesystem cluster node id is mounted at DIR/n<id> and its own files are
 * in DIR/node<id>. */
bool local_is_fs(const char *dir);

/* Whether path is a FUSE filesystem's mount point that answers statfs. */
bool local_is_fuse(const char *path);

/* The directory of node id's own files (config, data, log, pid). */
void local_node_dir(const char *dir, int id, char *out, size_t len);

/* Where node id of a filesystem cluster is mounted: DIR/n<id>. */
void local_mount_path(const char *dir, int id, char *out, size_t len);

/* Waits until node id's mount answers (at once for a kv cluster): 0,
 * -ESRCH if the node exited meanwhile, -ETIMEDOUT after timeout_ms. */
int local_wait_mount(const char *dir, int id, unsigned timeout_ms);

/* Node id's process, by its pid file, has not exited. Unlike local_pid()
 * this holds from the fork on, before the exec shows the config in its
 * command line. A child of the caller that exited is left unreaped for
 * local_exit_desc. */
bool local_alive(const char *dir, int id);

/* How node id's process ended, into out: "exited with status 2", "was
 * killed by signal 9 (Killed)"; reaps it. 0, or -ESRCH when that is not
 * known (it runs, or it was not started by the caller) and out says so. */
int local_exit_desc(const char *dir, int id, char *out, size_t len);

/* The line local_start writes into node.log before the node runs, so the
 * lines of its last run can be told from older ones. */
#define LOCAL_START_MARK "=== raftfs local start:"

/* Whether node id's listen port on 127.0.0.1 is held by some process, so
 * the node could not listen (checked by binding it as the node does:
 * connections left in TIME_WAIT by its last run do not count). */
bool local_port_taken(const char *dir, int id);

/* Moves node id of an n-node cluster to a new free port: its entry in
 * every node's [peers] is rewritten, nothing else. The nodes must be
 * stopped (they read their config at start). 0 or a negative errno with
 * err. */
int local_move_node(const char *dir, int n, int id, char *err, size_t errlen);

/* Writes the files of a node joining the cluster in dir (the next id,
 * returned in *id; the cluster's node count grows by one): its config is
 * node `like`'s (a member's) with a new id, a free port, join = true and
 * [peers] = members[0..n_members) (the cluster's members now, from raftfs
 * member list) plus itself. Nothing is started. 0 or a negative errno with
 * err. */
struct config_peer;
int local_add_node(const char *dir, int like, const struct config_peer *members, size_t n_members,
		   int *id, char *err, size_t errlen);

/* Marks node id as removed from the cluster (raftfs local remove): `up`,
 * `status` and the waits skip it from then on. 0 or a negative errno. */
int local_mark_removed(const char *dir, int id);

/* Whether node id was removed from the cluster. */
bool local_removed(const char *dir, int id);

/* Detaches node id's mount if it is still there (the node was killed). */
void local_unmount(const char *dir, int id);

#endif
