/*
 * sf-memtest: a memory workload whose output proves that a clone sees exactly its parent's
 * memory as of the fork.
 *
 *   sf-memtest --mb N [--mode verify|rewrite|alloc] [--alloc-mb M] [--churn-mb C] [--interval S] [--report-free]
 *   --churn-mb C: at start, write C MiB and free it again, leaving that much free-but-dirty memory in the
 *   kernel (what a long-running guest has, and what the free-page heuristic saves fetching)
 *
 * Fills N MiB (anonymous mmap, mlock'ed if possible) with a pattern that depends on
 * (generation, page index, word index), generation 1, then once per pass (every S seconds):
 *   - reads the clone id with `xenstore-read snowflock/vmid` (missing or unreadable: 0);
 *   - when the id differs from the previous pass's (the program now runs in a clone): prints
 *     "SF-MEM forked ...", then with --report-free runs `sf-freepages --xenstore --wait-applied 5`
 *     (the host applies the report before this process allocates) before touching the test memory, then in alloc mode maps M MiB more and writes every page of it
 *     (an allocation after the fork gets pages that were free at the fork); that extra area has
 *     its own pattern and is verified from then on. On a later fork (a clone of a clone) the
 *     previous extra area is unmapped first, then a new one is allocated;
 *   - verifies every page against the current generation and counts mismatching pages;
 *   - in rewrite mode: generation++ and rewrites every page (the extra area too);
 *   - prints "SF-MEM pass=...".
 * Output lines:
 *   SF-MEM ready pages=P gen=1
 *   SF-MEM forked vmid=V at pass=P gen=G
 *   SF-MEM badpage idx=I got=0x... want=0x...     (first 3 bad pages of a pass; I counts the
 *                                                   main area's pages first, then the extra's;
 *                                                   got/want are the first differing word)
 *   SF-MEM pass=P gen=G bad=B pages=N vmid=V verify_ms=T   (G = the generation verified,
 *                                                   N = pages verified, main + extra)
 *   SF-MEM note ...                                 (mlock failed, sf-freepages failed, ...)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PAGE_SIZE 4096UL
#define WORDS_PER_PAGE (PAGE_SIZE / sizeof(uint64_t))
#define MAIN_SALT 0x6d61696e61726561ULL   /* distinct patterns for the two areas */
#define EXTRA_SALT 0x6578747261617265ULL

struct area {
  uint64_t *mem;
  size_t pages;
  size_t bytes;
  uint64_t salt;
};

static struct area main_area, extra_area;
static const char *self_path;

