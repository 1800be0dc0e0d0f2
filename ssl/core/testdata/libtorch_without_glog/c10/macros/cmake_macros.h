// Test-only stand-in for the build configuration of a LibTorch built without glog (the
// PyTorch wheels): Debian's configuration with C10_USE_GLOG taken away, so that
// <c10/util/Logging.h> defines c10's own LOG and CHECK macros as the wheels' does.
#ifndef SSL_CORE_TESTDATA_LIBTORCH_WITHOUT_GLOG_CMAKE_MACROS_H_
#define SSL_CORE_TESTDATA_LIBTORCH_WITHOUT_GLOG_CMAKE_MACROS_H_
#include_next <c10/macros/cmake_macros.h>
#undef C10_USE_GLOG
#endif  // SSL_CORE_TESTDATA_LIBTORCH_WITHOUT_GLOG_CMAKE_MACROS_H_
