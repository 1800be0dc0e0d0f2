#include "ssl/core/allocator.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

extern char** environ;

namespace ssl::core {

bool KeepFreedMemoryForReuse() {
#if defined(__GLIBC__)
  for (char** variable = environ; variable != nullptr && *variable != nullptr; ++variable) {
    if (std::strncmp(*variable, "MALLOC_", 7) == 0 ||
        std::strncmp(*variable, "GLIBC_TUNABLES=", 15) == 0) {
      return false;  // the user's choice stands
    }
  }
  // 32 MiB is the largest mmap threshold glibc accepts on 64-bit systems.
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 &&
         mallopt(M_TOP_PAD, 64 << 20) == 1;
#else
  return false;
#endif
}

}  // namespace ssl::core
