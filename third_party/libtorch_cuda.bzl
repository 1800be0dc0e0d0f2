"""Repository rule for a CUDA-enabled LibTorch, the one alternative to Debian's CPU build.

Selected only by `--define=libtorch=cuda` (see //third_party:torch). The LibTorch is taken
from $LIBTORCH_HOME (a LibTorch zip, or a PyTorch package's `torch/` directory, both of
which hold include/ and lib/). Without it the repository still loads, but building
anything against it fails with a message saying what to set.
"""

def _libtorch_cuda_repository_impl(ctx):
    home = ctx.os.environ.get("LIBTORCH_HOME", "")
    if not home:
        ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])

genrule(
    name = "missing_libtorch_home",
    outs = ["missing_libtorch_home.h"],
    cmd = "echo '--define=libtorch=cuda needs LIBTORCH_HOME set to a CUDA LibTorch (with include/ and lib/)' >&2; exit 1",
)

cc_library(
    name = "torch",
    hdrs = [":missing_libtorch_home"],
)

cc_library(
    name = "torch_distributed",
    deps = [":torch"],
)
""")
        return
    ctx.symlink(home + "/include", "include")
    ctx.symlink(home + "/lib", "lib")
    ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "torch",
    hdrs = glob(["include/**/*.h", "include/**/*.hpp", "include/**/*.cuh"]),
    includes = ["include", "include/torch/csrc/api/include"],
    defines = ["SSL_WITH_CUDA=1"],
    linkopts = [
        "-L{lib}",
        "-Wl,-rpath,{lib}",
        "-Wl,--no-as-needed",
        "-ltorch",
        "-ltorch_cuda",
        "-ltorch_cpu",
        "-lc10_cuda",
        "-lc10",
        "-Wl,--as-needed",
    ],
)

cc_library(
    name = "torch_distributed",
    defines = ["USE_C10D_GLOO", "USE_C10D_NCCL"],
    deps = [":torch"],
)
""".format(lib = home + "/lib"))

libtorch_cuda_repository = repository_rule(
    implementation = _libtorch_cuda_repository_impl,
    environ = ["LIBTORCH_HOME"],
    local = True,
)
