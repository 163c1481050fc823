// Status and Result<T>: how every module reports failure (no exceptions cross a
// module boundary). Plain values; safe to pass between threads.
#pragma once

#include <fmt/format.h>

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bsr {

// Broad classes of failure; the message carries the specifics (what, where, why).
enum class Errc {
  kOk = 0,
  kInvalidArgument,  // bad input from a user or a caller
  kNotFound,         // named thing does not exist
  kExists,           // thing already exists
  kState,            // refused in the current state
  kIo,               // backing device or socket I/O failed
  kCorrupt,          // on-disk data failed validation (magic, crc, version)
  kProtocol,         // peer or client sent something malformed
  kUnsupported,      // valid request we do not implement
  kTimeout,
  kPermission,
  kBusy,
  kInternal,
};

std::string_view ErrcName(Errc code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Errc::kOk; }
  Errc code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes the message with where it happened: "attach r0/0: <message>".
  Status WithContext(std::string_view context) const {
    if (ok()) return *this;
    return Status(code_, fmt::format("{}: {}", context, message_));
  }

  std::string ToString() const;

 private:
  Errc code_ = Errc::kOk;
  std::string message_;
};

template <typename... Args>
Status Error(Errc code, fmt::format_string<Args...> format, Args&&... args) {
  return Status(code, fmt::format(format, std::forward<Args>(args)...));
}

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(data_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(data_);
  }

  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace bsr

#define BSR_CONCAT_INNER(a, b) a##b
#define BSR_CONCAT(a, b) BSR_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` (a Status) is not ok.
#define BSR_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::bsr::Status bsr_status_ = (expr);        \
    if (!bsr_status_.ok()) return bsr_status_; \
  } while (0)

// `BSR_ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a Result or returns its Status.
#define BSR_ASSIGN_OR_RETURN(lhs, expr) \
  BSR_ASSIGN_OR_RETURN_IMPL(BSR_CONCAT(bsr_result_, __LINE__), lhs, expr)
#define BSR_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
