// Counter-based randomness: every random draw in the data pipeline comes from a
// generator seeded by (seed, epoch, sample index, view), so results do not depend on
// which thread processes which sample, or in what order.
#ifndef SSL_CORE_RANDOM_H_
#define SSL_CORE_RANDOM_H_

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace ssl {

/// SplitMix64 finalizer: a bijective mix with good avalanche, used to combine keys.
inline uint64_t MixBits(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Small, fast generator (xoshiro256**) with the distributions the transforms need.
class Rng {
 public:
  /// Seeds from a list of keys; different key tuples give independent streams.
  explicit Rng(uint64_t seed) : Rng({seed}) {}
  Rng(std::initializer_list<uint64_t> keys) {
    uint64_t h = 0x6a09e667f3bcc908ULL;
    for (uint64_t key : keys) h = MixBits(h ^ MixBits(key));
    for (uint64_t& word : state_) {
      h = MixBits(h);
      word = h;
    }
  }

  /// The generator for one view of one sample in one epoch.
  static Rng ForSample(uint64_t seed, int64_t epoch, int64_t sample_index, int64_t view) {
    return Rng({seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(sample_index),
                static_cast<uint64_t>(view)});
  }

  uint64_t NextU64() {
    const uint64_t result = Rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = Rotl(state_[3], 45);
    return result;
  }

  /// Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }
  /// Uniform in [low, high).
  double Uniform(double low, double high) { return low + (high - low) * Uniform(); }
  /// True with probability p (p <= 0 never, p >= 1 always).
  bool Bernoulli(double p) { return Uniform() < p; }
  /// Uniform integer in [low, high] (inclusive), without modulo bias.
  int64_t UniformInt(int64_t low, int64_t high) {
    const uint64_t range = static_cast<uint64_t>(high - low) + 1;
    if (range == 0) return static_cast<int64_t>(NextU64());  // full 64-bit range
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t draw;
    do {
      draw = NextU64();
    } while (draw >= limit);
    return low + static_cast<int64_t>(draw % range);
  }

  /// Standard normal (Box-Muller; one of the pair is discarded, for simplicity).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double Normal(double mean, double std) { return mean + std * Normal(); }

  /// Gamma(shape, 1) by Marsaglia and Tsang (shape < 1 through the boost U^(1/shape)).
  double Gamma(double shape) {
    if (shape < 1.0) return Gamma(shape + 1.0) * std::pow(1.0 - Uniform(), 1.0 / shape);
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    while (true) {
      double x, v;
      do {
        x = Normal();
        v = 1.0 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const double u = 1.0 - Uniform();
      if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
  }

  /// Beta(a, b) as a ratio of Gammas (numpy's beta for a, b > 1 does the same).
  double Beta(double a, double b) {
    const double x = Gamma(a), y = Gamma(b);
    return x / (x + y);
  }

  /// Fisher-Yates shuffle in place.
  template <typename T>
  void Shuffle(std::vector<T>& values) {
    for (int64_t i = static_cast<int64_t>(values.size()) - 1; i > 0; --i) {
      std::swap(values[i], values[UniformInt(0, i)]);
    }
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t state_[4];
};

}  // namespace ssl

#endif  // SSL_CORE_RANDOM_H_
