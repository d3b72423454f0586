// CHECK: always-on invariant assertions. A failed CHECK prints the condition,
// location and streamed message, then aborts. For broken invariants only; errors
// caused by input (files, flags, requests) are Status values instead.
#pragma once

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace moerack::internal {

class CheckFailure {
 public:
  CheckFailure(const char* cond, const char* file, int line) {
    stream_ << file << ":" << line << ": CHECK failed: " << cond << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `CHECK(c) << msg` be an expression of type void in both branches.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace moerack::internal

#define CHECK(cond)                         \
  (cond) ? (void)0                          \
         : ::moerack::internal::Voidify() & \
               ::moerack::internal::CheckFailure(#cond, __FILE__, __LINE__).stream()
#define CHECK_EQ(a, b) CHECK((a) == (b)) << #a " = " << (a) << ", " #b " = " << (b) << " "
#define CHECK_LE(a, b) CHECK((a) <= (b)) << #a " = " << (a) << ", " #b " = " << (b) << " "
#define CHECK_LT(a, b) CHECK((a) < (b)) << #a " = " << (a) << ", " #b " = " << (b) << " "
#define CHECK_GE(a, b) CHECK((a) >= (b)) << #a " = " << (a) << ", " #b " = " << (b) << " "
#define CHECK_GT(a, b) CHECK((a) > (b)) << #a " = " << (a) << ", " #b " = " << (b) << " "
