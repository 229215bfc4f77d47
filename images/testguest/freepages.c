/*
 * sf-freepages: report which of this guest's page frames are free (unused by its kernel), so
 * that the host of a clone can give those frames zeros locally instead of fetching them from
 * the parent. In a PVH guest a guest frame number is the Linux PFN.
 *
 *   sf-freepages --print      "start count" lines (hex start, decimal count), then "total N"
 *   sf-freepages --xenstore   ranges into xenstore under the guest's own data/snowflock/free/:
 *                             keys 0,1,... each <= 2000 bytes of space-separated
 *                             "starthex+counthex" items, then (last) "count" = number of
 *                             chunk keys and "pages" = total free pages.
 *                             Prints "SF-FREE pages=N ranges=R chunks=C ms=T".
 *   --wait-applied S          after --xenstore, wait up to S seconds for the host to say it has
 *                             applied the report (data/snowflock/free-applied, written by memtap)
 *                             and print "SF-FREE applied=N" (pages the host will zero-fill) or
 *                             "SF-FREE applied=timeout". Run before allocating: a page the
 *                             guest touches before the host applied the report is fetched.
 *   --loose                   also report pages with no flags and no mappings (see below)
 *   --stats                   also print an "SF-FREE check ..." line (stderr with --print)
 *
 * Classification, from /proc/kpageflags and /proc/kpagecount (one u64 per PFN):
 *   BUDDY: count == 0 and flags == KPF_BUDDY   a page in a free buddy block. Since Linux 4.18
 *                                              (commit "kpageflags: ... buddy tail pages") the
 *                                              tail pages of a free block report KPF_BUDDY too,
 *                                              not just the head, so these are all buddy pages.
 *   ZERO:  count == 0 and flags == 0           a page on a per-cpu free list -- or an IN-USE
 *                                              kernel page that carries no flags: vmalloc and
 *                                              vmap'd kernel stacks (CONFIG_VMAP_STACK), pipe
 *                                              buffers, skb frags, ... (kpagecount is the *map*
 *                                              count, 0 for all kernel-only pages).
 *   anything else (other flags, a map count, KPF_NOPAGE) is in use.
 * By default only BUDDY pages are reported: giving zeros to an in-use ZERO page (say a kernel
 * stack) would corrupt the clone, while leaving out the few per-cpu-list pages only costs a
 * fetch. --loose reports ZERO pages as well. --stats prints "SF-FREE check ..." with the
 * counts and /proc/buddyinfo's free total (which should be close to the default result).
 *
 * Errors print "SF-FREE error ..." and exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define KPF_BUDDY (1ULL << 10)
#define CHUNK_ENTRIES 65536           /* PFNs read per read() of each file */
#define XS_VALUE_MAX 2000             /* bytes per xenstore chunk value */
#define XS_DIR "data/snowflock/free"
#define XS_APPLIED "data/snowflock/free-applied"
#define XS_BATCH 16                   /* chunk keys per xenstore-write invocation */

struct range { uint64_t start, count; };

static struct range *ranges;
static size_t nranges, cap_ranges;
static uint64_t total_pages;

static void fail(const char *fmt, const char *arg, int err)
{
  printf("SF-FREE error ");
  printf(fmt, arg);
  if (err) printf(": %s", strerror(err));
  printf("\n");
  fflush(stdout);
  exit(1);
}

static void add_pages(uint64_t start, uint64_t count)
{
  if (!count) return;
  total_pages += count;
  if (nranges && ranges[nranges - 1].start + ranges[nranges - 1].count == start) {
    ranges[nranges - 1].count += count;
    return;
  }
  if (nranges == cap_ranges) {
    cap_ranges = cap_ranges ? cap_ranges * 2 : 4096;
    ranges = realloc(ranges, cap_ranges * sizeof *ranges);
    if (!ranges) fail("%s", "out of memory", 0);
  }
  ranges[nranges].start = start;
  ranges[nranges].count = count;
  nranges++;
}

