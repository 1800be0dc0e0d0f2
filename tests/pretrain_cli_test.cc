// The pretraining program as a user runs it, in real processes: a run killed with
// SIGKILL and resumed ends bitwise equal to an uninterrupted one; Python's torch.load
// reads the checkpoints in MoCo v3's layout; a non-finite loss stops the run with a
// saved diagnostic.
#include <ATen/core/Dict.h>
#include <ATen/ops/full_like.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ssl/data/test_util.h"
#include "ssl/train/checkpoint.h"
#include "tests/subprocess.h"

namespace ssl {
namespace {
namespace fs = std::filesystem;

using testing::Runfile;

class PretrainCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new std::string(testing::MakeTinyImageFolder("cli_data"));
  }

  // Starts main_moco with the tiny configuration; returns the child's pid.
  static pid_t Start(const std::string& output_dir, const std::vector<std::string>& extra,
                     const std::string& log) {
    std::vector<std::string> args = {Runfile("tools/main_moco"),
                                     "--data=" + *data_ + "/train",
                                     "--output_dir=" + output_dir,
                                     "--arch=resnet18w0.125",
                                     "--cifar_stem",
                                     "--image_size=32",
                                     "--batch_size=16",
                                     "--epochs=3",
                                     "--warmup_epochs=1",
                                     "--moco_dim=16",
                                     "--moco_mlp_dim=32",
                                     "--workers=2",
                                     "--threads=1",
                                     "--print_freq=5",
                                     "--seed=3"};
    args.insert(args.end(), extra.begin(), extra.end());
    return testing::StartProcess(args, log);
  }

  static int Wait(pid_t pid) { return testing::WaitStatus(pid); }

  static c10::impl::GenericDict StateDict(const std::string& checkpoint) {
    absl::StatusOr<c10::IValue> loaded = train::LoadIValue(checkpoint);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded->toGenericDict().at("state_dict").toGenericDict();
  }

  static std::string* data_;
};
std::string* PretrainCliTest::data_ = nullptr;

TEST_F(PretrainCliTest, KilledAndResumedRunEndsBitwiseEqual) {
  const std::string straight = data::testing::MakeTempDir("straight");
  const std::string killed = data::testing::MakeTempDir("killed");
  int status = Wait(Start(straight, {}, straight + "/log.txt"));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  // Kill -9 during the second epoch, once the first checkpoint exists.
  ASSERT_TRUE(testing::KillWhenFileAppears(Start(killed, {}, killed + "/log.txt"),
                                           killed + "/checkpoint_0000.pth.tar", 150))
      << "the run finished before it could be killed";
  ASSERT_FALSE(fs::exists(killed + "/checkpoint_0002.pth.tar"));

  status = Wait(Start(killed, {"--resume=latest"}, killed + "/resume_log.txt"));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const c10::impl::GenericDict a = StateDict(straight + "/checkpoint_0002.pth.tar");
  const c10::impl::GenericDict b = StateDict(killed + "/checkpoint_0002.pth.tar");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    const std::string key = item.key().toStringRef();
    ASSERT_TRUE(b.contains(key)) << key;
    ASSERT_TRUE(item.value().toTensor().equal(b.at(key).toTensor())) << key << " differs";
  }
  // The optimizer state continues exactly too.
  absl::StatusOr<c10::IValue> x = train::LoadIValue(straight + "/checkpoint_0002.pth.tar");
  absl::StatusOr<c10::IValue> y = train::LoadIValue(killed + "/checkpoint_0002.pth.tar");
  const auto mu_a = x->toGenericDict().at("optimizer").toGenericDict().at("state").toGenericDict();
  const auto mu_b = y->toGenericDict().at("optimizer").toGenericDict().at("state").toGenericDict();
  ASSERT_EQ(mu_a.size(), mu_b.size());
  for (const auto& item : mu_a) {
    ASSERT_TRUE(item.value().toGenericDict().at("mu").toTensor().equal(
        mu_b.at(item.key()).toGenericDict().at("mu").toTensor()));
  }
  // Metrics were written as JSON lines for all three epochs.
  std::ifstream metrics(killed + "/metrics.jsonl");
  std::string line, all;
  while (std::getline(metrics, line)) all += line + "\n";
  EXPECT_NE(all.find("\"epoch\":3,\"loader_batch_allocations\":"), std::string::npos) << all;
}

