#include "crash_trace.h"

#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#include <atomic>

namespace snowflock {

namespace {

// Everything below runs in a signal handler, maybe on a thread that crashed inside malloc with
// its lock held: only async-signal-safe calls (write, raise), no stdio, no strsignal (it may
// translate, and so allocate), no allocation. backtrace() is not on POSIX's list; its first
// call loads libgcc's unwinder (dlopen, malloc), so InstallCrashTrace makes that call, and later
// calls only walk the stack. backtrace_symbols_fd writes to the fd without allocating.

constexpr int kMaxFrames = 64;

// A line assembled on the stack.
struct Line {
  char buf[160];
  size_t len = 0;
  void Add(const char* s) {
    while (*s && len < sizeof buf) buf[len++] = *s++;
  }
  void AddDecimal(uint64_t v) {
    char digits[20];
    int n = 0;
    do digits[n++] = char('0' + v % 10); while ((v /= 10) && n < 20);
    while (n && len < sizeof buf) buf[len++] = digits[--n];
  }
  void AddHex(uint64_t v) {
    Add("0x");
    char digits[16];
    int n = 0;
    do digits[n++] = "0123456789abcdef"[v & 0xf]; while ((v >>= 4) && n < 16);
    while (n && len < sizeof buf) buf[len++] = digits[--n];
  }
  void Write() const {
    for (size_t done = 0; done < len;) {
      ssize_t w = write(STDERR_FILENO, buf + done, len - done);
      if (w <= 0) return;  // nothing better to do while dying
      done += size_t(w);
    }
  }
};

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    default: return "signal";
  }
}

// The first thread to crash prints; another one crashing meanwhile goes straight to dying.
std::atomic<bool> printing{false};

void OnCrash(int sig, siginfo_t* info, void*) {
  if (!printing.exchange(true)) {
    Line line;
    line.Add("snowflock: fatal signal ");
    line.AddDecimal(uint64_t(sig));
    line.Add(" (");
    line.Add(SignalName(sig));
    line.Add(") at address ");
    line.AddHex(uintptr_t(info ? info->si_addr : nullptr));
    line.Add("; native backtrace:\n");
    line.Write();
    void* frames[kMaxFrames];
    int depth = backtrace(frames, kMaxFrames);
    backtrace_symbols_fd(frames, depth, STDERR_FILENO);
  }
  // SA_RESETHAND restored the default action: dying of the same signal keeps the exit status
  // (and a core file, where there is one).
  raise(sig);
}

}  // namespace

void InstallCrashTrace() {
  static_assert(std::atomic<bool>::is_always_lock_free, "the handler's flag must be lock-free");
  // Loads the unwinder now, outside any handler (see above).
  void* warmup[1];
  (void)backtrace(warmup, 1);
  struct sigaction sa = {};
  sa.sa_sigaction = OnCrash;
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  sigaction(SIGABRT, &sa, nullptr);
}

}  // namespace snowflock
