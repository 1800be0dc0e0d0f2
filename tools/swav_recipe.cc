#include "tools/swav_recipe.h"

#include <cmath>
#include <numeric>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ssl/core/status_macros.h"

namespace ssl::tools {
namespace {

// Checks that a mapping holds only `known` keys; `where` names it in errors.
absl::Status OnlyKeys(const YAML::Node& node, const std::set<std::string>& known,
                      const std::string& where) {
  for (const auto& item : node) {
    const std::string key = item.first.as<std::string>();
    if (!known.count(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".", key,
                       " is not implemented by this program; known: ", absl::StrJoin(known, ", ")));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> ScalarDouble(const YAML::Node& node, const std::string& where) {
  double value = 0;
  if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &value)) {
    return absl::InvalidArgumentError(absl::StrCat(where, " must be a number"));
  }
  return value;
}

absl::StatusOr<std::vector<double>> Numbers(const YAML::Node& node, const std::string& where) {
  if (!node.IsSequence()) return absl::InvalidArgumentError(where + " must be a list of numbers");
  std::vector<double> values;
  for (const YAML::Node& item : node) {
    SSL_ASSIGN_OR_RETURN(double value, ScalarDouble(item, where));
    values.push_back(value);
  }
  return values;
}

// DATA.TRAIN.TRANSFORMS: SwAV's multi-crop pipeline in VISSL's vocabulary.
absl::Status ReadTransforms(const YAML::Node& transforms, data::MultiCropOptions* crops) {
  const std::string where = "config.DATA.TRAIN.TRANSFORMS";
  if (!transforms.IsSequence() || transforms.size() == 0) {
    return absl::InvalidArgumentError(where +
                                      " must list the transforms, starting with ImgPilToMultiCrop");
  }
  crops->flip_probability = 0;
  crops->jitter_probability = 0;
  crops->grayscale_probability = 0;
  crops->blur_probability = 0;
  crops->mean = {0, 0, 0};
  crops->std = {1, 1, 1};
  int index = 0;
  bool seen_multicrop = false, seen_blur = false;
  for (const YAML::Node& transform : transforms) {
    const std::string at = absl::StrCat(where, "[", index++, "]");
    if (!transform.IsMap() || !transform["name"]) {
      return absl::InvalidArgumentError(at + " must be a mapping with a name");
    }
    const std::string name = transform["name"].as<std::string>();
    if (index > 1 && !seen_multicrop) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ": ImgPilToMultiCrop must come first (", name, " is before it)"));
    }
    if (name == "ImgPilToMultiCrop") {
      SSL_RETURN_IF_ERROR(OnlyKeys(
          transform, {"name", "total_num_crops", "num_crops", "size_crops", "crop_scales"}, at));
      SSL_ASSIGN_OR_RETURN(std::vector<double> counts,
                           Numbers(transform["num_crops"], at + ".num_crops"));
      SSL_ASSIGN_OR_RETURN(std::vector<double> sizes,
                           Numbers(transform["size_crops"], at + ".size_crops"));
      const YAML::Node scales = transform["crop_scales"];
      if (!scales.IsSequence() || scales.size() != counts.size() || sizes.size() != counts.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ": num_crops, size_crops and crop_scales must have the same length"));
      }
      crops->counts.clear();
      crops->sizes.clear();
      crops->scale_mins.clear();
      crops->scale_maxs.clear();
      for (size_t g = 0; g < counts.size(); ++g) {
        SSL_ASSIGN_OR_RETURN(std::vector<double> range,
                             Numbers(scales[g], absl::StrCat(at, ".crop_scales[", g, "]")));
        if (range.size() != 2) {
          return absl::InvalidArgumentError(
              absl::StrCat(at, ".crop_scales[", g, "] must be [min, max]"));
        }
        crops->counts.push_back(static_cast<int>(counts[g]));
        crops->sizes.push_back(static_cast<int>(sizes[g]));
        crops->scale_mins.push_back(range[0]);
        crops->scale_maxs.push_back(range[1]);
      }
      const int total = std::accumulate(crops->counts.begin(), crops->counts.end(), 0);
      if (transform["total_num_crops"]) {
        SSL_ASSIGN_OR_RETURN(double declared,
                             ScalarDouble(transform["total_num_crops"], at + ".total_num_crops"));
        if (static_cast<int>(declared) != total) {
          return absl::InvalidArgumentError(
              absl::StrCat(at, ": total_num_crops is ", declared, " but num_crops sum to ", total));
        }
      }
      seen_multicrop = true;
    } else if (name == "RandomHorizontalFlip") {
      SSL_RETURN_IF_ERROR(OnlyKeys(transform, {"name", "p"}, at));
      crops->flip_probability = 0.5;
      if (transform["p"]) {
        SSL_ASSIGN_OR_RETURN(crops->flip_probability, ScalarDouble(transform["p"], at + ".p"));
      }
    } else if (name == "ImgPilColorDistortion") {
      // VISSL's from_config reads only the strength: jitter (0.8, 0.8, 0.8, 0.2) x
      // strength applied with p 0.8, then grayscale with p 0.2.
      SSL_RETURN_IF_ERROR(OnlyKeys(transform, {"name", "strength"}, at));
      if (seen_blur) {
        return absl::InvalidArgumentError(
            at + ": colour distortion after the blur is not supported (SwAV blurs last)");
      }
      double strength = 1.0;
      if (transform["strength"]) {
        SSL_ASSIGN_OR_RETURN(strength, ScalarDouble(transform["strength"], at + ".strength"));
      }
      crops->jitter = data::ColorJitterStrength{
          static_cast<float>(0.8 * strength), static_cast<float>(0.8 * strength),
          static_cast<float>(0.8 * strength), static_cast<float>(0.2 * strength)};
      crops->jitter_probability = 0.8;
      crops->grayscale_probability = 0.2;
    } else if (name == "ImgPilGaussianBlur") {
      SSL_RETURN_IF_ERROR(OnlyKeys(transform, {"name", "p", "radius_min", "radius_max"}, at));
      crops->blur_probability = 0.5;
      crops->blur_sigma_min = 0.1;
      crops->blur_sigma_max = 2.0;
      if (transform["p"]) {
        SSL_ASSIGN_OR_RETURN(crops->blur_probability, ScalarDouble(transform["p"], at + ".p"));
      }
      if (transform["radius_min"]) {
        SSL_ASSIGN_OR_RETURN(crops->blur_sigma_min,
                             ScalarDouble(transform["radius_min"], at + ".radius_min"));
      }
      if (transform["radius_max"]) {
        SSL_ASSIGN_OR_RETURN(crops->blur_sigma_max,
                             ScalarDouble(transform["radius_max"], at + ".radius_max"));
      }
      seen_blur = true;
    } else if (name == "ToTensor") {
      SSL_RETURN_IF_ERROR(OnlyKeys(transform, {"name"}, at));
    } else if (name == "Normalize") {
      SSL_RETURN_IF_ERROR(OnlyKeys(transform, {"name", "mean", "std"}, at));
      SSL_ASSIGN_OR_RETURN(std::vector<double> mean, Numbers(transform["mean"], at + ".mean"));
      SSL_ASSIGN_OR_RETURN(std::vector<double> std, Numbers(transform["std"], at + ".std"));
      if (mean.size() != 3 || std.size() != 3) {
        return absl::InvalidArgumentError(at + ": mean and std need 3 values");
      }
      for (int c = 0; c < 3; ++c) {
        crops->mean[c] = static_cast<float>(mean[c]);
        crops->std[c] = static_cast<float>(std[c]);
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ": transform \"", name,
                       "\" is not implemented; SwAV's pipeline uses ImgPilToMultiCrop, "
                       "RandomHorizontalFlip, ImgPilColorDistortion, ImgPilGaussianBlur, ToTensor, "
                       "Normalize"));
    }
  }
  if (!seen_multicrop) return absl::InvalidArgumentError(where + " has no ImgPilToMultiCrop");
  return absl::OkStatus();
}

