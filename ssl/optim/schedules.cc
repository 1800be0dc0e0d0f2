#include "ssl/optim/schedules.h"

#include <cmath>

#include "ssl/core/constants.h"

namespace ssl::optim {

double ScaledLearningRate(double base_lr, int64_t global_batch) {
  return base_lr * static_cast<double>(global_batch) / 256.0;
}

double WarmupCosineLearningRate(double peak_lr, double warmup_epochs, double epochs, double epoch) {
  if (epoch < warmup_epochs) return peak_lr * epoch / warmup_epochs;
  return peak_lr * 0.5 * (1.0 + std::cos(kPi * (epoch - warmup_epochs) / (epochs - warmup_epochs)));
}

double CosineMomentum(double base_momentum, double epochs, double epoch) {
  return 1.0 - 0.5 * (1.0 + std::cos(kPi * epoch / epochs)) * (1.0 - base_momentum);
}

double CosineLearningRate(double peak_lr, double epochs, double epoch) {
  return peak_lr * 0.5 * (1.0 + std::cos(kPi * epoch / epochs));
}

}  // namespace ssl::optim
