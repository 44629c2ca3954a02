// SPDX-License-Identifier: GPL-2.0
/*
 * log-writes-replay: list a dm-log-writes log, replay it onto a device or
 * file, and run a check command at chosen points of the replay.
 *
 * The log format (drivers/md/dm-log-writes.c, all fields little-endian):
 * byte 0 holds the super block, one "sectorsize" block long (sectorsize is
 * the logical block size of the logged device):
 *
 *	u64 magic (0x6a736677736872), u64 version (1), u64 nr_entries,
 *	u32 sectorsize
 *
 * then nr_entries entries, each a header block of sectorsize bytes
 *
 *	u64 sector, u64 nr_sectors, u64 flags, u64 data_len
 *
 * followed by nr_sectors * sectorsize bytes of the data written, except for
 * discards (no data) and marks (nr_sectors 0; the mark's name, data_len
 * bytes, follows the header inside its block).  sector and nr_sectors count
 * sectorsize units.  The kernel rewrites the super block after each FUA
 * and each mark entry and when the target is removed, so nr_entries counts
 * what was logged up to then.
 *
 * Writes are logged in the order they completed, but only once a flush
 * (or FUA) made them durable: the state after a FLUSH, FUA or MARK entry
 * is one the device could have shown after a crash at that moment.
 *
 * Usage: see print_help() below.  A discard is replayed as a write of zeros
 * (the device is not asked to discard), so the replay is the same on every
 * device.  Before each check command runs, the replay device is synced
 * (fdatasync), so the command may read it through another path (a loop
 * device's backing file, say).
 *
 * --start-mark A --end-mark B replays just the entries between the marks A
 * and B: it brings a device that holds the state at A forward to B.
 *
 * Exit status: 0 success, 1 a check command failed, 2 usage error, 3 the
 * log is invalid or an I/O error occurred.  Errors are one line on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <getopt.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define BIT(n)		(1U << (n))
#define BIT_ULL(n)	(1ULL << (n))
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

#define LW_MAGIC	0x6a736677736872ULL
#define LW_VERSION	1ULL

#define LW_FLUSH	BIT_ULL(0)
#define LW_FUA		BIT_ULL(1)
#define LW_DISCARD	BIT_ULL(2)
#define LW_MARK		BIT_ULL(3)
#define LW_METADATA	BIT_ULL(4)
#define LW_KNOWN	(LW_FLUSH | LW_FUA | LW_DISCARD | LW_MARK | LW_METADATA)

#define LW_SUPER_LEN	28	/* magic, version, nr_entries, sectorsize */
#define LW_ENTRY_LEN	32	/* sector, nr_sectors, flags, data_len */

#define CHUNK		BIT(20)

enum { EXIT_CHECK = 1, EXIT_USAGE = 2, EXIT_BAD = 3 };

static const struct {
	unsigned long long flag;
	const char *name;
} flag_names[] = {
	{ LW_FLUSH, "FLUSH" },
	{ LW_FUA, "FUA" },
	{ LW_DISCARD, "DISCARD" },
	{ LW_MARK, "MARK" },
	{ LW_METADATA, "METADATA" },
};

struct entry {
	unsigned long long index;
	unsigned long long sector;
	unsigned long long nr_sectors;
	unsigned long long flags;
	unsigned long long data_len;
	char mark[65536];
};

/* A write or discard of the current epoch, for --torn. */
struct epoch_write {
	unsigned long long index;
	unsigned long long off, len;	/* bytes on the replay device */
	unsigned char *undo;		/* what it overwrote; NULL: keep it */
};

struct replay {
	const char *log_path;
	const char *replay_path;
	int logfd;
	int replayfd;
	unsigned long long log_size;
	unsigned long long replay_size;
	unsigned long long nr_entries;
	unsigned int sectorsize;
	bool list;
	bool torn;
	struct epoch_write *epoch;
	size_t epoch_len, epoch_cap;
	bool has_limit;
	unsigned long long limit;
	const char *start_mark;
	const char *end_mark;
	unsigned long long check_mask;
	const char *check_cmd;
	unsigned char *chunk;
	unsigned char *hdr;		/* one entry's header block */
	/* counts for the summary line */
	unsigned long long writes, discards, flushes, fuas, marks, checks;
	unsigned long long torn_checks;
};

/* ---------------------------------------------------------------- */
/* Helpers                                                          */
/* ---------------------------------------------------------------- */

