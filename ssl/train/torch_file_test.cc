// The originals' checkpoints, written by Debian's python3-torch in their own layouts, read
// by the framework: values, shared storages, both file formats, backbones found and
// rebuilt with features equal to Python's, and one-sentence errors for bad files.
#include "ssl/train/torch_file.h"

#include <ATen/ops/allclose.h>
#include <ATen/ops/arange.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "ssl/core/file.h"
#include "ssl/data/test_util.h"
#include "ssl/train/checkpoint.h"
#include "ssl/train/pretrained.h"

namespace ssl::train {
namespace {

class TorchFileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("/usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null") != 0) return;
    dir_ = new std::string(data::testing::MakeTempDir("torch_files"));
    const std::string command = "/usr/bin/python3 ssl/train/testdata/write_torch_files.py " + *dir_;
    if (std::system(command.c_str()) != 0) {
      delete dir_;
      dir_ = nullptr;
      FAIL() << command << " failed";
    }
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "Debian's python3-torch/python3-torchvision are absent";
  }
  static std::string File(const std::string& name) { return *dir_ + "/" + name; }
  static c10::impl::GenericDict Load(const std::string& name) {
    absl::StatusOr<c10::IValue> value = LoadIValue(File(name));
    EXPECT_TRUE(value.ok()) << value.status();
    return value.ok() && value->isGenericDict()
               ? value->toGenericDict()
               : c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
  }
  static at::Tensor Reference(const std::string& key) {
    return Load("reference.pth").at(key).toTensor();
  }
  // Python's features of the backbone the framework picks from `name`.
  static void ExpectFeatures(const std::string& name, const std::string& expected_arch,
                             const std::string& reference_key, const std::string& backbone = "") {
    SCOPED_TRACE(name);
    absl::StatusOr<CheckpointConfig> config = ReadCheckpointConfig(File(name), backbone);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->arch, expected_arch);
    absl::StatusOr<std::shared_ptr<backbones::Backbone>> model =
        LoadPretrainedBackbone(File(name), 0, backbone);
    ASSERT_TRUE(model.ok()) << model.status();
    (*model)->eval();
    const at::Tensor features = (*model)->Features(Reference("images"));
    const at::Tensor expected = Reference(reference_key);
    ASSERT_EQ(features.sizes(), expected.sizes());
    EXPECT_TRUE(at::allclose(features, expected, 1e-4, 1e-5))
        << (features - expected).abs().max().item<float>();
  }
  static std::string* dir_;
};
std::string* TorchFileTest::dir_ = nullptr;

TEST_F(TorchFileTest, ValuesAndSharedStoragesInBothFormats) {
  for (const char* name : {"shared.pth", "shared_legacy.pth"}) {
    SCOPED_TRACE(name);
    const c10::impl::GenericDict d = Load(name);
    const at::Tensor whole = d.at("whole").toTensor();
    EXPECT_TRUE(whole.equal(at::arange(24, at::kDouble).reshape({4, 6})));
    EXPECT_TRUE(d.at("row").toTensor().equal(whole[1]));
    EXPECT_TRUE(d.at("column").toTensor().equal(whole.select(1, 2)));
    EXPECT_TRUE(d.at("flat").toTensor().equal(whole.view(-1).slice(0, 5, 9)));
    // One storage, as in Python: writing through one view shows in the others.
    d.at("whole").toTensor()[1][2] = -100;
    EXPECT_EQ(d.at("row").toTensor()[2].item<double>(), -100);
    EXPECT_EQ(d.at("column").toTensor()[1].item<double>(), -100);
    EXPECT_EQ(d.at("ints").toTensor().scalar_type(), at::kLong);
    EXPECT_EQ(d.at("ints").toTensor()[1].item<int64_t>(), -2);
    EXPECT_EQ(d.at("half").toTensor().scalar_type(), at::kHalf);
    EXPECT_EQ(d.at("half").toTensor()[1].item<float>(), -1.25f);
    EXPECT_EQ(d.at("empty").toTensor().sizes(), (std::vector<int64_t>{0, 3}));
    EXPECT_EQ(d.at("scalar").toTensor().dim(), 0);
    EXPECT_EQ(d.at("scalar").toTensor().item<float>(), 2.5f);
    EXPECT_EQ(d.at("bigint").toInt(), int64_t{1} << 40);
    EXPECT_EQ(d.at("neg").toInt(), -7);
    const c10::List<c10::IValue> nested = d.at("nested").toList();
    ASSERT_EQ(nested.size(), 6u);
    EXPECT_EQ(nested.get(0).toInt(), 1);
    EXPECT_EQ(nested.get(1).toDouble(), 2.5);
    EXPECT_EQ(nested.get(2).toStringRef(), "text");
    EXPECT_TRUE(nested.get(3).isNone());
    EXPECT_TRUE(nested.get(4).toBool());
    EXPECT_EQ(nested.get(5).toTupleRef().elements().at(1).toInt(), 4);
  }
}

