// Early-return helpers for absl::Status / absl::StatusOr (Debian's absl 20220623 has
// no public equivalents).
#ifndef SSL_CORE_STATUS_MACROS_H_
#define SSL_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SSL_STATUS_CONCAT_INNER_(a, b) a##b
#define SSL_STATUS_CONCAT_(a, b) SSL_STATUS_CONCAT_INNER_(a, b)

/// Returns the status from the enclosing function if `expr` is not OK.
#define SSL_RETURN_IF_ERROR(expr)              \
  do {                                         \
    const ::absl::Status ssl_status_ = (expr); \
    if (!ssl_status_.ok()) return ssl_status_; \
  } while (false)

/// `SSL_ASSIGN_OR_RETURN(auto value, MaybeValue())`: unwraps a StatusOr or returns
/// its error from the enclosing function.
#define SSL_ASSIGN_OR_RETURN(lhs, expr) \
  SSL_ASSIGN_OR_RETURN_IMPL_(SSL_STATUS_CONCAT_(ssl_statusor_, __LINE__), lhs, expr)

#define SSL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(statusor).value()

#endif  // SSL_CORE_STATUS_MACROS_H_
