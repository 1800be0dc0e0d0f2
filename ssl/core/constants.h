// Numeric constants, defined once for the whole project.
#ifndef SSL_CORE_CONSTANTS_H_
#define SSL_CORE_CONSTANTS_H_

namespace ssl {

/// pi to double precision (std::numbers::pi is C++20; M_PI is a POSIX extension).
inline constexpr double kPi = 3.14159265358979323846;

}  // namespace ssl

#endif  // SSL_CORE_CONSTANTS_H_
