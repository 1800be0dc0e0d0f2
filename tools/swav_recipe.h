// A SwAV run from a composed VISSL config: the keys SwAV uses, with VISSL's defaults
// (defaults.yaml) where a key is absent and VISSL's inference rules (num_crops from the
// transforms, queue length rounded to the global batch, auto lr scaling and the linear
// warmup's start value), mapped onto the method's and the engine's options.
#ifndef TOOLS_SWAV_RECIPE_H_
#define TOOLS_SWAV_RECIPE_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ssl/methods/swav.h"
#include "ssl/optim/param_scheduler.h"
#include "ssl/train/pretrain.h"
#include "tools/vissl_config.h"

namespace ssl::tools {

struct SwavRecipe {
  methods::SwavOptions swav;
  /// data, output_dir, batch, epochs, schedule, optimizer, BN, checkpoints, seed, ...
  train::PretrainOptions train;
  optim::ScheduleSpec lr_schedule;  ///< after VISSL's auto scaling
  int num_nodes = 1;
  int num_proc_per_node = 1;
  int64_t batch_size_per_replica = 0;
  bool amp_requested = false;        ///< MODEL.AMP_PARAMS.USE_AMP (CUDA only)
  std::string run_id = "auto";       ///< DISTRIBUTED.RUN_ID: "auto" or host:port
  std::vector<std::string> ignored;  ///< VISSL-only keys present, accepted without effect
  nlohmann::json resolved;           ///< the values used, for logs and checkpoints
};

/// The keys a config may hold that only concern VISSL's Python machinery; accepted,
/// listed in --help, never acted on.
std::vector<std::string> VisslIgnoredKeys();

/// Reads every key SwAV uses from `config` and checks that nothing else is set.
/// `data_override` (the --data flag) wins over DATA.TRAIN.DATA_PATHS.
absl::StatusOr<SwavRecipe> SwavRecipeFromConfig(const YAML::Node& config,
                                                const std::string& data_override);

}  // namespace ssl::tools

#endif  // TOOLS_SWAV_RECIPE_H_
