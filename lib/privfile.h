/*
 * privfile: root-only files for a daemon that has dropped privileges.
 * Owns a tiny helper process that stays root (forked before the drop, as
 * Postfix's master or OpenSMTPD's parent keep the privileged part apart),
 * the socketpair to it, the request/reply exchange with the file
 * descriptor passed back (SCM_RIGHTS), and the policy of what the helper
 * opens. Leaves parsing and loading to the callers: they keep calling
 * conf_read_file(), table_open(), log_init(), which open through
 * privfile_open().
 *
 * How it works. privfile_install() forks the helper and sets a process-wide
 * hook. From then on privfile_open() first opens the file itself (as
 * mail_owner); only when that fails with EACCES or EPERM does it ask the
 * helper, which opens the file as root and hands the descriptor back.
 * Without the hook, privfile_open() is plain open().
 *
 * What the helper opens (an attacker who took over the unprivileged
 * daemon can read no more than the config names):
 *  - read-only: only files that the current config names (else EPERM,
 *    whatever the path is, even when it does not exist: the daemon learns
 *    nothing of root's other files), and of those only regular files (a
 *    directory: EISDIR; a device, FIFO or socket: EINVAL; never opened;
 *    opened with O_NONBLOCK|O_NOCTTY and checked to be the file that was
 *    checked, so nothing swapped in can block it). The helper re-reads
 *    the config file itself, as root, for every request, so a reload sees
 *    the new names. Named are:
 *    the config file; the values (list items, "type:" prefix such as
 *    hash:, texthash:, cidr:, pcre:, regexp:, file:, refile: removed; glob
 *    patterns expanded) of every parameter of the daemon's tables whose
 *    name ends in _file, _files, _table, _tables, _maps or _list, or is in
 *    opts->more_params; and what opts->more_paths() adds (e.g. the key files
 *    listed in a DKIM KeyTable). A file matches a name when it is the same
 *    file (device and inode), so relative and absolute spellings agree; a
 *    named file that does not exist gets ENOENT when asked for by the
 *    name's own spelling (absolute, from the base directory).
 *  - append (O_WRONLY|O_APPEND, O_CREAT allowed, mode 0640): only the file
 *    that maillog_file names, spelled the same (absolute) way; never
 *    through a symbolic link (O_NOFOLLOW), regular, one link only (no hard
 *    link to another file), as Postfix's safe_open.
 *  - nothing else: no other flags, no writing, no creating elsewhere.
 *
 * The helper exits when the daemon does: PR_SET_PDEATHSIG (SIGKILL) and end
 * of file on the socket. It keeps no other descriptor of the daemon (stdin
 * and stdout on /dev/null, stderr kept, the rest closed), ignores SIGHUP,
 * SIGINT and SIGPIPE, and holds no secrets beyond the moment of an open.
 *
 * Adopting it in a daemon (sluice-dmarc, sluice-spam, sluice-ratelimit, ...):
 * these lines in main(), after daemon_detach() (PR_SET_PDEATHSIG follows
 * the forking process and thread: detach first, fork the helper from the
 * thread that lives as long as the daemon, i.e. main) and before
 * daemon_drop_privs(), with config_file already absolute (realpath) and
 * conf_enter_base_dir() done (see milters/dkim/main.c, policyd/spf/main.c):
 *
 *	static const struct conf_param *const own[] = { common_params, dmarc_params, NULL };
 *	struct privfile_opts priv = { .config_file = config_file, .tables = own };
 *	if (geteuid() == 0 && privfile_install(&priv, &err) < 0)
 *		fatal("privfile: %s", err);
 *
 * (your own table instead of dmarc_params: conf/params.h and
 * conf/params_<name>.h). Give the helper common_params and the daemon's
 * own table only, not params_all: it names the files of the tables it is
 * given, and params_all would let a compromised filter read sluiced's TLS
 * key. The other daemons' parameters in a shared sluice.conf are then only
 * unknown to the helper, not an error.
 *
 * Files the daemon opens with open()/fopen() of its own (not through
 * conf_read_file, table_open or log_init) switch to privfile_open() /
 * privfile_fopen(). A parameter that names a file without one of the
 * suffixes above goes in .more_params (e.g. { "ratelimit_rules", NULL }).
 *
 * The daemon's uid and groups come with each request (SCM_CREDENTIALS).
 * When they are not root's, a file is refused (EPERM) when a directory on
 * the way to it, as asked or where it really is, is one the daemon can
 * write (owner, group or world write; in a sticky directory such as /tmp
 * only when the daemon owns the next entry), and a name in such a
 * directory names nothing: there the daemon could have put a symbolic
 * link to any file in place of a named one. Keep root-only files
 * in directories that mail_owner cannot write, as Postfix asks.
 * XXX: directories (spam rules *.cf read with opendir) cannot be listed
 * through the helper; name the files or a glob in a *_files parameter.
 */
#ifndef SLUICE_PRIVFILE_H
#define SLUICE_PRIVFILE_H

#include <stdio.h>
#include <sys/types.h>

struct conf;
struct conf_param;
struct privfile_names;

struct privfile_opts {
	/* the config file; made absolute at install (the helper re-reads it) */
	const char *config_file;
	/* the daemon's parameter tables and ignored prefixes, as for conf_load() */
	const struct conf_param *const *tables;
	const char *const *ignore_prefixes;
	/* more parameters whose values are file names (NULL-terminated, may be NULL) */
	const char *const *more_params;
	/*
	 * more_paths - may be NULL. Runs in the helper (as root) with the
	 * config just read; adds the files it names indirectly with
	 * privfile_names_add() (a path relative to the base directory, or
	 * absolute). It may read files (the helper opens them directly).
	 */
	void (*more_paths)(const struct conf *c, struct privfile_names *names);
};

/*
 * privfile_install - fork the helper and install the process-wide hook.
 * Call as root, single-threaded, before dropping privileges (see above).
 * Returns 0, or -1 with *err_out (caller frees). A second call while
 * installed fails.
 */
int privfile_install(const struct privfile_opts *opts, char **err_out);

/*
 * privfile_uninstall - close the socket (the helper exits on end of file),
 * reap the helper and remove the hook. No-op when not installed.
 */
void privfile_uninstall(void);

/* privfile_installed - 1 while the hook is installed. */
int privfile_installed(void);

/* privfile_helper_pid - the helper's pid, or -1 when not installed. */
pid_t privfile_helper_pid(void);

/*
 * privfile_open - open(path, flags, mode), through the helper when the hook
 * is installed and the plain open fails with EACCES/EPERM and flags are
 * read-only or append (O_WRONLY|O_APPEND, optionally O_CREAT); O_CLOEXEC is
 * always set on a descriptor from the helper. Returns the descriptor, or -1
 * with errno (the helper's reason when it refused, the plain open's when
 * there is no helper or it is gone). Thread-safe.
 */
int privfile_open(const char *path, int flags, mode_t mode);

/*
 * privfile_fopen - fopen() through privfile_open(): mode "r" or "a"
 * ("re"/"ae" accepted; the stream is close-on-exec either way). NULL with
 * errno.
 */
FILE *privfile_fopen(const char *path, const char *mode);

/*
 * privfile_helper_open - ask the helper now, without trying a plain open
 * first (tests; a caller that knows). -1 with errno EBADF when not
 * installed, the helper's reason when it refused.
 */
int privfile_helper_open(const char *path, int flags, mode_t mode);

/*
 * privfile_names_add - for opts->more_paths: name one more file (copied).
 * Relative paths are relative to the config's base directory.
 */
void privfile_names_add(struct privfile_names *names, const char *path);

#endif
