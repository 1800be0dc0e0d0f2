// glog's LOG and CHECK, whichever LibTorch the build uses. Include this instead of
// <glog/logging.h>.
//
// A LibTorch built with glog (Debian's) routes c10's logging through glog. One built
// without it (the PyTorch wheels that the GPU build uses) defines LOG, CHECK, VLOG and a
// three-argument CHECK_OP of its own in <c10/util/Logging.h>: where that header came
// after glog's, LOG(INFO) went to c10's logger, which drops INFO, and glog's CHECK_EQ
// expanded into c10's CHECK_OP. Here c10's header is read first and its definitions
// are replaced by glog's, so the project's LOG and CHECK mean glog's in every file.
#ifndef SSL_CORE_LOGGING_H_
#define SSL_CORE_LOGGING_H_

#include <c10/util/Logging.h>

#ifndef C10_USE_GLOG
#undef LOG
#undef LOG_IF
#undef VLOG
#undef VLOG_IF
#undef VLOG_IS_ON
#undef DLOG
#undef CHECK
#undef DCHECK
#undef CHECK_OP
#endif

#include <glog/logging.h>

#endif  // SSL_CORE_LOGGING_H_