// One fvcore scheduler description (a mapping) -> ScheduleSpec.
absl::StatusOr<optim::ScheduleSpec> ReadScheduler(const YAML::Node& node, const std::string& at) {
  SSL_RETURN_IF_ERROR(
      OnlyKeys(node, {"name", "start_value", "end_value", "value", "values", "milestones"}, at));
  optim::ScheduleSpec spec;
  spec.name = node["name"] ? node["name"].as<std::string>() : "";
  if (node["start_value"]) {
    SSL_ASSIGN_OR_RETURN(spec.start_value, ScalarDouble(node["start_value"], at + ".start_value"));
  }
  if (node["end_value"]) {
    SSL_ASSIGN_OR_RETURN(spec.end_value, ScalarDouble(node["end_value"], at + ".end_value"));
  }
  if (node["value"]) {
    SSL_ASSIGN_OR_RETURN(spec.value, ScalarDouble(node["value"], at + ".value"));
  }
  if (node["values"]) {
    SSL_ASSIGN_OR_RETURN(spec.values, Numbers(node["values"], at + ".values"));
  }
  if (node["milestones"]) {
    SSL_ASSIGN_OR_RETURN(std::vector<double> milestones,
                         Numbers(node["milestones"], at + ".milestones"));
    for (double m : milestones) spec.milestones.push_back(static_cast<int>(m));
  }
  return spec;
}

double RoundTo(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::nearbyint(value * scale) / scale;
}

// hydra_config.get_scaled_lr_scheduler.
absl::Status ScaleSchedule(optim::ScheduleSpec& spec, double scaled_lr) {
  if (absl::StrContains(spec.name, "cosine")) {
    if (spec.start_value == 0) {
      return absl::InvalidArgumentError(
          "a cosine lr schedule with start_value 0 cannot be auto-scaled");
    }
    const double decay = spec.end_value / spec.start_value;
    spec.start_value = scaled_lr;
    spec.end_value = scaled_lr * decay;
  } else if (spec.name == "multistep") {
    const double gamma = spec.values.size() > 1 ? RoundTo(spec.values[1] / spec.values[0], 6) : 1;
    for (size_t i = 0; i < spec.values.size(); ++i) {
      spec.values[i] = RoundTo(scaled_lr * std::pow(gamma, i), 8);
    }
  } else if (spec.name == "linear") {
    spec.end_value = scaled_lr;
  } else if (spec.name == "constant") {
    spec.value = scaled_lr;
  } else if (spec.name == "composite") {
    for (optim::ScheduleSpec& child : spec.schedulers) {
      SSL_RETURN_IF_ERROR(ScaleSchedule(child, scaled_lr));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot auto-scale an lr schedule named \"", spec.name, "\""));
  }
  return absl::OkStatus();
}

