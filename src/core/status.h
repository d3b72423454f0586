// Status and StatusOr: the error channel for recoverable failures at the edges
// (files, configs, flags, requests). Broken invariants inside use CHECK (check.h).
// A message names what is wrong: the file, tensor, field or flag.
// Thread-safety: value types, no shared state.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "core/check.h"

namespace moerack {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message), true); }

  bool ok() const { return !error_; }
  const std::string& message() const { return message_; }

  // Prefixes the message with context, e.g. the file being read.
  Status WithContext(const std::string& context) const {
    return ok() ? *this : Error(context + ": " + message_);
  }

 private:
  Status(std::string message, bool error) : message_(std::move(message)), error_(error) {}
  std::string message_;
  bool error_ = false;
};

inline Status Error(std::string message) { return Status::Error(std::move(message)); }

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT
    CHECK(!status_.ok()) << "StatusOr constructed from an OK status";
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & {
    CHECK(ok()) << status_.message();
    return *value_;
  }
  const T& value() const& {
    CHECK(ok()) << status_.message();
    return *value_;
  }
  T&& value() && {
    CHECK(ok()) << status_.message();
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace moerack

// Returns early from a function returning Status or StatusOr when `expr` fails.
#define MR_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::moerack::Status _mr_status = (expr);   \
    if (!_mr_status.ok()) return _mr_status; \
  } while (0)

#define MR_CONCAT_INNER(a, b) a##b
#define MR_CONCAT(a, b) MR_CONCAT_INNER(a, b)
// `MR_ASSIGN_OR_RETURN(auto x, Foo());` binds the value or returns the error.
#define MR_ASSIGN_OR_RETURN(lhs, expr) \
  MR_ASSIGN_OR_RETURN_IMPL(MR_CONCAT(_mr_or_, __LINE__), lhs, expr)
#define MR_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
