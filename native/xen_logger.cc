#include "xen_logger.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "xen_error.h"

namespace snowflock {

namespace {

const char* LevelName(xentoollog_level level) {
  switch (level) {
    case XTL_WARN: return "warning";
    case XTL_ERROR: return "error";
    case XTL_CRITICAL: return "critical";
    default: return "info";
  }
}

void VMessage(xentoollog_logger*, xentoollog_level level, int errnoval, const char* context,
              const char* format, va_list al) {
  // Debug chatter would overwrite the line that explains a failure.
  if (level < XTL_WARN) return;
  char text[1024];
  vsnprintf(text, sizeof text, format, al);
  std::string line;
  if (context) line = std::string(context) + ": ";
  line += LevelName(level);
  line += ": ";
  line += text;
  if (errnoval >= 0) line += std::string(": ") + strerror(errnoval);
  RecordXenLog(line);
  if (getenv("SNOWFLOCK_XEN_DEBUG")) fprintf(stderr, "[xen] %s\n", line.c_str());
}

void Progress(xentoollog_logger*, const char*, const char*, int, unsigned long, unsigned long) {}
void Destroy(xentoollog_logger*) {}

xentoollog_logger logger = {VMessage, Progress, Destroy};

}  // namespace

xentoollog_logger* CapturingLogger() { return &logger; }

}  // namespace snowflock