static _Noreturn void die(int status, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("log-writes-replay: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static unsigned long long get_le(const unsigned char *p, int bytes)
{
	unsigned long long v = 0;
	int i;

	for (i = bytes - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The size in bytes of a regular file or block device. */
static unsigned long long fd_size(int fd, const char *path)
{
	unsigned long long size;
	struct stat st;

	if (fstat(fd, &st))
		die(EXIT_BAD, "%s: %s", path, strerror(errno));
	if (S_ISREG(st.st_mode))
		return st.st_size;
	if (!S_ISBLK(st.st_mode))
		die(EXIT_BAD, "%s: not a regular file or block device", path);
	if (ioctl(fd, BLKGETSIZE64, &size))
		die(EXIT_BAD, "%s: BLKGETSIZE64: %s", path, strerror(errno));
	return size;
}

static void read_at(struct replay *r, void *buf, size_t len,
		    unsigned long long off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(r->logfd, (char *)buf + done, len - done, off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(EXIT_BAD, "%s: read at byte %llu: %s", r->log_path,
			    off + done, strerror(errno));
		if (n == 0)
			die(EXIT_BAD, "%s: short read at byte %llu",
			    r->log_path, off + done);
		done += n;
	}
}

static void read_replay(struct replay *r, void *buf, size_t len,
			unsigned long long off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(r->replayfd, (char *)buf + done, len - done,
			  off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die(EXIT_BAD, "%s: read at byte %llu: %s",
			    r->replay_path, off + done,
			    n < 0 ? strerror(errno) : "end of device");
		done += n;
	}
}

static void write_at(struct replay *r, const void *buf, size_t len,
		     unsigned long long off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pwrite(r->replayfd, (const char *)buf + done, len - done,
			   off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die(EXIT_BAD, "%s: write at byte %llu: %s",
			    r->replay_path, off + done,
			    n < 0 ? strerror(errno) : "no progress");
		done += n;
	}
}

static void sync_replay(struct replay *r)
{
	if (r->replayfd >= 0 && fdatasync(r->replayfd))
		die(EXIT_BAD, "%s: fdatasync: %s", r->replay_path,
		    strerror(errno));
}

/* "FLUSH|FUA", or "NONE". */
static void flags_str(unsigned long long flags, char *buf, size_t len)
{
	size_t i, used = 0;

	buf[0] = '\0';
	for (i = 0; i < ARRAY_SIZE(flag_names); i++) {
		if (!(flags & flag_names[i].flag))
			continue;
		used += snprintf(buf + used, len - used, "%s%s",
				 used ? "|" : "", flag_names[i].name);
		if (used >= len)
			return;
	}
	if (!used)
		snprintf(buf, len, "NONE");
}

/* ---------------------------------------------------------------- */
/* The log                                                          */
/* ---------------------------------------------------------------- */

static void read_super(struct replay *r)
{
	unsigned char sb[LW_SUPER_LEN];
	unsigned long long magic, version, ss, room;

	if (r->log_size < LW_SUPER_LEN)
		die(EXIT_BAD, "%s: too small for a log super block (%llu bytes)",
		    r->log_path, r->log_size);
	read_at(r, sb, sizeof(sb), 0);
	magic = get_le(sb, 8);
	version = get_le(sb + 8, 8);
	r->nr_entries = get_le(sb + 16, 8);
	ss = get_le(sb + 24, 4);
	if (magic != LW_MAGIC)
		die(EXIT_BAD, "%s: bad magic 0x%llx, not a dm-log-writes log",
		    r->log_path, magic);
	if (version != LW_VERSION)
		die(EXIT_BAD, "%s: log version %llu, only %llu is known",
		    r->log_path, version, LW_VERSION);
	if (ss < 512 || ss > 65536 || (ss & (ss - 1)))
		die(EXIT_BAD, "%s: bad sectorsize %llu", r->log_path, ss);
	r->sectorsize = ss;
	room = r->log_size / ss - 1;
	if (r->log_size < ss || r->nr_entries > room)
		die(EXIT_BAD, "%s: %llu entries do not fit in %llu bytes",
		    r->log_path, r->nr_entries, r->log_size);
}

/*
 * Read and validate the entry whose header is at byte pos; return the
 * bytes of data that follow the header.
 */
static unsigned long long read_entry(struct replay *r, unsigned char *hdr,
				     unsigned long long pos, struct entry *e)
{
	unsigned long long ss = r->sectorsize, data, i;

	if (pos > r->log_size || r->log_size - pos < ss)
		die(EXIT_BAD, "entry %llu: header at byte %llu past the log's end (%llu)",
		    e->index, pos, r->log_size);
	read_at(r, hdr, ss, pos);
	e->sector = get_le(hdr, 8);
	e->nr_sectors = get_le(hdr + 8, 8);
	e->flags = get_le(hdr + 16, 8);
	e->data_len = get_le(hdr + 24, 8);
	e->mark[0] = '\0';

	if (e->flags & ~LW_KNOWN)
		die(EXIT_BAD, "entry %llu at byte %llu: unknown flags 0x%llx",
		    e->index, pos, e->flags);
	if (!e->flags && !e->nr_sectors)
		die(EXIT_BAD, "entry %llu at byte %llu: empty entry (torn log?)",
		    e->index, pos);
	if (e->flags & LW_MARK) {
		if (e->nr_sectors || e->data_len >= ss - LW_ENTRY_LEN)
			die(EXIT_BAD, "entry %llu at byte %llu: bad mark (%llu sectors, %llu B)",
			    e->index, pos, e->nr_sectors, e->data_len);
		for (i = 0; i < e->data_len; i++) {
			unsigned char c = hdr[LW_ENTRY_LEN + i];

			e->mark[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
		}
		e->mark[i] = '\0';
	} else {
		if (e->data_len)
			die(EXIT_BAD, "entry %llu at byte %llu: inline data (%llu B) unsupported",
			    e->index, pos, e->data_len);
		for (i = LW_ENTRY_LEN; i < ss; i++)
			if (hdr[i])
				die(EXIT_BAD, "entry %llu at byte %llu: header not zero-padded",
				    e->index, pos);
	}

	/* A discard carries no data; a write's must fit in the log. */
	if (e->nr_sectors > ULLONG_MAX / ss)
		die(EXIT_BAD, "entry %llu at byte %llu: %llu sectors is too many",
		    e->index, pos, e->nr_sectors);
	data = (e->flags & LW_DISCARD) ? 0 : e->nr_sectors * ss;
	if (r->log_size - pos - ss < data)
		die(EXIT_BAD, "entry %llu at byte %llu: %llu data bytes past the end",
		    e->index, pos, data);
	if (r->replayfd >= 0 && e->nr_sectors &&
	    (e->sector > r->replay_size / ss ||
	     r->replay_size / ss - e->sector < e->nr_sectors))
		die(EXIT_BAD, "entry %llu: sectors %llu+%llu (%llu B) past the end of %s",
		    e->index, e->sector, e->nr_sectors, ss, r->replay_path);
	return data;
}

static void apply_entry(struct replay *r, const struct entry *e,
			unsigned long long data_pos)
{
	unsigned long long ss = r->sectorsize;
	unsigned long long off = e->sector * ss, left = e->nr_sectors * ss;
	size_t n;

	if (e->flags & LW_DISCARD)
		memset(r->chunk, 0, CHUNK);
	while (left) {
		n = left < CHUNK ? left : CHUNK;
		if (!(e->flags & LW_DISCARD)) {
			read_at(r, r->chunk, n, data_pos);
			data_pos += n;
		}
		write_at(r, r->chunk, n, off);
		off += n;
		left -= n;
	}
}

/* ---------------------------------------------------------------- */
/* Checks                                                           */
/* ---------------------------------------------------------------- */

static void run_check(struct replay *r, const struct entry *e,
		      const char *flags, const struct epoch_write *dropped)
{
	char index[24], drop[24] = "", without[48] = "";
	int status;
	pid_t pid;

	sync_replay(r);
	snprintf(index, sizeof(index), "%llu", e->index);
	if (dropped) {
		snprintf(drop, sizeof(drop), "%llu", dropped->index);
		snprintf(without, sizeof(without), " without entry %s", drop);
	}
	if (setenv("REPLAY_ENTRY", index, 1) ||
	    setenv("REPLAY_MARK", e->mark, 1) ||
	    setenv("REPLAY_FLAGS", flags, 1) ||
	    setenv("REPLAY_DROPPED", drop, 1))
		die(EXIT_BAD, "setenv: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		die(EXIT_BAD, "fork: %s", strerror(errno));
	if (!pid) {
		execl("/bin/sh", "sh", "-c", r->check_cmd, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die(EXIT_BAD, "waitpid: %s", strerror(errno));
	r->checks++;
	if (WIFEXITED(status) && !WEXITSTATUS(status))
		return;
	if (WIFEXITED(status))
		die(EXIT_CHECK, "check failed at entry %llu (%s%s%s)%s: exit status %d",
		    e->index, flags, *e->mark ? " " : "", e->mark, without,
		    WEXITSTATUS(status));
	die(EXIT_CHECK, "check failed at entry %llu (%s%s%s)%s: killed by signal %d",
	    e->index, flags, *e->mark ? " " : "", e->mark, without,
	    WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

/* ---------------------------------------------------------------- */
/* Torn epochs (--torn)                                             */
/* ---------------------------------------------------------------- */

/*
 * The kernel logs plain writes only in a batch, just before the flush
 * that was issued after they completed: the disk may have kept them in
 * any order, so a crash before the flush ended may have kept any subset
 * of the batch (the epoch).  --torn checks the subsets that lack one of
 * them.  Before each write or discard of an epoch is replayed, what it
 * overwrites is saved; at the FLUSH entry that ends the epoch, each in
 * turn is undone where no later write of the epoch covers it, checked,
 * and redone.  FUA and FLUSH entries with data are not undone (a FUA
 * write was durable before later writes were issued; the kernel logs it
 * alone, so it does not end an epoch).
 */
#define TORN_MAX_UNDO	(64ULL << 20)

static void epoch_add(struct replay *r, const struct entry *e)
{
	unsigned long long ss = r->sectorsize;
	struct epoch_write *w;

	if (r->epoch_len == r->epoch_cap) {
		r->epoch_cap = r->epoch_cap ? 2 * r->epoch_cap : 64;
		r->epoch = realloc(r->epoch, r->epoch_cap * sizeof(*r->epoch));
		if (!r->epoch)
			die(EXIT_BAD, "out of memory");
	}
	w = &r->epoch[r->epoch_len++];
	w->index = e->index;
	w->off = e->sector * ss;
	w->len = e->nr_sectors * ss;
	w->undo = NULL;
	if ((e->flags & (LW_FUA | LW_FLUSH)) || w->len > TORN_MAX_UNDO)
		return;
	w->undo = malloc(w->len);
	if (!w->undo)
		die(EXIT_BAD, "out of memory");
	read_replay(r, w->undo, w->len, w->off);
}

static void epoch_reset(struct replay *r)
{
	size_t i;

	for (i = 0; i < r->epoch_len; i++)
		free(r->epoch[i].undo);
	r->epoch_len = 0;
}

/*
 * Write, for each byte of epoch write i that no later write of the epoch
 * covers, the byte of src (laid out like write i) to the replay device;
 * with save, first read the device's bytes there into save.  Returns the
 * number of such bytes.
 */
static unsigned long long epoch_patch(struct replay *r, size_t i,
				      const unsigned char *src,
				      unsigned char *save)
{
	const struct epoch_write *w = &r->epoch[i];
	unsigned long long (*run)[2], done = 0, a, b, la, lb;
	size_t n = 1, k, m, j;

	/* runs of w left after subtracting each later write: at most j + 1 */
	run = malloc((r->epoch_len - i + 1) * sizeof(*run));
	if (!run)
		die(EXIT_BAD, "out of memory");
	run[0][0] = w->off;
	run[0][1] = w->off + w->len;
	for (j = i + 1; j < r->epoch_len && n; j++) {
		la = r->epoch[j].off;
		lb = la + r->epoch[j].len;
		for (k = 0, m = n; k < m; k++) {
			a = run[k][0];
			b = run[k][1];
			if (lb <= a || la >= b)
				continue;
			/* keep [a, la) in place, append [lb, b) */
			run[k][1] = la > a ? la : a;
			if (lb < b) {
				run[n][0] = lb;
				run[n][1] = b;
				n++;
			}
		}
	}
	for (k = 0; k < n; k++) {
		a = run[k][0];
		b = run[k][1];
		if (a >= b)
			continue;
		if (save)
			read_replay(r, save + (a - w->off), b - a, a);
		write_at(r, src + (a - w->off), b - a, a);
		done += b - a;
	}
	free(run);
	return done;
}

static void run_torn(struct replay *r, const struct entry *e,
		     const char *flags)
{
	unsigned char *redo;
	size_t i;

	for (i = 0; i < r->epoch_len; i++) {
		struct epoch_write *w = &r->epoch[i];

		if (!w->undo)
			continue;
		redo = malloc(w->len ? w->len : 1);
		if (!redo)
			die(EXIT_BAD, "out of memory");
		if (epoch_patch(r, i, w->undo, redo)) {
			run_check(r, e, flags, w);
			r->torn_checks++;
			epoch_patch(r, i, redo, NULL);
		}
		free(redo);
	}
}

/* ---------------------------------------------------------------- */
/* Main                                                             */
/* ---------------------------------------------------------------- */

static void replay_log(struct replay *r)
{
	unsigned long long pos = r->sectorsize, data;
	char flags[64];
	unsigned long long first = 0;
	bool started = !r->start_mark, found = false;
	struct entry e;

	r->hdr = malloc(r->sectorsize);
	if (!r->hdr)
		die(EXIT_BAD, "out of memory");
	if (r->list)
		printf("# %s: %llu entries, sectorsize %u\n"
		       "# index sector nr_sectors flags [mark]\n",
		       r->log_path, r->nr_entries, r->sectorsize);
	for (e.index = 0; e.index < r->nr_entries; e.index++) {
		if (r->has_limit && e.index >= r->limit)
			break;
		data = read_entry(r, r->hdr, pos, &e);
		pos += r->sectorsize + data;
		if (!started) {
			started = (e.flags & LW_MARK) &&
				  !strcmp(e.mark, r->start_mark);
			first = e.index + 1;
			continue;
		}
		flags_str(e.flags, flags, sizeof(flags));
		if (r->list)
			printf("%llu\t%llu\t%llu\t%s%s%s\n", e.index, e.sector,
			       e.nr_sectors, flags, *e.mark ? "\t" : "",
			       e.mark);
		if (r->torn && e.nr_sectors)
			epoch_add(r, &e);
		if (r->replayfd >= 0)
			apply_entry(r, &e, pos - data);

		if (e.flags & LW_DISCARD)
			r->discards++;
		else if (e.nr_sectors)
			r->writes++;
		r->flushes += !!(e.flags & LW_FLUSH);
		r->fuas += !!(e.flags & LW_FUA);
		r->marks += !!(e.flags & LW_MARK);

		if (r->check_cmd && (e.flags & r->check_mask)) {
			if (r->torn && (e.flags & LW_FLUSH))
				run_torn(r, &e, flags);
			run_check(r, &e, flags, NULL);
		}
		if (e.flags & LW_FLUSH)
			epoch_reset(r);
		if (r->end_mark && (e.flags & LW_MARK) &&
		    !strcmp(e.mark, r->end_mark)) {
			found = true;
			e.index++;
			break;
		}
	}
	free(r->hdr);
	epoch_reset(r);
	free(r->epoch);
	if (!started)
		die(EXIT_BAD, "mark '%s' is not in the log (%llu entries)",
		    r->start_mark, r->nr_entries);
	if (r->end_mark && !found)
		die(EXIT_BAD, "mark '%s' is not in the log%s%s (%llu entries)",
		    r->end_mark, r->start_mark ? " after mark " : "",
		    r->start_mark ? r->start_mark : "", r->nr_entries);
	sync_replay(r);
	printf("# %s %llu of %llu entries: ",
	       r->replayfd >= 0 ? "replayed" : "read", e.index - first,
	       r->nr_entries);
	printf("%llu writes, %llu discards, %llu flushes, %llu FUA, ",
	       r->writes, r->discards, r->flushes, r->fuas);
	printf("%llu marks; %llu checks passed", r->marks, r->checks);
	if (r->torn)
		printf(" (%llu of torn epochs)", r->torn_checks);
	printf("\n");
}

static void print_help(FILE *f)
{
	fputs("Usage: log-writes-replay --log LOG [--replay DEV] [--list]\n"
	      "         [--start-mark NAME] [--limit N | --end-mark NAME]\n"
	      "         [--check flush,fua,mark --check-cmd CMD]\n"
	      "\n"
	      "  --log LOG         the dm-log-writes log device (or a copy of it)\n"
	      "  --replay DEV      write the logged writes onto DEV (device or file)\n"
	      "  --list            print each entry: index, sector, nr_sectors\n"
	      "                    (in the log's sectorsize units), flags, mark\n"
	      "  --start-mark NAME skip the entries up to the mark NAME and it\n"
	      "  --limit N         handle only the first N entries of the log\n"
	      "  --end-mark NAME   stop after the mark NAME (error if absent)\n"
	      "  --check KINDS     after each entry with any of these flags\n"
	      "                    (comma-separated: flush, fua, mark), sync DEV\n"
	      "                    and run CMD with sh -c; REPLAY_ENTRY (index),\n"
	      "                    REPLAY_MARK (name or empty) and REPLAY_FLAGS\n"
	      "                    (e.g. FLUSH|FUA) in its environment; stop at\n"
	      "                    the first failing CMD, exit status 1\n"
	      "  --check-cmd CMD   the command for --check\n"
	      "  --torn            at a flush check, first check each state\n"
	      "                    that lacks one write of those logged since\n"
	      "                    the previous flush (not FUA writes), with\n"
	      "                    REPLAY_DROPPED=<its index> (else empty)\n"
	      "\n"
	      "Discards are replayed as writes of zeros.  Exit status: 0 ok,\n"
	      "1 a check failed, 2 usage error, 3 bad log or I/O error.\n", f);
}

static unsigned long long parse_kinds(const char *arg)
{
	unsigned long long mask = 0;
	char *copy, *tok, *save;

	copy = strdup(arg);
	if (!copy)
		die(EXIT_BAD, "out of memory");
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "flush"))
			mask |= LW_FLUSH;
		else if (!strcmp(tok, "fua"))
			mask |= LW_FUA;
		else if (!strcmp(tok, "mark"))
			mask |= LW_MARK;
		else
			die(EXIT_USAGE, "--check: unknown kind '%s' (flush, fua, mark)",
			    tok);
	}
	free(copy);
	if (!mask)
		die(EXIT_USAGE, "--check: no kind given");
	return mask;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "log", required_argument, NULL, 'l' },
		{ "replay", required_argument, NULL, 'r' },
		{ "list", no_argument, NULL, 'L' },
		{ "limit", required_argument, NULL, 'n' },
		{ "start-mark", required_argument, NULL, 's' },
		{ "end-mark", required_argument, NULL, 'e' },
		{ "check", required_argument, NULL, 'c' },
		{ "check-cmd", required_argument, NULL, 'C' },
		{ "torn", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	/* static: what it points to stays reachable when die() exits */
	static struct replay r = { .logfd = -1, .replayfd = -1 };
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			r.log_path = optarg;
			break;
		case 'r':
			r.replay_path = optarg;
			break;
		case 'L':
			r.list = true;
			break;
		case 'n':
			errno = 0;
			r.limit = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || *optarg == '-')
				die(EXIT_USAGE, "--limit: bad number '%s'",
				    optarg);
			r.has_limit = true;
			break;
		case 's':
			r.start_mark = optarg;
			break;
		case 'e':
			r.end_mark = optarg;
			break;
		case 'c':
			r.check_mask = parse_kinds(optarg);
			break;
		case 'C':
			r.check_cmd = optarg;
			break;
		case 't':
			r.torn = true;
			break;
		case 'h':
			print_help(stdout);
			return 0;
		default:
			print_help(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		die(EXIT_USAGE, "unexpected argument '%s' (see --help)",
		    argv[optind]);
	if (!r.log_path)
		die(EXIT_USAGE, "--log is required (see --help)");
	if (!r.replay_path && !r.list)
		die(EXIT_USAGE, "nothing to do: give --replay or --list");
	if (!!r.check_mask != !!r.check_cmd)
		die(EXIT_USAGE, "--check and --check-cmd go together");
	if (r.check_cmd && !r.replay_path)
		die(EXIT_USAGE, "--check needs --replay");
	if (r.torn && !r.check_cmd)
		die(EXIT_USAGE, "--torn needs --check");
	if (r.has_limit && r.end_mark)
		die(EXIT_USAGE, "--limit and --end-mark exclude each other");

	r.logfd = open(r.log_path, O_RDONLY | O_CLOEXEC);
	if (r.logfd < 0)
		die(EXIT_BAD, "%s: %s", r.log_path, strerror(errno));
	r.log_size = fd_size(r.logfd, r.log_path);
	read_super(&r);
	if (r.replay_path) {
		r.replayfd = open(r.replay_path,
				  (r.torn ? O_RDWR : O_WRONLY) | O_CLOEXEC);
		if (r.replayfd < 0)
			die(EXIT_BAD, "%s: %s", r.replay_path, strerror(errno));
		r.replay_size = fd_size(r.replayfd, r.replay_path);
		r.chunk = malloc(CHUNK);
		if (!r.chunk)
			die(EXIT_BAD, "out of memory");
	}
	replay_log(&r);
	free(r.chunk);
	if (r.replayfd >= 0 && close(r.replayfd))
		die(EXIT_BAD, "%s: close: %s", r.replay_path, strerror(errno));
	close(r.logfd);
	return 0;
}