TEST_F(PretrainCliTest, PythonTorchLoadReadsTheMocoV3Layout) {
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  }
  const std::string dir = data::testing::MakeTempDir("python");
  const int status = Wait(Start(dir, {"--epochs=1", "--warmup_epochs=0"}, dir + "/log.txt"));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string script = dir + "/check.py";
  std::ofstream(script) << R"(
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu")
assert ck["epoch"] == 1 and ck["arch"] == "resnet18w0.125", (ck["epoch"], ck["arch"])
sd = ck["state_dict"]
for key in ["module.base_encoder.conv1.weight", "module.base_encoder.fc.0.weight",
            "module.momentum_encoder.layer4.1.bn2.running_var", "module.predictor.3.weight"]:
    assert key in sd, key
assert sd["module.base_encoder.fc.0.weight"].shape == (32, 64)
groups = ck["optimizer"]["param_groups"]
assert groups[0]["lr"] >= 0 and "trust_coefficient" in groups[0]
assert all("mu" in s for s in ck["optimizer"]["state"].values())
# torch.load's default from PyTorch 2.6, weights_only=True, accepts no other globals
# than these (TorchScript's torch.jit._pickle type tags are refused). Debian's 1.13 has
# that reader too but without floats, so the pickle's globals are checked here.
import pickletools, re, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    pickle = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
for op, arg, _ in pickletools.genops(pickle):
    assert op.name not in ("STACK_GLOBAL", "INST", "OBJ"), op.name
    if op.name == "GLOBAL":
        assert arg in ("collections OrderedDict", "torch._utils _rebuild_tensor_v2") or \
            re.fullmatch(r"torch \w+Storage", arg), arg
print("ok")
)";
  EXPECT_EQ(system(("/usr/bin/python3 " + script + " " + dir + "/checkpoint_0000.pth.tar").c_str()),
            0);
}

// --channels_last on the CPU is honoured when given (and only then): the run records
// it, its checkpoint holds channels-last convolution weights that Python reads with
// their strides, and a resume from it continues.
TEST_F(PretrainCliTest, ChannelsLastOnTheCpuWhenGiven) {
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  }
  const std::string plain = data::testing::MakeTempDir("plain_layout");
  const std::string last = data::testing::MakeTempDir("channels_last");
  ASSERT_EQ(Wait(Start(plain, {"--epochs=1", "--warmup_epochs=0"}, plain + "/log.txt")), 0);
  ASSERT_EQ(Wait(Start(last, {"--epochs=1", "--warmup_epochs=0", "--channels_last"},
                       last + "/log.txt")),
            0);
  const std::string script = last + "/check.py";
  std::ofstream(script) << R"(
import json, sys, torch
plain = torch.load(sys.argv[1], map_location="cpu")
last = torch.load(sys.argv[2], map_location="cpu")
assert json.loads(plain["ssl_config"])["channels_last"] is False
assert json.loads(last["ssl_config"])["channels_last"] is True
key = "module.base_encoder.layer1.0.conv1.weight"
assert plain["state_dict"][key].is_contiguous()
assert last["state_dict"][key].is_contiguous(memory_format=torch.channels_last)
# Same training in another layout: close, not bitwise.
for name, value in plain["state_dict"].items():
    if value.is_floating_point():
        assert torch.allclose(value, last["state_dict"][name], rtol=1e-3, atol=1e-4), name
print("ok")
)";
  EXPECT_EQ(system(("/usr/bin/python3 " + script + " " + plain + "/checkpoint_0000.pth.tar " +
                    last + "/checkpoint_0000.pth.tar")
                       .c_str()),
            0);
  EXPECT_EQ(Wait(Start(last, {"--epochs=2", "--warmup_epochs=0", "--channels_last",
                              "--resume=latest"},
                       last + "/resume_log.txt")),
            0);
  EXPECT_TRUE(fs::exists(last + "/checkpoint_0001.pth.tar"));
}

