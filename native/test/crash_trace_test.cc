// The crash handler (native/crash_trace.cc) must only make async-signal-safe calls: a crash
// inside malloc, with its lock held, would otherwise hang or corrupt the heap while printing.
// This executable replaces malloc and friends (forwarding to glibc's own) and, once it is about
// to crash, ends with exit code 3 and a message if the handler allocates. Then it crashes:
// test/unit/native/crash-trace.test.ts checks that it died of the signal with a useful trace.
//   crash_trace_test segv | abort
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstddef>

#include "../crash_trace.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace {

volatile sig_atomic_t crashing = 0;

void CheckNotCrashing(const char* call) {
  if (!crashing) return;
  const char* head = "crash_trace_test: the crash handler called ";
  (void)!write(STDERR_FILENO, head, strlen(head));
  (void)!write(STDERR_FILENO, call, strlen(call));
  (void)!write(STDERR_FILENO, "\n", 1);
  _exit(3);
}

}  // namespace

extern "C" {
void* malloc(size_t n) {
  CheckNotCrashing("malloc");
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  CheckNotCrashing("calloc");
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  CheckNotCrashing("realloc");
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  CheckNotCrashing("memalign");
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  CheckNotCrashing("posix_memalign");
  *out = __libc_memalign(align, n);
  return *out ? 0 : ENOMEM;
}
void* aligned_alloc(size_t align, size_t n) {
  CheckNotCrashing("aligned_alloc");
  return __libc_memalign(align, n);
}
void free(void* p) {
  CheckNotCrashing("free");
  __libc_free(p);
}
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "segv";
  snowflock::InstallCrashTrace();
  crashing = 1;
  if (strcmp(mode, "abort") == 0) raise(SIGABRT);
  *static_cast<volatile int*>(nullptr) = 1;
  return 0;
}
