// Helpers for tests that run the project's programs as real processes.
#ifndef TESTS_SUBPROCESS_H_
#define TESTS_SUBPROCESS_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace ssl::testing {

/// Path of a data dependency of the running test (e.g. "tools/main_moco").
std::string Runfile(const std::string& path);

/// The whole file, or "" when it cannot be read.
std::string ReadFile(const std::string& path);

/// Forks and execs `args` (args[0] is the program) with `env` added to the
/// environment; its stderr goes to `log`. Returns the child's pid.
pid_t StartProcess(std::vector<std::string> args, const std::string& log,
                   const std::vector<std::pair<std::string, std::string>>& env = {});

/// waitpid's raw status of `pid`.
int WaitStatus(pid_t pid);

/// The exit code of `pid`, or 128 + the signal that ended it.
int ExitCode(pid_t pid);

/// ExitCode, but a process still running after `seconds` is SIGKILLed first and -1 is
/// returned: a test of a process that must stop on its own fails instead of hanging.
int ExitCodeWithin(pid_t pid, double seconds);

/// Waits (up to 120 s) until `path` exists, lets the process run `settle_ms` more, then
/// SIGKILLs `pid` and reaps it: true when the signal ended it (false when it had
/// finished first or could not be signalled), the kill-and-resume tests' set-up.
bool KillWhenFileAppears(pid_t pid, const std::string& path, int settle_ms = 100);

/// The 4-class, 160-image, 32 px synthetic ImageFolder the CLI tests train on (10
/// iterations of 16 per epoch); returns its root.
std::string MakeTinyImageFolder(const std::string& name);

}  // namespace ssl::testing

#endif  // TESTS_SUBPROCESS_H_