TEST_F(PretrainCliTest, ExportedBackbonesLoadIntoTorchvisionAndDeitLayouts) {
  if (system("/usr/bin/python3 -c 'import torchvision' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torchvision is not installed";
  }
  const std::string dir = data::testing::MakeTempDir("export");
  ASSERT_EQ(testing::ExitCode(
                Start(dir, {"--epochs=1", "--warmup_epochs=0", "--arch=resnet18", "--nocifar_stem"},
                      dir + "/log.txt")),
            0)
      << testing::ReadFile(dir + "/log.txt");
  const std::string checkpoint = dir + "/checkpoint_0000.pth.tar";
  for (const char* format : {"torchvision", "deit"}) {
    const std::string out = dir + "/" + format + ".pth";
    EXPECT_EQ(testing::ExitCode(testing::StartProcess(
                  {Runfile("tools/export_backbone"), "--pretrained=" + checkpoint,
                   "--output=" + out, std::string("--format=") + format},
                  dir + "/export_log.txt")),
              0)
        << testing::ReadFile(dir + "/export_log.txt");
  }
  const std::string script = dir + "/check.py";
  std::ofstream(script) << R"(
import sys, torch, torchvision
ck, tv, deit = (torch.load(p, map_location="cpu") for p in sys.argv[1:4])
model = torchvision.models.resnet18()
result = model.load_state_dict(tv, strict=False)
assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"], result.missing_keys
assert not result.unexpected_keys, result.unexpected_keys
assert list(deit) == ["model"] and list(deit["model"]) == list(tv)
for key, value in tv.items():
    assert torch.equal(value, ck["state_dict"]["module.base_encoder." + key]), key
    assert torch.equal(value, deit["model"][key]), key
print("ok")
)";
  EXPECT_EQ(system(("/usr/bin/python3 " + script + " " + checkpoint + " " + dir +
                    "/torchvision.pth " + dir + "/deit.pth")
                       .c_str()),
            0);
  // One sentence for a bad format.
  EXPECT_EQ(testing::ExitCode(testing::StartProcess(
                {Runfile("tools/export_backbone"), "--pretrained=" + checkpoint,
                 "--output=" + dir + "/x.pth", "--format=onnx"},
                dir + "/bad_log.txt")),
            1);
  EXPECT_EQ(testing::ReadFile(dir + "/bad_log.txt"),
            "export_backbone: --format=onnx is not one of torchvision, deit\n");
}

// The ViT recipe's command (main_moco -a vit_small --optimizer=adamw --lr=1.5e-4
// --weight_decay=.1 --stop_grad_conv1 --moco_m_cos --moco_t=.2) at toy size; the DeiT
// export loads into a timm-named ViT (tools/make_vit_golden.py's independent one) with
// only the head missing.
TEST_F(PretrainCliTest, VitRecipeTrainsAndItsDeitExportLoadsIntoATimmNamedVit) {
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  }
  const std::string dir = data::testing::MakeTempDir("vit");
  ASSERT_EQ(testing::ExitCode(Start(dir,
                                    // main_moco.py's own spellings.
                                    {"--epochs=2", "-a", "vit_tiny_patch8", "--nocifar_stem",
                                     "--optimizer=adamw", "--lr=1.5e-4", "--weight-decay=.1",
                                     "--stop-grad-conv1", "--moco-m-cos", "--moco-t=.2"},
                                    dir + "/log.txt")),
            0)
      << testing::ReadFile(dir + "/log.txt");
  const std::string checkpoint = dir + "/checkpoint_0001.pth.tar";
  ASSERT_EQ(testing::ExitCode(testing::StartProcess(
                {Runfile("tools/export_backbone"), "--pretrained=" + checkpoint,
                 "--output=" + dir + "/deit.pth", "--format=deit"},
                dir + "/export_log.txt")),
            0)
      << testing::ReadFile(dir + "/export_log.txt");
  const std::string script = dir + "/check.py";
  std::ofstream(script) << R"(
import json, sys, torch
sys.path.insert(0, sys.argv[3])
from make_vit_golden import VisionTransformer
ck, deit = torch.load(sys.argv[1]), torch.load(sys.argv[2])
assert ck["arch"] == "vit_tiny_patch8" and ck["epoch"] == 2, (ck["arch"], ck["epoch"])
config = json.loads(ck["ssl_config"])
assert config["crop_min"] == 0.08 and config["stop_grad_conv1"] and config["moco_t"] == 0.2, config
groups = ck["optimizer"]["param_groups"]
assert len(groups) == 1 and groups[0]["weight_decay"] == 0.1, groups
sd = ck["state_dict"]
assert "module.predictor.4.running_mean" in sd and "module.base_encoder.head.7.running_var" in sd
# Frozen patch projection: base and momentum differ only by the EMA's rounding.
for name in ["patch_embed.proj.weight", "patch_embed.proj.bias"]:
    assert torch.allclose(sd["module.base_encoder." + name], sd["module.momentum_encoder." + name],
                          atol=1e-6), name
