// Per-iteration schedules, evaluated at a fractional epoch e = epoch + it / iters.
#ifndef SSL_OPTIM_SCHEDULES_H_
#define SSL_OPTIM_SCHEDULES_H_

#include <cstdint>

namespace ssl::optim {

/// Linear scaling by the GLOBAL batch (all processes): base_lr * batch / 256.
double ScaledLearningRate(double base_lr, int64_t global_batch);

/// MoCo v3's adjust_learning_rate: linear warmup from 0 over `warmup_epochs`, then a
/// half-cosine from `peak_lr` to 0 at `epochs`.
double WarmupCosineLearningRate(double peak_lr, double warmup_epochs, double epochs, double epoch);

/// MoCo v3's adjust_moco_momentum: 1 - 0.5 (1 + cos(pi e / E)) (1 - m0), from m0 to 1.
double CosineMomentum(double base_momentum, double epochs, double epoch);

/// Half-cosine per epoch without warmup (linear classification): lr at whole `epoch`.
double CosineLearningRate(double peak_lr, double epochs, double epoch);

}  // namespace ssl::optim

#endif  // SSL_OPTIM_SCHEDULES_H_
