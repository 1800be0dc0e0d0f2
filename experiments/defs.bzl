"""Experiment entries: one declared target per paper-table entry.

An entry is a dict (kept in a per-method entries.bzl so that both the method's
experiments/<method>/BUILD and results/BUILD can read it) passed to `ssl_experiment`:

    ssl_experiment(
        name = "r50_100ep",
        method = "mocov3",
        table = "MoCo v3, ResNet-50 linear classification (ImageNet)",
        dataset = "imagenet",            # what --data must point at
        flags = ["--epochs=100", "--lr=0.6"],   # deltas from the program's defaults
        reference = {"linear_top1": 68.9},      # published (or first recorded) values
        tolerance = {"linear_top1": 0.5},       # absolute, same units
        source = "published",            # or "recorded": our own first measurement
    )

creates `bazel run //experiments/<method>:<name> -- [--data=...] [--record]`, which
pretrains, evaluates (kNN, linear, random-init baseline) and with --record writes
results/<method>/<name>.json. `ci_test = True` also creates `<name>_regression_test`,
which runs the entry inside `bazel test` (on ../shared/datasets/<dataset> for real
data; reported SKIPPED where that is absent, a failure where SSL_REQUIRE_SHARED_DATA is
set: see shared_datasets.bzl) and checks its metrics against the reference.
`description` says what the entry shows and how it deviates from the paper's recipe.
`other_references` ({"SwAV repo": 72.1}) lists further published values the report
shows beside the reference; `command_extra` (" --config_dir=<VISSL checkout>/configs")
is appended to the entry's command; `comparison` names a group of entries (across
methods) that the report puts side by side, e.g. equal-time-budget runs. `minimum`
({"gain.knn_top1_k20": 8.0}) gives floors the recorded run and the CI test must reach, as
`metric >= floor`: the gain over random init and the loss below its trivial value that
show a method learns, not only that it repeats a recorded run.
"""

load(
    "@shared_datasets//:defs.bzl",
    SHARED_DATASETS_PRESENT = "PRESENT",
    SHARED_DATASETS_REQUIRED = "REQUIRED",
)

_DATASETS = ["imagenet", "imagenette", "cifar10", "synthetic"]
_REQUIRED = ["name", "method", "table", "dataset", "flags", "reference", "tolerance", "source"]
_OPTIONAL = ["ci_test", "description", "other_references", "command_extra", "comparison", "minimum"]

def _validate(entry):
    for key in _REQUIRED:
        if key not in entry:
            fail("experiment entry %s lacks %s" % (entry.get("name", "?"), key))
    name = entry["name"]
    for key in entry:
        if key not in _REQUIRED and key not in _OPTIONAL:
            fail("entry %s: unknown field %s" % (name, key))
    if entry["dataset"] not in _DATASETS:
        fail("entry %s: dataset must be one of %s, got %s" % (name, _DATASETS, entry["dataset"]))
    if not entry["reference"]:
        fail("entry %s: needs at least one reference metric" % name)
    for metric in entry["reference"]:
        if metric not in entry["tolerance"]:
            fail("entry %s: reference metric %s has no tolerance" % (name, metric))
    for metric in entry.get("minimum", {}):
        if metric in entry["reference"]:
            fail("entry %s: %s is both a reference and a minimum" % (name, metric))
    for flag in entry["flags"]:
        if not flag.startswith("--"):
            fail("entry %s: flag %s must start with --" % (name, flag))
    if entry["source"] not in ["published", "recorded"]:
        fail("entry %s: source must be published or recorded" % name)

def _entry_flags(entry):
    flags = ["--name=" + entry["name"], "--method=" + entry["method"]]
    if entry["dataset"] == "synthetic":
        flags.append("--synthetic")
    return flags + entry["flags"]

def entry_command(entry):
    """The one command that reproduces an entry's recorded result."""
    data = "" if entry["dataset"] == "synthetic" else " --data=<%s root>" % entry["dataset"]
    return "bazel run //experiments/%s:%s --%s%s --record" % (
        entry["method"],
        entry["name"],
        data,
        entry.get("command_extra", ""),
    )