assert not torch.equal(sd["module.base_encoder.blocks.0.attn.qkv.weight"],
                       sd["module.momentum_encoder.blocks.0.attn.qkv.weight"])
model = VisionTransformer(32, 8, 192, 12, 3, 10)
result = model.load_state_dict(deit["model"], strict=False)
assert sorted(result.missing_keys) == ["head.bias", "head.weight"], result.missing_keys
assert not result.unexpected_keys, result.unexpected_keys
for key, value in deit["model"].items():
    assert torch.equal(value, sd["module.base_encoder." + key]), key
assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()
print("ok")
)";
  EXPECT_EQ(system(("/usr/bin/python3 " + script + " " + checkpoint + " " + dir + "/deit.pth " +
                    fs::path(Runfile("tools/make_vit_golden.py")).parent_path().string())
                       .c_str()),
            0);

  // pretrain -> export -> fine-tune with DeiT's recipe (scaled down), then resume.
  const std::vector<std::string> finetune = {Runfile("tools/finetune"),
                                             "--pretrained=" + dir + "/deit.pth",
                                             "--data=" + *data_,
                                             "--output_dir=" + dir + "/ft",
                                             "--epochs=2",
                                             "--warmup_epochs=1",
                                             "--batch_size=8",
                                             "--workers=2",
                                             "--threads=1",
                                             "--max_epochs_this_run=1"};
  ASSERT_EQ(testing::ExitCode(testing::StartProcess(finetune, dir + "/ft_log.txt")), 0)
      << testing::ReadFile(dir + "/ft_log.txt");
  ASSERT_EQ(testing::ExitCode(testing::StartProcess(finetune, dir + "/ft_log2.txt")), 0)
      << testing::ReadFile(dir + "/ft_log2.txt");
  EXPECT_NE(testing::ReadFile(dir + "/ft_log2.txt").find("resumed " + dir + "/ft/checkpoint.pth"),
            std::string::npos);
  std::ofstream(dir + "/check_ft.py") << R"(
import json, sys, torch
ck = torch.load(sys.argv[1] + "/checkpoint.pth")
assert ck["epoch"] == 1, ck["epoch"]
assert set(ck) >= {"model", "optimizer", "lr_scheduler", "epoch"}, list(ck)
assert ck["model"]["head.weight"].shape == (4, 192), ck["model"]["head.weight"].shape
assert ck["model"]["pos_embed"].shape == (1, 17, 192)
result = json.load(open(sys.argv[1] + "/finetune_result.json"))
assert result["epochs"] == 2 and 0 <= result["top1"] <= 100, result
lines = open(sys.argv[1] + "/metrics.jsonl").read().splitlines()
assert [json.loads(l)["epoch"] for l in lines] == [1, 2], lines
print("ok")
)";
  EXPECT_EQ(system(("/usr/bin/python3 " + dir + "/check_ft.py " + dir + "/ft").c_str()), 0);
  // One sentence for contradictory flags.
  EXPECT_EQ(testing::ExitCode(testing::StartProcess(
                {Runfile("tools/finetune"), "--data=" + *data_, "--output_dir=" + dir + "/x"},
                dir + "/bad_log.txt")),
            1);
  EXPECT_EQ(testing::ReadFile(dir + "/bad_log.txt"),
            "finetune: give either --pretrained (a checkpoint to fine-tune) or --arch (random "
            "init)\n");
}

TEST_F(PretrainCliTest, ResumesFromACheckpointAsTheOriginalSavesIt) {
  if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  }
  const std::string ours = data::testing::MakeTempDir("resume_ours");
  const std::string python = data::testing::MakeTempDir("resume_python");
  ASSERT_EQ(testing::ExitCode(Start(ours, {"--max_epochs_this_run=1"}, ours + "/log.txt")), 0)
      << testing::ReadFile(ours + "/log.txt");
  // Re-saved by torch.save as main_moco.py writes it: OrderedDict state dict, Python's
  // optimizer state dict, none of this framework's own ssl_* entries.
  const std::string script = python + "/resave.py";
  std::ofstream(script) << R"(
import collections, sys, torch
ck = torch.load(sys.argv[1], map_location="cpu")
original = {"epoch": ck["epoch"], "arch": ck["arch"],
            "state_dict": collections.OrderedDict(ck["state_dict"].items()),
            "optimizer": ck["optimizer"], "scaler": {}}