// hydra_config.resolve_linear_schedule: a composite's linear warmup starts at base lr x
// (batch per node / base_lr_batch_size); on a single node a warmup that would not rise
// is dropped, and a composite left with one scheduler becomes that scheduler.
void ResolveLinearWarmup(optim::ScheduleSpec& spec, double start_value, int num_nodes) {
  int remove = -1;
  for (size_t i = 0; i < spec.schedulers.size(); ++i) {
    optim::ScheduleSpec& child = spec.schedulers[i];
    if (child.name != "linear") continue;
    child.start_value = start_value;
    if (num_nodes == 1 && start_value <= child.end_value) remove = static_cast<int>(i);
  }
  if (remove >= 0) spec.schedulers.erase(spec.schedulers.begin() + remove);
  if (spec.schedulers.size() == 1) {
    const std::string interval = spec.update_interval;
    spec = optim::ScheduleSpec(spec.schedulers[0]);
    spec.update_interval = interval;
  }
}

absl::StatusOr<optim::ScheduleSpec> ReadLrSchedule(VisslConfigReader& reader, int num_nodes,
                                                   int num_proc_per_node, int64_t batch_per_replica,
                                                   nlohmann::json& resolved) {
  const std::string base = "OPTIMIZER.param_schedulers.lr";
  optim::ScheduleSpec spec;
  SSL_ASSIGN_OR_RETURN(spec.name, reader.String(base + ".name", "multistep"));
  SSL_ASSIGN_OR_RETURN(spec.update_interval, reader.String(base + ".update_interval", "epoch"));
  SSL_ASSIGN_OR_RETURN(spec.values, reader.DoubleList(base + ".values", {0.1, 0.01, 0.001}));
  SSL_ASSIGN_OR_RETURN(std::vector<int64_t> milestones,
                       reader.IntList(base + ".milestones", {30, 60}));
  spec.milestones.assign(milestones.begin(), milestones.end());
  SSL_ASSIGN_OR_RETURN(spec.start_value, reader.Double(base + ".start_value", 0.1));
  SSL_ASSIGN_OR_RETURN(spec.end_value, reader.Double(base + ".end_value", 0.0));
  SSL_ASSIGN_OR_RETURN(spec.value, reader.Double(base + ".value", 0.1));
  SSL_ASSIGN_OR_RETURN(spec.lengths, reader.DoubleList(base + ".lengths", {}));
  SSL_ASSIGN_OR_RETURN(spec.interval_scaling, reader.StringList(base + ".interval_scaling", {}));
  const YAML::Node schedulers = reader.Raw(base + ".schedulers");
  if (schedulers && !schedulers.IsNull()) {
    if (!schedulers.IsSequence()) return WrongType(base + ".schedulers", "a list", schedulers);
    int index = 0;
    for (const YAML::Node& child : schedulers) {
      SSL_ASSIGN_OR_RETURN(
          optim::ScheduleSpec spec_child,
          ReadScheduler(child, absl::StrCat("config.", base, ".schedulers[", index++, "]")));
      spec_child.update_interval = spec.update_interval;
      spec.schedulers.push_back(spec_child);
    }
  }
  SSL_ASSIGN_OR_RETURN(bool auto_scale, reader.Bool(base + ".auto_lr_scaling.auto_scale", false));
  SSL_ASSIGN_OR_RETURN(double base_value, reader.Double(base + ".auto_lr_scaling.base_value", 0.1));
  SSL_ASSIGN_OR_RETURN(int64_t base_batch,
                       reader.Int(base + ".auto_lr_scaling.base_lr_batch_size", 256));
  SSL_ASSIGN_OR_RETURN(std::string scaling,
                       reader.String(base + ".auto_lr_scaling.scaling_type", "linear"));
  if (scaling != "linear" && scaling != "sqrt") {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.", base, ".auto_lr_scaling.scaling_type must be linear or sqrt, got \"", scaling,
        "\""));
  }
  if (auto_scale) {
    const int64_t global_batch = batch_per_replica * num_nodes * num_proc_per_node;
    double factor = static_cast<double>(global_batch) / base_batch;
    if (scaling == "sqrt") factor = std::sqrt(factor);
    const double scaled = base_value * factor;
    SSL_RETURN_IF_ERROR(ScaleSchedule(spec, scaled));
    if (spec.name == "composite") {
      const double start =
          base_value * static_cast<double>(batch_per_replica * num_proc_per_node) / base_batch;
      ResolveLinearWarmup(spec, start, num_nodes);
    }
    resolved["lr_auto_scaled_to"] = scaled;
  }
  if (absl::Status s = optim::ValidateSchedule(spec); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config.", base, ": ", s.message()));
  }
  return spec;
}

