"""The GPU machine's CMake build takes its source lists from the Bazel targets.

An aspect walks the cc_* targets behind the programs the GPU machine builds and records,
for each of the project's libraries, binaries and tests, its sources and the project
libraries and system libraries it needs (with the system libraries' link options as the
BUILD files in third_party/ give them). `cmake_sources` writes that as a CMake file of
ssl_library / ssl_program calls (defined in tools/gpu/CMakeLists.txt), and a test checks
that the checked-in tools/gpu/sources.cmake equals it, so the two builds cannot drift.
"""

_CmakeInfo = provider(fields = ["entries"])

_CC_KINDS = ["cc_library", "cc_binary", "cc_test"]

def _files(attr_value):
    return [f for target in attr_value for f in target.files.to_list()]

def _cmake_aspect_impl(target, ctx):
    deps = getattr(ctx.rule.attr, "deps", [])
    transitive = [d[_CmakeInfo].entries for d in deps if _CmakeInfo in d]
    if ctx.rule.kind not in _CC_KINDS:
        return [_CmakeInfo(entries = depset(transitive = transitive))]
    label = target.label
    external = label.workspace_name != ""
    srcs = [] if external else [
        f.path
        for f in _files(getattr(ctx.rule.attr, "srcs", []))
        if f.extension in ["cc", "cpp", "c"]
    ]
    entry = struct(
        label = str(label),
        kind = ctx.rule.kind,
        external = external,
        # Tuples: depset elements must be immutable.
        srcs = tuple(srcs),
        deps = tuple([str(d.label) for d in deps]),
        linkopts = tuple(getattr(ctx.rule.attr, "linkopts", []) if external else []),
        # Static archives of a system library, relative to its repository (/usr).
        archives = tuple([
            f.path.split("/", 2)[2]
            for f in _files(getattr(ctx.rule.attr, "srcs", []))
            if f.extension == "a"
        ] if external else []),
        defines = tuple(getattr(ctx.rule.attr, "defines", []) if external else []),
        alwayslink = getattr(ctx.rule.attr, "alwayslink", False),
        # at::parallel_for is OpenMP compiled into the caller, so the flag must follow.
        openmp = not external and "-fopenmp" in getattr(ctx.rule.attr, "copts", []),
    )
    return [_CmakeInfo(entries = depset([entry], transitive = transitive))]

cmake_aspect = aspect(
    implementation = _cmake_aspect_impl,
    attr_aspects = ["deps"],
)

def _cmake_name(label):
    # //ssl/core:device -> ssl_core_device; @system_absl//:absl -> system_absl
    text = label.replace("@", "").replace("//:", "_").replace("//", "").replace("/", "_")
    return text.replace(":", "_").replace("-", "_").replace(".", "_")

def _closure(label, by_label):
    seen = {}
    stack = [label]
    for _ in range(100000):
        if not stack:
            break
        current = stack.pop()
        if current in seen or current not in by_label:
            continue
        seen[current] = True
        stack.extend(list(by_label[current].deps))
    return sorted(seen.keys())

def _cmake_sources_impl(ctx):
    by_label = {}
    for target in ctx.attr.targets:
        for entry in target[_CmakeInfo].entries.to_list():
            by_label[entry.label] = entry
    lines = [
        "# Generated from the Bazel targets by //tools/gpu:cmake_sources (tools/gpu/update_sources.sh).",
        "# Do not edit: //tools/gpu:cmake_sources_test fails when this file and the BUILD files differ.",
        "",
    ]
    for label in sorted(by_label.keys()):
        entry = by_label[label]
        if entry.external:
            lines.append("ssl_system_library({} ARCHIVES {} LINKOPTS {} DEFINES {})".format(
                _cmake_name(label),
                " ".join(entry.archives),
                " ".join(entry.linkopts),
                " ".join(entry.defines),
            ))
    lines.append("")
    for label in sorted(by_label.keys()):
        entry = by_label[label]
        if entry.external or entry.kind != "cc_library" or not entry.srcs:
            continue
        lines.append("ssl_library({}{} SRCS {})".format(
            _cmake_name(label),
            " OPENMP" if entry.openmp else "",
            " ".join(sorted(list(entry.srcs))),
        ))
    lines.append("")
    for target in ctx.attr.targets:
        label = str(target.label)
        entry = by_label[label]
        closure = [l for l in _closure(label, by_label) if l != label]
        project = [
            _cmake_name(l)
            for l in closure
            if not by_label[l].external and by_label[l].srcs
        ]
        system = [_cmake_name(l) for l in closure if by_label[l].external]
        openmp = entry.openmp or [l for l in closure if by_label[l].openmp]
        lines.append("ssl_program({} {}{} PATH {} SRCS {} LIBRARIES {} SYSTEM {})".format(
            _cmake_name(label),
            "TEST" if entry.kind == "cc_test" else "BINARY",
            " OPENMP" if openmp else "",
            target.label.package + "/" + target.label.name,
            " ".join(sorted(list(entry.srcs))),
            " ".join(project),
            " ".join(system),
        ))
    out = ctx.actions.declare_file(ctx.label.name + ".cmake")
    ctx.actions.write(out, "\n".join(lines) + "\n")
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

cmake_sources = rule(
    implementation = _cmake_sources_impl,
    attrs = {
        "targets": attr.label_list(aspects = [cmake_aspect]),
    },
)
