#include "pv_stream.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "build_guards.h"
#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

// Writes everything or returns false (the reader went away: restore failed early).
bool WriteAll(int fd, const uint8_t* data, size_t length) {
  while (length > 0) {
    ssize_t n = write(fd, data, length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    length -= size_t(n);
  }
  return true;
}

// Feeds head, the image's page data and tail into the pipe xc_domain_restore reads.
// Returns an error message, or "" when everything was written.
std::string FeedStream(int out, const PvRestoreSpec& spec) {
  if (!WriteAll(out, spec.head.data(), spec.head.size())) return "the restore stopped reading the stream head";
  FileDescriptor image(open(spec.image.c_str(), O_RDONLY | O_CLOEXEC));
  if (image.get() < 0) return "cannot open memory image " + spec.image + ": " + std::strerror(errno);
  std::vector<uint8_t> buf(1 << 20);
  uint64_t offset = spec.image_offset, left = spec.image_length;
  while (left > 0) {
    ssize_t got = pread(image.get(), buf.data(), std::min<uint64_t>(buf.size(), left), off_t(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return "memory image " + spec.image + " ends early";
    if (!WriteAll(out, buf.data(), size_t(got))) return "the restore stopped reading the page data";
    offset += uint64_t(got);
    left -= uint64_t(got);
  }
  if (!WriteAll(out, spec.tail.data(), spec.tail.size())) return "the restore stopped reading the stream tail";
  return "";
}

}  // namespace

void SavePvStream(xc_interface* xch, uint32_t domid, const std::string& path) {
  const std::string subject = "domain " + std::to_string(domid);
  FileDescriptor out(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (out.get() < 0) ThrowXenError("open", path);
  struct save_callbacks callbacks = {};
  // The caller has suspended the guest already; xc_domain_save checks that it is.
  callbacks.suspend = [](void*) { return 1; };
  ClearXenLog();
  if (Xen().xc_domain_save(xch, out.get(), domid, 0, &callbacks, XC_STREAM_PLAIN, -1))
    ThrowXenError("xc_domain_save", subject);
  if (fsync(out.get()) != 0) ThrowXenError("fsync", path);
}

BuildResult RestorePvStream(xc_interface* xch, const PvRestoreSpec& spec) {
  const XenLibs& xen = Xen();
  BuildResult out;
  struct xen_domctl_createdomain config = {};
  config.flags = 0;  // PV: neither hvm nor hap
  config.max_vcpus = spec.max_vcpus;
  config.max_evtchn_port = 1023;
  config.max_grant_frames = -1;
  config.max_maptrack_frames = -1;
  config.grant_opts = XEN_DOMCTL_GRANT_version(2);
  std::memcpy(config.handle, spec.handle.data(), sizeof config.handle);
  ClearXenLog();
  if (xen.xc_domain_create(xch, &out.domid, &config) < 0) ThrowXenError("xc_domain_create", "PV clone");
  DomainUnderConstruction domain(xch, out.domid);
  const std::string subject = "new PV domain " + std::to_string(out.domid);

  // The restore sizes its vCPU table from the vCPUs that exist.
  if (xen.xc_domain_max_vcpus(xch, out.domid, spec.max_vcpus)) ThrowXenError("xc_domain_max_vcpus", subject);
  if (xen.xc_domain_setmaxmem(xch, out.domid, spec.max_pages * (XC_PAGE_SIZE / 1024) + 1024))
    ThrowXenError("xc_domain_setmaxmem", subject);
  // Any free ports: a PV guest reads both from start_info, which the restore patches.
  int store = xen.xc_evtchn_alloc_unbound(xch, out.domid, 0);
  if (store < 0) ThrowXenError("xc_evtchn_alloc_unbound", subject);
  int console = xen.xc_evtchn_alloc_unbound(xch, out.domid, 0);
  if (console < 0) ThrowXenError("xc_evtchn_alloc_unbound", subject);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) ThrowXenError("pipe2", subject);
  FileDescriptor read_end(fds[0]), write_end(fds[1]);
  std::string feed_error;
  std::thread feeder([&] {
    feed_error = FeedStream(write_end.get(), spec);
    write_end.reset();  // EOF, or EPIPE for a restore that already gave up
  });
  struct restore_callbacks callbacks = {};  // must not be NULL; nothing needed for a plain stream
  unsigned long store_mfn = 0, console_mfn = 0;
  ClearXenLog();
  int rc = xen.xc_domain_restore(xch, read_end.get(), out.domid, uint32_t(store), &store_mfn, 0, uint32_t(console),
                                 &console_mfn, 0, XC_STREAM_PLAIN, &callbacks, -1);
  int err = errno;
  read_end.reset();  // unblocks a feeder still writing
  feeder.join();
  errno = err;
  if (rc) ThrowXenError("xc_domain_restore", subject + (feed_error.empty() ? "" : " (" + feed_error + ")"));
  if (!feed_error.empty()) throw XenError("xc_domain_restore", subject + ": " + feed_error, EIO, "");

  out.store_port = uint32_t(store);
  out.console_port = uint32_t(console);
  out.store_gfn = store_mfn;  // machine frames for PV: what xenstored and xenconsoled map
  out.console_gfn = console_mfn;
  domain.Commit();
  return out;
}

}  // namespace snowflock
