// A TAP producer small enough to read at a glance, for native unit tests that run without
// Node: each test prints "ok N - name" or "not ok N - name # reason", then "1..N".
#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace tap {

struct CheckFailed {
  std::string why;
};

struct Test {
  const char* name;
  std::function<void()> body;
};

template <typename T>
std::string Show(const T& value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

template <typename T>
std::string Show(const std::vector<T>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); i++) out += (i ? ", " : "") + Show(values[i]);
  return out + "]";
}

template <typename A, typename B>
void CheckEq(const A& actual, const B& expected, const char* expr, const char* file, int line) {
  if (actual == expected) return;
  throw CheckFailed{std::string(file) + ":" + std::to_string(line) + ": " + expr + " is " + Show(actual) + ", expected " + Show(expected)};
}

// Runs every test; before() resets shared fakes, after() returns what a test left behind
// (leaks, misuse), which fails it too. Returns the process exit code.
inline int Run(const std::vector<Test>& tests, const std::function<void()>& before,
               const std::function<std::vector<std::string>()>& after) {
  int failed = 0;
  for (size_t i = 0; i < tests.size(); i++) {
    std::string why;
    before();
    try {
      tests[i].body();
    } catch (const CheckFailed& f) {
      why = f.why;
    } catch (const std::exception& e) {
      why = std::string("threw: ") + e.what();
    } catch (...) {
      why = "threw a non-exception";
    }
    for (const std::string& problem : after()) why += (why.empty() ? "" : "; ") + problem;
    for (char& c : why)
      if (c == '\n') c = ' ';  // one TAP line per test
    if (why.empty()) {
      std::printf("ok %zu - %s\n", i + 1, tests[i].name);
    } else {
      failed++;
      std::printf("not ok %zu - %s # %s\n", i + 1, tests[i].name, why.c_str());
    }
  }
  std::printf("1..%zu\n", tests.size());
  return failed ? 1 : 0;
}

}  // namespace tap

#define CHECK(cond) \
  do { \
    if (!(cond)) throw ::tap::CheckFailed{std::string(__FILE__ ":") + std::to_string(__LINE__) + ": " #cond}; \
  } while (0)
#define CHECK_EQ(actual, expected) ::tap::CheckEq((actual), (expected), #actual, __FILE__, __LINE__)
