// On SIGSEGV/SIGBUS/SIGABRT, prints a native backtrace to stderr before dying, so that a
// crash inside the test box (where there is no core file to collect) names its place. The
// handler makes only async-signal-safe calls (write, raise; backtrace warmed up at install).
#pragma once

namespace snowflock {

void InstallCrashTrace();

}  // namespace snowflock
