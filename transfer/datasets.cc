#include "transfer/datasets.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ssl::transfer {

const std::vector<TransferDatasetSpec>& TransferDatasets() {
  static const auto* specs = new std::vector<TransferDatasetSpec>{
      {"cifar10", 10, "train", "test", 98.9},
      {"cifar100", 100, "train", "test", 90.5},
      {"flowers", 102, "train", "test", 97.7},
      {"pets", 37, "train", "test", 93.2},
  };
  return *specs;
}

absl::StatusOr<TransferDatasetSpec> FindTransferDataset(const std::string& name) {
  std::vector<std::string> known;
  for (const TransferDatasetSpec& spec : TransferDatasets()) {
    if (spec.name == name) return spec;
    known.push_back(spec.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown transfer dataset \"", name, "\"; known: ", absl::StrJoin(known, ", ")));
}

absl::StatusOr<TransferSplits> OpenTransferDataset(const TransferDatasetSpec& spec,
                                                   const std::string& root) {
  absl::StatusOr<data::ImageFolder> train = data::ImageFolder::Open(root + "/" + spec.train_split);
  if (!train.ok()) return train.status();
  absl::StatusOr<data::ImageFolder> test = data::ImageFolder::Open(root + "/" + spec.test_split);
  if (!test.ok()) return test.status();
  for (const data::ImageFolder* split : {&*train, &*test}) {
    if (split->num_classes() != spec.num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(spec.name, " expects ", spec.num_classes,
                                                     " classes but ", split->root(), " has ",
                                                     split->num_classes()));
    }
  }
  if (train->classes() != test->classes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, ": the class folders of ", train->root(), " and ", test->root(), " differ"));
  }
  return TransferSplits{*std::move(train), *std::move(test)};
}

}  // namespace ssl::transfer
