#include "crash_trace.h"

#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

namespace snowflock {

namespace {

void OnCrash(int sig, siginfo_t* info, void*) {
  char line[128];
  int n = snprintf(line, sizeof line, "snowflock: fatal signal %d (%s) at address %p; native backtrace:\n", sig,
                   strsignal(sig), info ? info->si_addr : nullptr);
  (void)!write(STDERR_FILENO, line, size_t(n));
  void* frames[64];
  int depth = backtrace(frames, 64);
  backtrace_symbols_fd(frames, depth, STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

void InstallCrashTrace() {
  struct sigaction sa = {};
  sa.sa_sigaction = OnCrash;
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  sigaction(SIGABRT, &sa, nullptr);
}

}  // namespace snowflock
