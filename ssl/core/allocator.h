// The C library's allocator, tuned for training loops.
#ifndef SSL_CORE_ALLOCATOR_H_
#define SSL_CORE_ALLOCATOR_H_

namespace ssl::core {

/// Makes glibc keep freed memory for reuse instead of returning it to the system: blocks
/// up to 32 MiB come from the heap rather than their own mmap, and the heap is trimmed
/// only above 1 GiB of free space at its top. A training step allocates and frees the
/// same tens of megabytes of activations every iteration; by default each large block is
/// mapped, zero-filled page by page on first touch and unmapped again, which measured 5 to
/// 13% of a CPU MoCo v3 step. Peak memory is unchanged (what is kept is reused by the next
/// step). Does nothing where a MALLOC_*_ environment variable or GLIBC_TUNABLES already
/// chose, or on other C libraries. Returns whether it changed the settings.
bool KeepFreedMemoryForReuse();

}  // namespace ssl::core

#endif  // SSL_CORE_ALLOCATOR_H_
