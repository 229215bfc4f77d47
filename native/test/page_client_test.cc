// The memtap's page client (native/page_client.cc) against a live memserver, without Xen or
// Node: test/unit/memtap/native-client.test.ts starts a TS memserver and runs this. Linked to
// the system's libcrypto (the addon uses the one inside Node).
//   page_client_test HOST PORT TOKEN_HEX VMID [GFN...]
// prints "welcome pages=N evict=N eager=N plaintext=0|1", then per GFN "page GFN SHA256HEX"
// (fetched in batches of up to 64), then "bye"; on a XenError "error errno=N MESSAGE", exit 2.
// With PAGE_CLIENT_BENCH=N it instead fetches all the GFNs in one request N times and prints
// "bench gets=N batch=B us_per_get=X cpu_us_per_get=C" (C: this process's CPU time, user + system;
// test/unit/memtap/seal-cost.test.ts).
#include <openssl/evp.h>
#include <sys/resource.h>

#include <algorithm>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../page_client.h"
#include "../xen_error.h"

using snowflock::PageClient;

static std::string Hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) s += digits[p[i] >> 4], s += digits[p[i] & 15];
  return s;
}

int main(int argc, char** argv) {
  if (argc < 5 || std::string(argv[3]).size() != 64) {
    std::fprintf(stderr, "usage: page_client_test HOST PORT TOKEN_HEX VMID [GFN...]\n");
    return 1;
  }
  std::array<uint8_t, 32> token{};
  for (size_t i = 0; i < 32; i++) token[i] = uint8_t(std::stoul(std::string(argv[3] + 2 * i, 2), nullptr, 16));
  std::vector<uint64_t> gfns;
  for (int i = 5; i < argc; i++) gfns.push_back(std::stoull(argv[i], nullptr, 0));
  PageClient client(argv[1], uint16_t(std::atoi(argv[2])), token, uint32_t(std::atoi(argv[4])), 5000);
  try {
    snowflock::Welcome w = client.Connect();
    std::printf("welcome pages=%llu evict=%zu eager=%zu plaintext=%d\n", (unsigned long long)w.pages, w.evict.size(), w.eager.size(), client.plaintext() ? 1 : 0);
    std::vector<uint8_t> out(std::max<size_t>(64, gfns.size()) * 4096);
    if (const char* bench = std::getenv("PAGE_CLIENT_BENCH")) {
      long n = std::atol(bench);
      auto cpu = [] {
        struct rusage r;
        getrusage(RUSAGE_SELF, &r);
        return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
      };
      double cpu0 = cpu();
      auto t0 = std::chrono::steady_clock::now();
      for (long i = 0; i < n; i++) client.Get(gfns.data(), gfns.size(), out.data());
      double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      std::printf("bench gets=%ld batch=%zu us_per_get=%.2f cpu_us_per_get=%.2f\n", n, gfns.size(), us / double(n), (cpu() - cpu0) / double(n));
      client.Bye();
      return 0;
    }
    for (size_t at = 0; at < gfns.size(); at += 64) {
      size_t n = std::min<size_t>(64, gfns.size() - at);
      client.Get(&gfns[at], n, out.data());
      for (size_t i = 0; i < n; i++) {
        uint8_t digest[32];
        unsigned len = 0;
        EVP_Digest(out.data() + i * 4096, 4096, digest, &len, EVP_sha256(), nullptr);
        std::printf("page %llu %s\n", (unsigned long long)gfns[at + i], Hex(digest, 32).c_str());
      }
    }
    client.Bye();
    std::printf("bye\n");
  } catch (const snowflock::XenError& e) {
    std::printf("error errno=%d %s\n", e.err(), e.what());
    return 2;
  }
  return 0;
}
