#include "ssl/data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ssl/core/file.h"
#include "ssl/data/image_io.h"

namespace ssl::data {
namespace fs = std::filesystem;
namespace {

constexpr double kPi = 3.14159265358979323846;

const char* const kShapeNames[kMaxSyntheticClasses] = {"disk",  "square",  "triangle", "star",
                                                       "plus",  "ring",    "crescent", "hexagon",
                                                       "cross", "stripes", "two_dots", "bar"};

bool InsideRegularPolygon(double u, double v, int sides) {
  const double r = std::hypot(u, v);
  const double sector = 2 * kPi / sides;
  double theta = std::atan2(v, u) + kPi / 2;  // a vertex points up
  theta = std::fmod(theta + 4 * kPi, sector) - sector / 2;
  return r * std::cos(theta) < std::cos(kPi / sides);
}

// Membership test in shape-local coordinates, where the shape fills about [-1, 1]^2.
bool InsideShape(int shape, double u, double v) {
  const double r = std::hypot(u, v);
  switch (shape) {
    case 0:
      return r < 0.95;
    case 1:
      return std::max(std::abs(u), std::abs(v)) < 0.8;
    case 2:
      return InsideRegularPolygon(u, v * 1.1 - 0.15, 3);
    case 3: {
      const double theta = std::atan2(v, u) + kPi / 2;
      return r < 0.42 + 0.58 * std::pow(0.5 + 0.5 * std::cos(5 * theta), 2.0);
    }
    case 4:
      return (std::abs(u) < 0.28 && std::abs(v) < 1) || (std::abs(v) < 0.28 && std::abs(u) < 1);
    case 5:
      return r < 1 && r > 0.6;
    case 6:
      return r < 0.95 && std::hypot(u - 0.45, v + 0.1) > 0.75;
    case 7:
      return InsideRegularPolygon(v, u, 6);
    case 8: {
      const double a = (u + v) / std::sqrt(2.0), b = (u - v) / std::sqrt(2.0);
      return (std::abs(a) < 0.22 && std::abs(b) < 1.05) ||
             (std::abs(b) < 0.22 && std::abs(a) < 1.05);
    }
    case 9:
      return r < 0.95 && std::sin(u * 3 * kPi) > 0;
    case 10:
      return std::hypot(u - 0.55, v) < 0.4 || std::hypot(u + 0.55, v) < 0.4;
    default:
      return std::abs(u) < 1 && std::abs(v) < 0.3;
  }
}

}  // namespace

std::vector<std::string> SyntheticClassNames(int num_classes) {
  std::vector<std::string> names;
  for (int c = 0; c < num_classes; ++c)
    names.push_back(absl::StrFormat("%02d_%s", c, kShapeNames[c]));
  return names;
}

Image DrawSyntheticImage(int label, int size, Rng& rng) {
  // Colours come from a small palette shared by every class, slightly perturbed: colour
  // says nothing about the class, and (unlike freely drawn colours) little about the
  // instance, so instance discrimination cannot shortcut through the colour histogram
  // and has to look at the shape.
  static constexpr double kPalette[][2][3] = {
      {{0.95, 0.92, 0.85}, {0.15, 0.20, 0.45}}, {{0.20, 0.22, 0.25}, {0.95, 0.80, 0.20}},
      {{0.55, 0.75, 0.90}, {0.70, 0.15, 0.15}}, {{0.30, 0.55, 0.30}, {0.98, 0.98, 0.95}},
      {{0.85, 0.55, 0.20}, {0.10, 0.10, 0.10}}, {{0.45, 0.25, 0.55}, {0.60, 0.90, 0.60}}};
  const int palette = static_cast<int>(rng.UniformInt(0, 5));
  const bool swap = rng.Bernoulli(0.5);
  double background[3], foreground[3];
  for (int c = 0; c < 3; ++c) {
    background[c] =
        std::clamp(kPalette[palette][swap ? 1 : 0][c] + rng.Uniform(-0.06, 0.06), 0.0, 1.0);
    foreground[c] =
        std::clamp(kPalette[palette][swap ? 0 : 1][c] + rng.Uniform(-0.06, 0.06), 0.0, 1.0);
  }
  // Pose: centre, scale and a small rotation (large ones would merge plus and cross).
  const double scale = rng.Uniform(0.25, 0.42) * size;
  const double cx = rng.Uniform(scale, size - scale), cy = rng.Uniform(scale, size - scale);
  const double angle = rng.Uniform(-0.35, 0.35);
  const double cos_a = std::cos(angle), sin_a = std::sin(angle);
  // A faint gradient across the background.
  const double gradient_x = rng.Uniform(-0.08, 0.08), gradient_y = rng.Uniform(-0.08, 0.08);
  Image image(size, size);
  constexpr int kSuper = 3;  // supersampling per axis for antialiased edges
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      double coverage = 0;
      for (int sy = 0; sy < kSuper; ++sy) {
        for (int sx = 0; sx < kSuper; ++sx) {
          const double px = x + (sx + 0.5) / kSuper, py = y + (sy + 0.5) / kSuper;
          const double dx = (px - cx) / scale, dy = (py - cy) / scale;
          const double u = cos_a * dx + sin_a * dy, v = -sin_a * dx + cos_a * dy;
          coverage += InsideShape(label, u, v);
        }
      }
      coverage /= kSuper * kSuper;
      const double shade =
          gradient_x * (x - size / 2.0) / size + gradient_y * (y - size / 2.0) / size;
      for (int c = 0; c < 3; ++c) {
        const double value = coverage * foreground[c] + (1 - coverage) * (background[c] + shade) +
                             rng.Uniform(-0.03, 0.03);
        image.at(y, x, c) = static_cast<uint8_t>(std::lround(255 * std::clamp(value, 0.0, 1.0)));
      }
    }
  }
  return image;
}

