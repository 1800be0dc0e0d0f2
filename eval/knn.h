// Weighted k-nearest-neighbour classification on frozen features (the InstDisc / DINO
// monitor): cosine similarity, the k most similar training samples vote for their
// class with weight exp(similarity / T).
#ifndef EVAL_KNN_H_
#define EVAL_KNN_H_

#include <vector>

#include "eval/features.h"

namespace ssl::eval {

struct KnnResult {
  int k = 0;
  double top1 = 0;  ///< percent
  double top5 = 0;  ///< percent (100 when there are at most 5 classes)
};

/// Classifies every test feature against the training bank for each k in `ks`
/// (k larger than the bank is clamped). Features are L2-normalized here.
std::vector<KnnResult> KnnClassify(const FeatureSet& train, const FeatureSet& test,
                                   const std::vector<int>& ks, double temperature, int num_classes);

}  // namespace ssl::eval

#endif  // EVAL_KNN_H_
