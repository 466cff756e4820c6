/* svc_notify.h — tells a service manager (systemd, Type=notify) that the
 * node is ready or stopping: one datagram to $NOTIFY_SOCKET, the protocol
 * of sd_notify(3), without linking libsystemd. */
#ifndef RAFTFS_SVC_NOTIFY_H
#define RAFTFS_SVC_NOTIFY_H

/* Sends state (newline-separated VAR=VALUE lines: "READY=1",
 * "STOPPING=1", "STATUS=text") to the socket named by $NOTIFY_SOCKET (a
 * path, or an abstract name written with a leading '@'). 0 when sent or
 * when the variable is unset (not run by a service manager: nothing to
 * tell); a negative errno when sending failed (the caller logs it: a
 * manager waiting for READY=1 will time the start out). */
int svc_notify(const char *state);

#endif
