// Owners that undo a half-finished build when an error leaves it: a domain being built is
// destroyed unless committed, and a file descriptor is closed. Shared by every builder.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <string>

#include "xen_headers.h"
#include "xen_libs.h"

namespace snowflock {

// Destroys the domain unless the build reached the end.
class DomainUnderConstruction {
 public:
  DomainUnderConstruction(xc_interface* xch, uint32_t domid) : xch_(xch), domid_(domid) {}
  ~DomainUnderConstruction() {
    if (!committed_) Xen().xc_domain_destroy(xch_, domid_);
  }
  DomainUnderConstruction(const DomainUnderConstruction&) = delete;
  DomainUnderConstruction& operator=(const DomainUnderConstruction&) = delete;
  void Commit() { committed_ = true; }
  std::string subject() const { return "new domain " + std::to_string(domid_); }

 private:
  xc_interface* xch_;
  uint32_t domid_;
  bool committed_ = false;
};

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor() { reset(); }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

}  // namespace snowflock