def _checks(entry):
    checks = ["--check=%s:%s:%s" % (m, v, entry["tolerance"][m]) for m, v in entry["reference"].items()]
    return checks + ["--check=%s:>=:%s" % (m, v) for m, v in entry.get("minimum", {}).items()]

def ssl_experiment(name, method, table, dataset, flags, reference, tolerance, source,
                   ci_test = False, description = "", other_references = {}, command_extra = "",
                   comparison = "", minimum = {}):
    """Declares one experiment entry; see the module docstring."""
    entry = dict(name = name, method = method, table = table, dataset = dataset, flags = flags,
                 reference = reference, tolerance = tolerance, source = source,
                 command_extra = command_extra, minimum = minimum)
    if ci_test and dataset == "imagenet":
        fail("entry %s: ImageNet entries cannot be CI tests" % name)
    _validate(entry)
    command = entry_command(entry)
    native.sh_binary(
        name = name,
        srcs = ["//experiments:launch.sh"],
        data = ["//tools:run_experiment"],
        args = _entry_flags(entry) + ["--command='%s'" % command],
        tags = ["ssl_experiment", "method_" + method, "dataset_" + dataset],
    )
    if ci_test:
        checks = _checks(entry)

        # Real-data entries read ../shared/datasets/<dataset>: reported SKIPPED where that
        # is absent, unless SSL_REQUIRE_SHARED_DATA makes the absence a failure.
        shared = "-" if dataset == "synthetic" else dataset
        compatible = shared == "-" or shared in SHARED_DATASETS_PRESENT or SHARED_DATASETS_REQUIRED
        native.sh_test(
            name = name + "_regression_test",
            srcs = ["//experiments:regression_test.sh"],
            data = ["//:WORKSPACE", "//tools:run_experiment", "//experiments:check_result"],
            args = [shared] + _entry_flags(entry) + ["--"] + checks,
            size = "large",
            # Alone on the machine: its 2 compute threads would otherwise fight other tests.
            tags = ["exclusive", "ssl_regression"],
            target_compatible_with = [] if compatible else ["//experiments:has_shared_datasets"],
        )

def ssl_result_tests(entries, recorded):
    """One test per entry that has a recorded results/<method>/<name>.json.

    `recorded` is the glob of results files of the calling (results/) package.
    """
    for entry in entries:
        _validate(entry)
        path = "%s/%s.json" % (entry["method"], entry["name"])
        if path not in recorded:
            continue
        checks = _checks(entry)
        native.sh_test(
            name = "%s_%s_test" % (entry["method"], entry["name"]),
            srcs = ["//experiments:recorded_test.sh"],
            data = [path, "//experiments:check_result"],
            args = ["$(location %s)" % path] + checks,
            size = "small",
        )

def _json_scalar(value):
    if type(value) == "string":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if type(value) == "bool":
        return "true" if value else "false"
    return str(value)

def _json_value(value):
    # Entries nest one level (dicts of numbers, lists of strings); Starlark has no
    # recursion, and Bazel 4's struct.to_json rejects floats.
    if type(value) == "dict":
        return "{" + ",".join([_json_scalar(k) + ":" + _json_scalar(v) for k, v in value.items()]) + "}"
    if type(value) == "list":
        return "[" + ",".join([_json_scalar(v) for v in value]) + "]"
    return _json_scalar(value)

def entries_json(entries):
    """The entries as JSON, with their commands, for the results report."""
    out = []
    for entry in entries:
        _validate(entry)
        fields = dict(entry)
        fields["command"] = entry_command(entry)
        out.append("{" + ",".join([_json_scalar(k) + ":" + _json_value(fields[k]) for k in sorted(fields.keys())]) + "}")
    return "[" + ",".join(out) + "]"

def ssl_experiments(entries):
    """Declares every entry of a method's entries.bzl, plus a test_suite of its CI tests."""
    for entry in entries:
        ssl_experiment(**entry)
    native.test_suite(
        name = "regression_tests",
        tags = ["ssl_regression"],
    )
