// On SIGSEGV/SIGBUS/SIGABRT, prints a native backtrace to stderr before dying, so that a
// crash inside the test box (where there is no core file to collect) names its place.
#pragma once

namespace snowflock {

void InstallCrashTrace();

}  // namespace snowflock
