/*
 * procs: the processes of sluiced. The master (main.c) binds the listening
 * sockets, then forks smtpd_workers receiver processes that share them and
 * one queue manager process, restarts any that die, and forwards SIGHUP and
 * SIGTERM. Receivers tell the queue manager about each committed message by
 * writing "QUEUEID\n" into a pipe (atomic: shorter than PIPE_BUF).
 * Owns: each child's main loop, its signal handling and graceful stop.
 */
#ifndef SLUICE_MTA_PROCS_H
#define SLUICE_MTA_PROCS_H

#include "lib/daemon.h"

/* receiver_main - SMTP receiver; never returns (exit status 0 after SIGTERM). */
void receiver_main(const char *conf_path, struct listener *ls, size_t nls, int notify_wr_fd)
	__attribute__((noreturn));

/* qmgr_main - queue manager; never returns. */
void qmgr_main(const char *conf_path, int notify_rd_fd) __attribute__((noreturn));

/* proc_common_setup - after fork: die with the master, drop privileges. */
void proc_common_setup(const char *mail_owner);

#endif