absl::StatusOr<std::string> ReadTrunk(VisslConfigReader& reader, methods::SwavOptions& swav) {
  SSL_ASSIGN_OR_RETURN(std::string trunk, reader.String("MODEL.TRUNK.NAME", "resnet"));
  SSL_RETURN_IF_ERROR(reader.Require("MODEL.INPUT_TYPE", "rgb", "RGB images"));
  // The other trunk family's section (VISSL's defaults carry both) has no effect.
  reader.Ignore(trunk == "resnet" ? "MODEL.TRUNK.REGNET" : "MODEL.TRUNK.RESNETS");
  if (trunk == "resnet") {
    const std::string r = "MODEL.TRUNK.RESNETS.";
    SSL_ASSIGN_OR_RETURN(int64_t depth, reader.Int(r + "DEPTH", 50));
    SSL_ASSIGN_OR_RETURN(double width, reader.Double(r + "WIDTH_MULTIPLIER", 1));
    SSL_ASSIGN_OR_RETURN(swav.zero_init_residual, reader.Bool(r + "ZERO_INIT_RESIDUAL", false));
    SSL_ASSIGN_OR_RETURN(swav.cifar_stem, reader.Bool(r + "CIFAR_STEM", false));
    SSL_RETURN_IF_ERROR(reader.Require(r + "NORM", "BatchNorm", "the trunk uses BatchNorm"));
    for (const auto& [key, value] : {std::pair<const char*, int64_t>{"GROUPS", 1},
                                     {"WIDTH_PER_GROUP", 64},
                                     {"LAYER4_STRIDE", 2}}) {
      SSL_ASSIGN_OR_RETURN(int64_t actual, reader.Int(r + key, value));
      if (actual != value) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.", r, key, " is ", actual, "; only ", value, " is implemented"));
      }
    }
    std::string arch = absl::StrCat("resnet", depth);
    if (width != 1) absl::StrAppend(&arch, "w", absl::StrFormat("%g", width));
    return arch;
  }
  if (trunk == "regnet") {
    const std::string r = "MODEL.TRUNK.REGNET.";
    if (reader.Has(r + "name")) {
      SSL_ASSIGN_OR_RETURN(std::string name, reader.String(r + "name", ""));
      return name;
    }
    SSL_ASSIGN_OR_RETURN(int64_t depth, reader.Int(r + "depth", 0));
    SSL_ASSIGN_OR_RETURN(double w_0, reader.Double(r + "w_0", 0));
    SSL_ASSIGN_OR_RETURN(double w_a, reader.Double(r + "w_a", 0));
    SSL_ASSIGN_OR_RETURN(double w_m, reader.Double(r + "w_m", 0));
    SSL_ASSIGN_OR_RETURN(int64_t group_width, reader.Int(r + "group_width", 0));
    SSL_ASSIGN_OR_RETURN(double bottleneck, reader.Double(r + "bottleneck_multiplier", 1.0));
    SSL_ASSIGN_OR_RETURN(double se_ratio, reader.Double(r + "se_ratio", 0.25));
    if (bottleneck != 1.0 || se_ratio != 0.25) {
      return absl::InvalidArgumentError(
          "config.MODEL.TRUNK.REGNET: only RegNetY with bottleneck_multiplier 1.0 and "
          "se_ratio 0.25 is implemented");
    }
    return absl::StrFormat("regnet_y_d%d_w%g_wa%g_wm%g_gw%d", depth, w_0, w_a, w_m, group_width);
  }
  return absl::InvalidArgumentError(absl::StrCat("config.MODEL.TRUNK.NAME is \"", trunk,
                                                 "\"; this program implements resnet and regnet"));
}