absl::Status WriteSyntheticImageFolder(const SyntheticDatasetOptions& options,
                                       const std::string& root) {
  if (options.num_classes < 2 || options.num_classes > kMaxSyntheticClasses) {
    return absl::InvalidArgumentError(absl::StrCat("synthetic num_classes must be in [2, ",
                                                   kMaxSyntheticClasses, "], got ",
                                                   options.num_classes));
  }
  if (options.image_size < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic image_size must be >= 16, got ", options.image_size));
  }
  if (options.train_per_class < 1 || options.val_per_class < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic images per class must be >= 1, got train ", options.train_per_class,
                     " val ", options.val_per_class));
  }
  const std::string manifest = absl::StrFormat(
      "{\"generator\": \"ssl synthetic shapes v2\", \"num_classes\": %d, "
      "\"train_per_class\": %d, \"val_per_class\": %d, \"image_size\": %d, \"seed\": %d, "
      "\"jpeg_quality\": %d}\n",
      options.num_classes, options.train_per_class, options.val_per_class, options.image_size,
      options.seed, options.jpeg_quality);
  const std::string manifest_path = (fs::path(root) / "synthetic.json").string();
  if (absl::StatusOr<std::string> existing = ReadFileBytes(manifest_path);
      existing.ok() && *existing == manifest) {
    return absl::OkStatus();
  }
  std::error_code error;
  fs::remove_all(fs::path(root) / "train", error);
  fs::remove_all(fs::path(root) / "val", error);
  const std::vector<std::string> names = SyntheticClassNames(options.num_classes);
  const struct {
    const char* name;
    int count;
    uint64_t id;
  } splits[] = {{"train", options.train_per_class, 1}, {"val", options.val_per_class, 2}};
  for (const auto& split : splits) {
    for (int label = 0; label < options.num_classes; ++label) {
      const fs::path dir = fs::path(root) / split.name / names[label];
      if (!fs::create_directories(dir, error) && error) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot create ", dir.string(), ": ", error.message()));
      }
      for (int i = 0; i < split.count; ++i) {
        Rng rng({options.seed, split.id, static_cast<uint64_t>(label), static_cast<uint64_t>(i)});
        const Image image = DrawSyntheticImage(label, options.image_size, rng);
        const std::string path = (dir / absl::StrFormat("%05d.jpg", i)).string();
        if (absl::Status s = WriteFileAtomically(path, EncodeJpeg(image, options.jpeg_quality));
            !s.ok()) {
          return s;
        }
      }
    }
  }
  return WriteFileAtomically(manifest_path, manifest);
}

}  // namespace ssl::data