torch.save(original, sys.argv[2])
)";
  ASSERT_EQ(system(("/usr/bin/python3 " + script + " " + ours + "/checkpoint_0000.pth.tar " +
                    python + "/checkpoint_0000.pth.tar")
                       .c_str()),
            0);
  ASSERT_EQ(testing::ExitCode(Start(ours, {"--resume=latest"}, ours + "/log2.txt")), 0)
      << testing::ReadFile(ours + "/log2.txt");
  ASSERT_EQ(testing::ExitCode(Start(python, {"--resume=latest"}, python + "/log.txt")), 0)
      << testing::ReadFile(python + "/log.txt");
  const c10::impl::GenericDict a = StateDict(ours + "/checkpoint_0002.pth.tar");
  const c10::impl::GenericDict b = StateDict(python + "/checkpoint_0002.pth.tar");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    ASSERT_TRUE(item.value().toTensor().equal(b.at(item.key()).toTensor()))
        << item.key().toStringRef() << " differs";
  }
}

TEST_F(PretrainCliTest, NonFiniteLossStopsWithADiagnostic) {
  const std::string dir = data::testing::MakeTempDir("nan");
  int status = Wait(Start(dir, {"--epochs=1", "--warmup_epochs=0"}, dir + "/log.txt"));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Poison one weight and resume from it.
  absl::StatusOr<c10::IValue> loaded = train::LoadIValue(dir + "/checkpoint_0000.pth.tar");
  ASSERT_TRUE(loaded.ok());
  c10::impl::GenericDict state = loaded->toGenericDict().at("state_dict").toGenericDict();
  const at::Tensor weight = state.at("module.predictor.0.weight").toTensor();
  state.insert_or_assign("module.predictor.0.weight", at::full_like(weight, NAN));
  ASSERT_TRUE(train::SaveIValue(*loaded, dir + "/poisoned.pth.tar").ok());
  status = Wait(
      Start(dir, {"--epochs=2", "--resume=" + dir + "/poisoned.pth.tar"}, dir + "/nan_log.txt"));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream log(dir + "/nan_log.txt");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("loss became nan at epoch 1 iteration 0"), std::string::npos) << text;
  EXPECT_TRUE(fs::exists(dir + "/nan_diagnostic_epoch0001_iter000000.pth"));
  EXPECT_FALSE(fs::exists(dir + "/checkpoint_0001.pth.tar"));
}

TEST_F(PretrainCliTest, BadFlagsAreOneClearSentence) {
  const std::string dir = data::testing::MakeTempDir("bad");
  const int status = Wait(Start(dir, {"--batch_size=0"}, dir + "/log.txt"));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream log(dir + "/log.txt");
  std::string first;
  std::getline(log, first);
  EXPECT_EQ(first, "main_moco: batch size 0 must be a positive multiple of the 1 processes");

  auto first_line = [&](const std::vector<std::string>& flags) {
    const int code = Wait(Start(dir, flags, dir + "/log2.txt"));
    EXPECT_TRUE(WIFEXITED(code) && WEXITSTATUS(code) == 1);
    std::ifstream in(dir + "/log2.txt");
    std::string line;
    std::getline(in, line);
    return line;
  };
  EXPECT_EQ(first_line({"--dist_backend=nccl"}),
            "main_moco: backend \"nccl\" is not available in this build (gloo only; nccl needs "
            "a CUDA LibTorch)");
  EXPECT_EQ(first_line({"--bn=split", "--split_bn_splits=3"}),
            "main_moco: the batch of 16 per process does not divide into 3 split-BN sub-batches "
            "(--split_bn_splits)");
  EXPECT_EQ(first_line({"--device=cuda"}),
            "main_moco: --device=cuda needs a CUDA GPU, but this build's LibTorch has no CUDA "
            "(use --device=cpu)");
  EXPECT_EQ(first_line({"--device=gpu"}),
            "main_moco: unknown device \"gpu\" (use auto, cpu, cuda or cuda:N)");
  EXPECT_EQ(first_line({"--amp=fp16"}),
            "main_moco: --amp=fp16 needs --device=cuda: CPU autocast has no fp16 (use --amp=bf16 "
            "or off)");
  EXPECT_EQ(first_line({"--bn=batch"}),
            "main_moco: BatchNorm mode must be local, sync or split, got \"batch\"");
  EXPECT_EQ(first_line({"--dist_url=tcp://127.0.0.1:1", "--world_size=2", "--rank=2"}),
            "main_moco: rank 2 is not in a world of size 2 (from flags)");
}

}  // namespace
}  // namespace ssl