absl::Status ReadHead(VisslConfigReader& reader, methods::SwavOptions& swav) {
  const YAML::Node params = reader.Raw("MODEL.HEAD.PARAMS");
  const std::string at = "config.MODEL.HEAD.PARAMS";
  if (!params.IsSequence() || params.size() != 1 || !params[0].IsSequence() ||
      params[0].size() != 2 || !params[0][1].IsMap()) {
    return absl::InvalidArgumentError(
        at + " must hold one [\"swav_head\", {dims, use_bn, num_clusters}] entry");
  }
  const std::string name = params[0][0].as<std::string>();
  if (name != "swav_head") {
    return absl::InvalidArgumentError(
        absl::StrCat(at, " names head \"", name, "\"; SwAV uses swav_head"));
  }
  const YAML::Node head = params[0][1];
  SSL_RETURN_IF_ERROR(OnlyKeys(head,
                               {"dims", "use_bn", "num_clusters", "use_bias", "return_embeddings",
                                "skip_last_bn", "normalize_feats"},
                               at + "[0][1]"));
  SSL_ASSIGN_OR_RETURN(std::vector<double> dims, Numbers(head["dims"], at + "[0][1].dims"));
  SSL_ASSIGN_OR_RETURN(std::vector<double> clusters,
                       Numbers(head["num_clusters"], at + "[0][1].num_clusters"));
  auto flag = [&head](const char* key, bool fallback) {
    return head[key] ? head[key].as<bool>() : fallback;
  };
  if (!flag("return_embeddings", true) || !flag("skip_last_bn", true)) {
    return absl::InvalidArgumentError(
        at + ": return_embeddings and skip_last_bn must stay true for SwAV pretraining");
  }
  SSL_ASSIGN_OR_RETURN(double eps, reader.Double("MODEL.HEAD.BATCHNORM_EPS", 1e-5));
  SSL_ASSIGN_OR_RETURN(double momentum, reader.Double("MODEL.HEAD.BATCHNORM_MOMENTUM", 0.1));
  SSL_ASSIGN_OR_RETURN(double multiplier, reader.Double("MODEL.HEAD.PARAMS_MULTIPLIER", 1.0));
  if (multiplier != 1.0) {
    return absl::InvalidArgumentError("config.MODEL.HEAD.PARAMS_MULTIPLIER must be 1.0");
  }
  swav.head = nn::SwavHeadOptions()
                  .dims(std::vector<int64_t>(dims.begin(), dims.end()))
                  .num_clusters(std::vector<int64_t>(clusters.begin(), clusters.end()))
                  .use_bn(flag("use_bn", true))
                  .use_bias(flag("use_bias", true))
                  .normalize_feats(flag("normalize_feats", true))
                  .bn_eps(eps)
                  .bn_momentum(momentum);
  return absl::OkStatus();
}