TEST_F(TorchFileTest, OrderedDictStateDictsAndTheirOptimizerState) {
  const c10::impl::GenericDict moco = Load("checkpoint_0099.pth.tar");
  EXPECT_EQ(moco.at("epoch").toInt(), 100);
  EXPECT_TRUE(moco.at("state_dict").toGenericDict().contains("module.base_encoder.conv1.weight"));
  // The optimizer's state is keyed by parameter index (ints), as Python's.
  const c10::impl::GenericDict state =
      moco.at("optimizer").toGenericDict().at("state").toGenericDict();
  EXPECT_TRUE(state.contains(0));
  EXPECT_TRUE(state.at(0).toGenericDict().contains("momentum_buffer"));
  // An argparse.Namespace becomes its attributes.
  const c10::impl::GenericDict deit = Load("deit.pth");
  EXPECT_EQ(deit.at("args").toGenericDict().at("model").toStringRef(), "resnet18");
}

TEST_F(TorchFileTest, TheOriginalsBackbonesGiveTheFeaturesPythonComputes) {
  ExpectFeatures("torchvision.pth", "resnet18", "base");
  ExpectFeatures("torchvision_legacy.pth", "resnet18", "base");
  ExpectFeatures("checkpoint_0099.pth.tar", "resnet18", "base");  // MoCo v3
  ExpectFeatures("checkpoint_0099.pth.tar", "resnet18", "other", "momentum");
  ExpectFeatures("deit.pth", "resnet18", "base");
  ExpectFeatures("model_final_checkpoint_phase4.torch", "resnet18", "base");  // VISSL trunk
  ExpectFeatures("last_epoch_ckpt.pth.tar", "resnet18", "other");             // M2T teacher
  ExpectFeatures("last_epoch_ckpt.pth.tar", "resnet18", "base", "student");
  ExpectFeatures("swav_checkpoint.pth.tar", "resnet18", "base");  // SwAV repo, head beside
  absl::StatusOr<CheckpointConfig> m2t = ReadCheckpointConfig(File("last_epoch_ckpt.pth.tar"));
  ASSERT_TRUE(m2t.ok());
  EXPECT_EQ(m2t->epoch, 7);
  EXPECT_EQ(m2t->backbone, "teacher");
}

TEST_F(TorchFileTest, BadFilesGetOneSentenceNamingTheFile) {
  for (const char* name : {"garbage.pth", "truncated.pth", "truncated_legacy.pth"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<std::shared_ptr<backbones::Backbone>> model = LoadPretrainedBackbone(File(name));
    ASSERT_FALSE(model.ok());
    const std::string message(model.status().message());
    EXPECT_NE(message.find(File(name)), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_EQ(message.find("frame #"), std::string::npos) << message;  // no C++ backtrace
    EXPECT_LT(message.size(), 400u) << message;
  }
  absl::StatusOr<std::shared_ptr<backbones::Backbone>> wrong =
      LoadPretrainedBackbone(File("wrong_shape.pth"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("layer2.0.conv1.weight"), std::string::npos)
      << wrong.status();
  absl::StatusOr<std::shared_ptr<backbones::Backbone>> absent =
      LoadPretrainedBackbone(File("last_epoch_ckpt.pth.tar"), 0, "base");
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.status().message().find("teacher, student"), std::string::npos)
      << absent.status();
}

// Every prefix of a small file, and every single-byte corruption of its pickle, is an
// error or a value, never a crash (the fuzzer's invariant, checked exhaustively here).
TEST_F(TorchFileTest, EveryTruncationAndByteFlipIsAnErrorNotACrash) {
  absl::StatusOr<std::string> bytes = ssl::ReadFileBytes(File("shared_legacy.pth"));
  ASSERT_TRUE(bytes.ok());
  for (size_t length = 0; length < bytes->size(); ++length) {
    EXPECT_FALSE(ParseTorchSave(std::string_view(*bytes).substr(0, length), "f").ok()) << length;
  }
  for (size_t i = 0; i < bytes->size(); ++i) {
    std::string corrupt = *bytes;
    corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
    (void)ParseTorchSave(corrupt, "f");
  }
}

}  // namespace
}  // namespace ssl::train