/* Reads up to n u64 entries at entry index pfn; returns the number read (0 at the end). */
static size_t read_entries(int fd, const char *name, uint64_t pfn, uint64_t *buf, size_t n)
{
  size_t got = 0;
  while (got < n * sizeof *buf) {
    ssize_t r = pread(fd, (char *)buf + got, n * sizeof *buf - got, (off_t)(pfn * sizeof *buf + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail("reading %s", name, errno);
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  return got / sizeof *buf;
}

static uint64_t buddy_pages, zero_pages;

static void scan(int loose)
{
  int ff = open("/proc/kpageflags", O_RDONLY);
  if (ff < 0) fail("cannot open %s", "/proc/kpageflags", errno);
  int fc = open("/proc/kpagecount", O_RDONLY);
  if (fc < 0) fail("cannot open %s", "/proc/kpagecount", errno);
  uint64_t *flags = malloc(CHUNK_ENTRIES * sizeof *flags);
  uint64_t *counts = malloc(CHUNK_ENTRIES * sizeof *counts);
  if (!flags || !counts) fail("%s", "out of memory", 0);

  uint64_t pfn = 0;
  for (;;) {
    size_t nf = read_entries(ff, "/proc/kpageflags", pfn, flags, CHUNK_ENTRIES);
    size_t nc = read_entries(fc, "/proc/kpagecount", pfn, counts, CHUNK_ENTRIES);
    size_t n = nf < nc ? nf : nc;
    if (n == 0) break;
    for (size_t i = 0; i < n; i++) {
      uint64_t p = pfn + i, f = flags[i];
      int buddy = counts[i] == 0 && f == KPF_BUDDY;
      int zero = counts[i] == 0 && f == 0;
      buddy_pages += buddy;
      zero_pages += zero;
      if (buddy || (loose && zero)) add_pages(p, 1);
    }
    pfn += n;
    if (n < CHUNK_ENTRIES) break;
  }
  if (pfn == 0) fail("%s", "/proc/kpageflags is empty", 0);
  free(flags);
  free(counts);
  close(ff);
  close(fc);
}

/* Free pages according to /proc/buddyinfo (sum of count << order), or -1. */
static long long buddyinfo_pages(void)
{
  FILE *f = fopen("/proc/buddyinfo", "r");
  if (!f) return -1;
  char line[1024];
  long long total = 0;
  while (fgets(line, sizeof line, f)) {
    char *s = strstr(line, "zone");
    if (!s) continue;
    s += 4;
    while (*s == ' ') s++;
    while (*s && *s != ' ') s++;          /* skip the zone name */
    char *end;
    for (int order = 0;; order++) {
      long long c = strtoll(s, &end, 10);
      if (end == s) break;
      total += c << order;
      s = end;
    }
  }
  fclose(f);
  return total;
}

static int run(char *const argv[])
{
  pid_t pid;
  int err = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
  if (err) { errno = err; return -1; }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  errno = 0;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* argv for xenstore-write: pairs of key, value. Strings are heap-allocated. */
static char **xs_argv;
static int xs_argc;

static void xs_add(const char *key, const char *value)
{
  xs_argv = realloc(xs_argv, (size_t)(xs_argc + 4) * sizeof *xs_argv);
  if (!xs_argv) fail("%s", "out of memory", 0);
  if (xs_argc == 0) xs_argv[xs_argc++] = strdup("xenstore-write");
  xs_argv[xs_argc++] = strdup(key);
  xs_argv[xs_argc++] = strdup(value);
  xs_argv[xs_argc] = NULL;
}

static void xs_flush(void)
{
  if (xs_argc == 0) return;
  int rc = run(xs_argv);
  if (rc != 0) {
    char msg[128];
    if (rc < 0) snprintf(msg, sizeof msg, "cannot run xenstore-write (%s)", strerror(errno));
    else snprintf(msg, sizeof msg, "xenstore-write exited with %d", rc);
    fail("%s", msg, 0);
  }
  for (int i = 0; i < xs_argc; i++) free(xs_argv[i]);
  xs_argc = 0;
}

static unsigned write_xenstore(void)
{
  /* xenstore-read/-write in the test guest are dynamically linked against these. */
  setenv("LD_LIBRARY_PATH", "/lib/x86_64-linux-gnu", 0);
  /* Drop a previous report, so that a reader never sees a stale count; may not exist. */
  char *rm[] = { "xenstore-rm", XS_DIR, NULL };
  run(rm);
  char *rm_applied[] = { "xenstore-rm", XS_APPLIED, NULL };
  run(rm_applied);

  char value[XS_VALUE_MAX + 1], key[64], item[48];
  size_t len = 0;
  unsigned chunks = 0, batched = 0;
  for (size_t i = 0; i <= nranges; i++) {
    int n = 0;
    if (i < nranges)
      n = snprintf(item, sizeof item, "%s%llx+%llx", len ? " " : "",
                   (unsigned long long)ranges[i].start, (unsigned long long)ranges[i].count);
    if (i == nranges || len + (size_t)n > XS_VALUE_MAX) {
      if (len) {
        snprintf(key, sizeof key, XS_DIR "/%u", chunks++);
        xs_add(key, value);
        if (++batched == XS_BATCH) { xs_flush(); batched = 0; }
      }
      len = 0;
      if (i == nranges) break;
      n = snprintf(item, sizeof item, "%llx+%llx",
                   (unsigned long long)ranges[i].start, (unsigned long long)ranges[i].count);
    }
    memcpy(value + len, item, (size_t)n + 1);
    len += (size_t)n;
  }
  xs_flush();
  /* Last: a reader waits for count. */
  char num[32];
  snprintf(num, sizeof num, "%u", chunks);
  xs_add(XS_DIR "/count", num);
  snprintf(num, sizeof num, "%llu", (unsigned long long)total_pages);
  xs_add(XS_DIR "/pages", num);
  xs_flush();
  return chunks;
}

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls the host's acknowledgement; prints what it said, or that it did not come. */
static void wait_applied(long seconds)
{
  long long deadline = now_ms() + seconds * 1000;
  for (;;) {
    char value[32] = "";
    FILE *f = popen("xenstore-read " XS_APPLIED " 2>/dev/null", "r");
    if (f) {
      if (!fgets(value, sizeof value, f)) value[0] = 0;
      pclose(f);
    }
    value[strcspn(value, "\n")] = 0;
    if (value[0]) { printf("SF-FREE applied=%s\n", value); return; }
    if (now_ms() >= deadline) { printf("SF-FREE applied=timeout\n"); return; }
    struct timespec pause = { 0, 100 * 1000 * 1000 };
    nanosleep(&pause, NULL);
  }
}

static void usage(void)
{
  fprintf(stderr, "usage: sf-freepages --print|--xenstore [--wait-applied S] [--loose] [--stats]\n");
  exit(2);
}

int main(int argc, char **argv)
{
  int print = 0, xs = 0, loose = 0, stats = 0;
  long wait_s = -1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--print")) print = 1;
    else if (!strcmp(argv[i], "--xenstore")) xs = 1;
    else if (!strcmp(argv[i], "--loose")) loose = 1;
    else if (!strcmp(argv[i], "--stats")) stats = 1;
    else if (!strcmp(argv[i], "--wait-applied") && i + 1 < argc) wait_s = atol(argv[++i]);
    else usage();
  }
  if (!print && !xs) usage();
  setvbuf(stdout, NULL, _IOLBF, 0);

  long long t0 = now_ms();
  scan(loose);
  long long scan_ms = now_ms() - t0;

  if (stats) {
    long long bi = buddyinfo_pages();
    fprintf(print ? stderr : stdout,
            "SF-FREE check mode=%s pages=%llu buddy=%llu noflags=%llu buddyinfo=%lld scan_ms=%lld\n",
            loose ? "loose" : "buddy", (unsigned long long)total_pages,
            (unsigned long long)buddy_pages, (unsigned long long)zero_pages, bi, scan_ms);
  }
  if (print) {
    for (size_t i = 0; i < nranges; i++)
      printf("0x%llx %llu\n", (unsigned long long)ranges[i].start,
             (unsigned long long)ranges[i].count);
    printf("total %llu\n", (unsigned long long)total_pages);
  }
  if (xs) {
    unsigned chunks = write_xenstore();
    printf("SF-FREE pages=%llu ranges=%zu chunks=%u ms=%lld\n", (unsigned long long)total_pages,
           nranges, chunks, now_ms() - t0);
    if (wait_s >= 0) wait_applied(wait_s);
  }
  return 0;
}