static uint64_t mix64(uint64_t z)
{
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Word w of page i in generation g is page_base(g, i, salt) + w * WORD_STEP. */
#define WORD_STEP 0x9e3779b97f4a7c15ULL
static uint64_t page_base(uint64_t gen, uint64_t page, uint64_t salt)
{
  return mix64(salt ^ mix64(gen * 0xd6e8feb86659fd93ULL + page));
}

static void fill_area(struct area *a, uint64_t gen)
{
  for (size_t i = 0; i < a->pages; i++) {
    uint64_t *p = a->mem + i * WORDS_PER_PAGE;
    uint64_t v = page_base(gen, i, a->salt);
    for (size_t w = 0; w < WORDS_PER_PAGE; w++, v += WORD_STEP) p[w] = v;
  }
}

/* Counts the area's pages that differ from generation gen; reports the first few. */
static size_t verify_area(const struct area *a, uint64_t gen, size_t idx_base, size_t *reported)
{
  size_t bad = 0;
  for (size_t i = 0; i < a->pages; i++) {
    const uint64_t *p = a->mem + i * WORDS_PER_PAGE;
    uint64_t v = page_base(gen, i, a->salt);
    for (size_t w = 0; w < WORDS_PER_PAGE; w++, v += WORD_STEP) {
      if (p[w] != v) {
        if (*reported < 3) {
          printf("SF-MEM badpage idx=%zu got=0x%016llx want=0x%016llx\n", idx_base + i,
                 (unsigned long long)p[w], (unsigned long long)v);
          (*reported)++;
        }
        bad++;
        break;
      }
    }
  }
  return bad;
}

static int map_area(struct area *a, size_t mb, uint64_t salt, const char *name)
{
  a->bytes = mb << 20;
  a->pages = a->bytes / PAGE_SIZE;
  a->salt = salt;
  void *m = mmap(NULL, a->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    printf("SF-MEM note mmap of %zu MiB (%s) failed: %s\n", mb, name, strerror(errno));
    a->mem = NULL;
    a->pages = 0;
    return -1;
  }
  /* No copy-on-write sharing with the helper processes we spawn. */
  madvise(m, a->bytes, MADV_DONTFORK);
  if (mlock(m, a->bytes) != 0)
    printf("SF-MEM note mlock of %s area failed: %s\n", name, strerror(errno));
  a->mem = m;
  return 0;
}

static void unmap_area(struct area *a)
{
  if (!a->mem) return;
  munmap(a->mem, a->bytes);
  a->mem = NULL;
  a->pages = 0;
}

static long read_vmid(void)
{
  FILE *f = popen("xenstore-read snowflock/vmid 2>/dev/null", "r");
  if (!f) return 0;
  char buf[64] = "";
  long id = 0;
  if (fgets(buf, sizeof buf, f)) id = strtol(buf, NULL, 10);
  pclose(f);
  return id;
}

/* Runs sf-freepages --xenstore: next to this binary if argv[0] has a directory, else by PATH. */
static void report_free(void)
{
  char path[4096];
  const char *slash = strrchr(self_path, '/');
  const char *prog = "sf-freepages";
  if (slash && (size_t)(slash - self_path) + sizeof "/sf-freepages" <= sizeof path) {
    snprintf(path, sizeof path, "%.*s/sf-freepages", (int)(slash - self_path), self_path);
    if (access(path, X_OK) == 0) prog = path;
  }
  /* Waits (bounded) for the host to apply the report before this process allocates. */
  char *argv[] = { (char *)prog, "--xenstore", "--wait-applied", "5", NULL };
  pid_t pid;
  fflush(stdout);
  int err = posix_spawnp(&pid, prog, NULL, NULL, argv, environ);
  if (err) {
    printf("SF-MEM note cannot run sf-freepages: %s\n", strerror(err));
    return;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) { printf("SF-MEM note waitpid: %s\n", strerror(errno)); return; }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    printf("SF-MEM note sf-freepages failed (status 0x%x)\n", status);
}

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_seconds(double s)
{
  if (s <= 0) return;
  struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void usage(void)
{
  fprintf(stderr, "usage: sf-memtest --mb N [--mode verify|rewrite|alloc] [--alloc-mb M] [--churn-mb C] "
                  "[--interval S] [--report-free]\n");
  exit(2);
}

static long parse_mb(const char *s)
{
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v <= 0 || v > (1L << 20)) usage();
  return v;
}

int main(int argc, char **argv)
{
  long mb = 0, alloc_mb = 32, churn_mb = 0;
  double interval = 1;
  int report = 0;
  enum { VERIFY, REWRITE, ALLOC } mode = VERIFY;
  self_path = argv[0];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--report-free")) { report = 1; continue; }
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--mb")) mb = parse_mb(v);
    else if (!strcmp(a, "--alloc-mb")) alloc_mb = parse_mb(v);
    else if (!strcmp(a, "--churn-mb")) churn_mb = parse_mb(v);
    else if (!strcmp(a, "--interval")) {
      char *end;
      interval = strtod(v, &end);
      if (*v == '\0' || *end != '\0' || interval < 0) usage();
    } else if (!strcmp(a, "--mode")) {
      if (!strcmp(v, "verify")) mode = VERIFY;
      else if (!strcmp(v, "rewrite")) mode = REWRITE;
      else if (!strcmp(v, "alloc")) mode = ALLOC;
      else usage();
    } else usage();
  }
  if (mb <= 0) usage();
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* xenstore-read in the test guest is dynamically linked against these. */
  setenv("LD_LIBRARY_PATH", "/lib/x86_64-linux-gnu", 0);

  if (churn_mb > 0) {
    size_t bytes = (size_t)churn_mb << 20;
    void *churn = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (churn != MAP_FAILED) {
      memset(churn, 0xa5, bytes);
      munmap(churn, bytes);
      printf("SF-MEM churned mb=%ld\n", churn_mb);
    }
  }
  if (map_area(&main_area, (size_t)mb, MAIN_SALT, "main") != 0) return 1;
  uint64_t gen = 1;
  fill_area(&main_area, gen);
  printf("SF-MEM ready pages=%zu gen=%llu\n", main_area.pages, (unsigned long long)gen);

  long prev_vmid = read_vmid();
  for (unsigned long pass = 1;; pass++) {
    long vmid = read_vmid();
    if (vmid != prev_vmid) {
      printf("SF-MEM forked vmid=%ld at pass=%lu gen=%llu\n", vmid, pass, (unsigned long long)gen);
      if (report) report_free();
      if (mode == ALLOC) {
        unmap_area(&extra_area);
        if (map_area(&extra_area, (size_t)alloc_mb, EXTRA_SALT, "extra") == 0)
          fill_area(&extra_area, gen);
      }
      prev_vmid = vmid;
    }

    long long t0 = now_ms();
    size_t reported = 0;
    size_t bad = verify_area(&main_area, gen, 0, &reported);
    if (extra_area.mem) bad += verify_area(&extra_area, gen, main_area.pages, &reported);
    long long verify_ms = now_ms() - t0;
    size_t pages = main_area.pages + extra_area.pages;
    printf("SF-MEM pass=%lu gen=%llu bad=%zu pages=%zu vmid=%ld verify_ms=%lld\n", pass,
           (unsigned long long)gen, bad, pages, vmid, verify_ms);

    if (mode == REWRITE) {
      gen++;
      fill_area(&main_area, gen);
      if (extra_area.mem) fill_area(&extra_area, gen);
    }
    sleep_seconds(interval);
  }
}