absl::Status ReadFrozenParameters(VisslConfigReader& reader, methods::SwavOptions& swav) {
  const YAML::Node frozen = reader.Raw("MODEL.TEMP_FROZEN_PARAMS_ITER_MAP");
  if (!frozen || frozen.IsNull()) return absl::OkStatus();
  const std::string at = "config.MODEL.TEMP_FROZEN_PARAMS_ITER_MAP";
  if (!frozen.IsSequence()) return absl::InvalidArgumentError(at + " must be a list");
  std::set<int64_t> iterations;
  for (const YAML::Node& entry : frozen) {
    if (!entry.IsSequence() || entry.size() != 2) {
      return absl::InvalidArgumentError(at + " entries must be [parameter name, iterations]");
    }
    std::string name = entry[0].as<std::string>();
    if (absl::StartsWith(name, "module.")) name = name.substr(7);
    if (!absl::StartsWith(name, "heads.0.prototypes") || !absl::EndsWith(name, ".weight")) {
      return absl::InvalidArgumentError(absl::StrCat(
          at, " freezes \"", entry[0].as<std::string>(),
          "\"; only the prototypes (module.heads.0.prototypes<i>.weight) can be frozen"));
    }
    SSL_ASSIGN_OR_RETURN(double iters, ScalarDouble(entry[1], at + " iterations"));
    iterations.insert(static_cast<int64_t>(iters));
  }
  if (iterations.size() > 1) {
    return absl::InvalidArgumentError(at + " gives the prototype layers different iterations");
  }
  if (!iterations.empty()) swav.prototypes_frozen_iters = *iterations.begin();
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> VisslIgnoredKeys() {
  return {"VERBOSE",
          "TEST_ONLY",
          "TEST_MODEL",
          "TEST_EVERY_NUM_EPOCH",
          "MULTI_PROCESSING_METHOD",
          "HOOKS",
          "MONITORING",
          "PROFILING",
          "REPRODUCIBILITY",
          "METERS",
          "MACHINE.DEVICE",
          "DATA.PIN_MEMORY",
          "DATA.ENABLE_ASYNC_GPU_COPY",
          "DATA.TRAIN.DATASET_NAMES",
          "DATA.TRAIN.LABEL_SOURCES",
          "DATA.TRAIN.LABEL_PATHS",
          "DATA.TRAIN.LABEL_TYPE",
          "DATA.TRAIN.MMAP_MODE",
          "DATA.TRAIN.COPY_TO_LOCAL_DISK",
          "DATA.TRAIN.COPY_DESTINATION_DIR",
          "DATA.TRAIN.USE_DEBUGGING_SAMPLER",
          "MODEL.SYNC_BN_CONFIG.SYNC_BN_TYPE",
          "MODEL.AMP_PARAMS.AMP_ARGS",
          "MODEL.AMP_PARAMS.AMP_TYPE",
          "LOSS.swav_loss.output_dir",
          "LOSS.swav_loss.embedding_dim",
          "LOSS.swav_loss.num_prototypes",
          "LOSS.swav_loss.queue.local_queue_length",
          "DISTRIBUTED.BACKEND",
          "DISTRIBUTED.NCCL_DEBUG",
          "DISTRIBUTED.NCCL_SOCKET_NTHREADS",
          "DISTRIBUTED.BROADCAST_BUFFERS",
          "CHECKPOINT.APPEND_DISTR_RUN_ID",
          "CHECKPOINT.BACKEND",
          "CHECKPOINT.OVERWRITE_EXISTING",
          "CHECKPOINT.LATEST_CHECKPOINT_RESUME_FILE_NUM",
          "CHECKPOINT.USE_SYMLINK_CHECKPOINT_FOR_RESUME"};
}

namespace {
absl::StatusOr<SwavRecipe> ReadSwavRecipe(const YAML::Node& config,
                                          const std::string& data_override);
}  // namespace

absl::StatusOr<SwavRecipe> SwavRecipeFromConfig(const YAML::Node& config,
                                                const std::string& data_override) {
  // A config of the wrong shape (a list where a mapping belongs, found by fuzzing) makes
  // yaml-cpp throw from deep inside; the user gets one sentence instead of an abort.
  try {
    return ReadSwavRecipe(config, data_override);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the config has the wrong shape: ", e.what()));
  }
}

namespace {
absl::StatusOr<SwavRecipe> ReadSwavRecipe(const YAML::Node& config,
                                          const std::string& data_override) {
  VisslConfigReader reader(config);
  for (const std::string& key : VisslIgnoredKeys()) reader.Ignore(key);
  SwavRecipe recipe;
  methods::SwavOptions& swav = recipe.swav;
  train::PretrainOptions& train = recipe.train;
  nlohmann::json& resolved = recipe.resolved;

  SSL_RETURN_IF_ERROR(reader.Require("TRAINER.TRAIN_STEP_NAME", "standard_train_step",
                                     "one forward, backward and step per batch"));
  SSL_RETURN_IF_ERROR(reader.Require("TRAINER.TASK_NAME", "self_supervision_task", "pretraining"));
  SSL_RETURN_IF_ERROR(reader.Require("LOSS.name", "swav_loss", "this program trains SwAV"));
  SSL_ASSIGN_OR_RETURN(int64_t seed, reader.Int("SEED_VALUE", 0));
  train.seed = static_cast<uint64_t>(seed);
  SSL_ASSIGN_OR_RETURN(int64_t log_frequency, reader.Int("LOG_FREQUENCY", 10));
  train.print_freq = static_cast<int>(log_frequency);

  // Data.
  SSL_ASSIGN_OR_RETURN(int64_t workers, reader.Int("DATA.NUM_DATALOADER_WORKERS", 4));
  train.workers = static_cast<int>(workers);
  SSL_ASSIGN_OR_RETURN(int64_t bucket_mb, reader.Int("DATA.DDP_BUCKET_CAP_MB", 25));
  train.bucket_bytes = bucket_mb << 20;
  SSL_ASSIGN_OR_RETURN(std::vector<std::string> sources,
                       reader.StringList("DATA.TRAIN.DATA_SOURCES", {"disk_folder"}));
  if (sources != std::vector<std::string>{"disk_folder"}) {
    return absl::InvalidArgumentError(
        "config.DATA.TRAIN.DATA_SOURCES must be [disk_folder]: this program reads ImageFolders");
  }
  SSL_ASSIGN_OR_RETURN(std::vector<std::string> paths,
                       reader.StringList("DATA.TRAIN.DATA_PATHS", {}));
  train.data = !data_override.empty() ? data_override : paths.empty() ? "" : paths[0];
  if (train.data.empty()) {
    return absl::InvalidArgumentError(
        "no training data: give --data=<ImageFolder> or config.DATA.TRAIN.DATA_PATHS=[<path>]");
  }
  if (paths.size() > 1) {
    return absl::InvalidArgumentError(
        "config.DATA.TRAIN.DATA_PATHS holds several folders; give one");
  }
  SSL_RETURN_IF_ERROR(reader.Require("DATA.TRAIN.COLLATE_FUNCTION", "multicrop_collator",
                                     "crops are grouped by resolution"));
  SSL_ASSIGN_OR_RETURN(bool drop_last, reader.Bool("DATA.TRAIN.DROP_LAST", true));
  if (!drop_last) {
    return absl::InvalidArgumentError(
        "config.DATA.TRAIN.DROP_LAST is false; pretraining always drops the last partial "
        "batch (Sinkhorn and the queue need full batches)");
  }
  SSL_ASSIGN_OR_RETURN(recipe.batch_size_per_replica,
                       reader.Int("DATA.TRAIN.BATCHSIZE_PER_REPLICA", 256));
  SSL_RETURN_IF_ERROR(ReadTransforms(reader.Raw("DATA.TRAIN.TRANSFORMS"), &swav.crops));

  // Model.
  SSL_ASSIGN_OR_RETURN(swav.arch, ReadTrunk(reader, swav));
  SSL_RETURN_IF_ERROR(ReadHead(reader, swav));
  SSL_RETURN_IF_ERROR(ReadFrozenParameters(reader, swav));
  SSL_ASSIGN_OR_RETURN(bool sync_bn,
                       reader.Bool("MODEL.SYNC_BN_CONFIG.CONVERT_BN_TO_SYNC_BN", false));
  SSL_ASSIGN_OR_RETURN(int64_t group_size, reader.Int("MODEL.SYNC_BN_CONFIG.GROUP_SIZE", -1));
  train.bn = sync_bn ? "sync" : "local";
  train.sync_bn_group_size = static_cast<int>(group_size);
  SSL_ASSIGN_OR_RETURN(recipe.amp_requested, reader.Bool("MODEL.AMP_PARAMS.USE_AMP", false));

  // Distributed.
  SSL_ASSIGN_OR_RETURN(int64_t nodes, reader.Int("DISTRIBUTED.NUM_NODES", 1));
  SSL_ASSIGN_OR_RETURN(int64_t per_node, reader.Int("DISTRIBUTED.NUM_PROC_PER_NODE", 8));
  if (nodes < 1 || per_node < 1) {
    return absl::InvalidArgumentError(
        "config.DISTRIBUTED.NUM_NODES and NUM_PROC_PER_NODE must be >= 1");
  }
  recipe.num_nodes = static_cast<int>(nodes);
  recipe.num_proc_per_node = static_cast<int>(per_node);
  SSL_RETURN_IF_ERROR(reader.Require("DISTRIBUTED.INIT_METHOD", "tcp", "a TCPStore rendezvous"));
  SSL_ASSIGN_OR_RETURN(recipe.run_id, reader.String("DISTRIBUTED.RUN_ID", "auto"));
  SSL_ASSIGN_OR_RETURN(bool manual_reduction,
                       reader.Bool("DISTRIBUTED.MANUAL_GRADIENT_REDUCTION", false));
  if (manual_reduction) {
    return absl::InvalidArgumentError(
        "config.DISTRIBUTED.MANUAL_GRADIENT_REDUCTION is not implemented (gradients are "
        "averaged in buckets overlapping backward)");
  }
  const int world = recipe.num_nodes * recipe.num_proc_per_node;
  train.batch_size = recipe.batch_size_per_replica * world;
  if (sync_bn && group_size > 0 && world % group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.MODEL.SYNC_BN_CONFIG.GROUP_SIZE ", group_size, " does not divide the ", world,
        " processes (DISTRIBUTED.NUM_NODES x NUM_PROC_PER_NODE); use a divisor, -1 (per "
        "machine) or 0 (all)"));
  }

  // Loss.
  const std::string l = "LOSS.swav_loss.";
  SSL_ASSIGN_OR_RETURN(swav.temperature, reader.Double(l + "temperature", 0.1));
  SSL_ASSIGN_OR_RETURN(swav.use_double_precision, reader.Bool(l + "use_double_precision", false));
  SSL_ASSIGN_OR_RETURN(swav.normalize_last_layer, reader.Bool(l + "normalize_last_layer", true));
  SSL_ASSIGN_OR_RETURN(int64_t num_iters, reader.Int(l + "num_iters", 3));
  swav.num_iters = static_cast<int>(num_iters);
  SSL_ASSIGN_OR_RETURN(swav.epsilon, reader.Double(l + "epsilon", 0.05));
  SSL_ASSIGN_OR_RETURN(swav.temp_hard_assignment_iters,
                       reader.Int(l + "temp_hard_assignment_iters", 0));
  SSL_ASSIGN_OR_RETURN(std::vector<int64_t> assign, reader.IntList(l + "crops_for_assign", {0, 1}));
  swav.crops_for_assign.assign(assign.begin(), assign.end());
  const int total_crops = std::accumulate(swav.crops.counts.begin(), swav.crops.counts.end(), 0);
  if (reader.Has(l + "num_crops")) {
    SSL_ASSIGN_OR_RETURN(int64_t declared, reader.Int(l + "num_crops", total_crops));
    // VISSL overwrites it from the transforms; a different value is a config mistake.
    if (declared != total_crops && declared != 2) {
      return absl::InvalidArgumentError(absl::StrCat("config.", l, "num_crops is ", declared,
                                                     " but the transforms make ", total_crops,
                                                     " crops"));
    }
  }
  SSL_ASSIGN_OR_RETURN(int64_t queue_length, reader.Int(l + "queue.queue_length", 0));
  SSL_ASSIGN_OR_RETURN(swav.queue_start_iter, reader.Int(l + "queue.start_iter", 0));
  // This framework's key (VISSL has only its own rule): which original starts the queue.
  SSL_ASSIGN_OR_RETURN(std::string queue_rule, reader.String(l + "queue.rule", "vissl"));
  if (queue_rule != "vissl" && queue_rule != "swav_repo") {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", l,
                     "queue.rule must be vissl (random rows, used from start_iter, "
                     "as VISSL) or swav_repo (zeros, used once full, as main_swav.py), got \"",
                     queue_rule, "\""));
  }
  swav.queue_rule = queue_rule == "vissl" ? methods::SwavOptions::QueueRule::kVissl
                                          : methods::SwavOptions::QueueRule::kSwavRepo;
  // VISSL's rule: a whole number of global batches, split evenly over the processes.
  swav.queue_length = queue_length - queue_length % train.batch_size;
  if (queue_length > 0 && swav.queue_length == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.", l, "queue.queue_length ", queue_length, " is shorter than one global batch of ",
        train.batch_size, "; the queue would be empty"));
  }
  resolved["queue_length"] = swav.queue_length;
  resolved["local_queue_length"] = swav.queue_length / world;

  // Optimizer.
  const std::string o = "OPTIMIZER.";
  SSL_RETURN_IF_ERROR(
      reader.Require(o + "name", "sgd", "SwAV trains with SGD, optionally in LARC"));
  SSL_ASSIGN_OR_RETURN(bool use_larc, reader.Bool(o + "use_larc", false));
  SSL_ASSIGN_OR_RETURN(bool use_zero, reader.Bool(o + "use_zero", false));
  SSL_ASSIGN_OR_RETURN(bool nesterov, reader.Bool(o + "nesterov", false));
  if (use_zero || nesterov) {
    return absl::InvalidArgumentError("config.OPTIMIZER.use_zero and nesterov are not implemented");
  }
  train.optimizer = use_larc ? "larc" : "sgd";
  SSL_ASSIGN_OR_RETURN(train.optimizer_options.clip, reader.Bool(o + "larc_config.clip", false));
  SSL_ASSIGN_OR_RETURN(train.optimizer_options.eps, reader.Double(o + "larc_config.eps", 1e-8));
  SSL_ASSIGN_OR_RETURN(train.optimizer_options.trust_coefficient,
                       reader.Double(o + "larc_config.trust_coefficient", 0.001));
  SSL_ASSIGN_OR_RETURN(train.optimizer_options.weight_decay,
                       reader.Double(o + "weight_decay", 1e-4));
  SSL_ASSIGN_OR_RETURN(train.optimizer_options.momentum, reader.Double(o + "momentum", 0.9));
  SSL_ASSIGN_OR_RETURN(int64_t epochs, reader.Int(o + "num_epochs", 90));
  train.epochs = static_cast<int>(epochs);
  SSL_ASSIGN_OR_RETURN(swav.regularize_bn, reader.Bool(o + "regularize_bn", false));
  SSL_ASSIGN_OR_RETURN(swav.regularize_bias, reader.Bool(o + "regularize_bias", true));
  SSL_ASSIGN_OR_RETURN(swav.non_regularized_parameters,
                       reader.StringList(o + "non_regularized_parameters", {}));
  SSL_ASSIGN_OR_RETURN(bool single_group,
                       reader.Bool(o + "construct_single_param_group_only", false));
  SSL_ASSIGN_OR_RETURN(std::string constructor,
                       reader.String(o + "param_group_constructor", "default"));
  SSL_ASSIGN_OR_RETURN(bool head_lr,
                       reader.Bool(o + "head_optimizer_params.use_different_lr", false));
  SSL_ASSIGN_OR_RETURN(bool head_wd,
                       reader.Bool(o + "head_optimizer_params.use_different_wd", false));
  reader.Ignore(o + "head_optimizer_params.weight_decay");
  reader.Ignore(o + "param_schedulers.lr_head");
  reader.Ignore(o + "betas");
  reader.Ignore(o + "layer_wise_lr_decay");
  if (single_group || constructor != "default" || head_lr || head_wd) {
    return absl::InvalidArgumentError(
        "config.OPTIMIZER: only VISSL's default parameter groups (one lr and weight decay for "
        "trunk and head) are implemented");
  }
  SSL_ASSIGN_OR_RETURN(recipe.lr_schedule,
                       ReadLrSchedule(reader, recipe.num_nodes, recipe.num_proc_per_node,
                                      recipe.batch_size_per_replica, resolved));
  const optim::ScheduleSpec schedule = recipe.lr_schedule;
  train.learning_rate = [schedule](const methods::StepContext& step) {
    return optim::ScheduleValueAt(schedule, step.global_step, step.iterations_per_epoch,
                                  static_cast<int>(step.epochs));
  };

  // Checkpoints.
  SSL_ASSIGN_OR_RETURN(train.output_dir, reader.String("CHECKPOINT.DIR", "."));
  SSL_ASSIGN_OR_RETURN(bool auto_resume, reader.Bool("CHECKPOINT.AUTO_RESUME", true));
  train.resume = auto_resume ? "latest" : "";
  SSL_ASSIGN_OR_RETURN(int64_t frequency, reader.Int("CHECKPOINT.CHECKPOINT_FREQUENCY", 1));
  train.checkpoint_every = static_cast<int>(frequency);
  SSL_ASSIGN_OR_RETURN(int64_t iteration_frequency,
                       reader.Int("CHECKPOINT.CHECKPOINT_ITER_FREQUENCY", -1));
  if (iteration_frequency > 0) {
    return absl::InvalidArgumentError(
        "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY is not implemented: checkpoints are "
        "written per phase (CHECKPOINT_FREQUENCY)");
  }
  train.layout = train::VisslLayout();

  SSL_RETURN_IF_ERROR(reader.CheckAllRead());
  recipe.ignored = reader.IgnoredPresent();
  resolved["arch"] = swav.arch;
  resolved["global_batch"] = train.batch_size;
  resolved["world_size"] = world;
  resolved["optimizer"] = train.optimizer;
  resolved["epochs"] = train.epochs;
  resolved["lr_schedule"] = recipe.lr_schedule.name;
  return recipe;
}

}  // namespace

}  // namespace ssl::tools
