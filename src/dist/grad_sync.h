// The gradient all-reduce of data-parallel training (docs/distributed.md#gradients), bucketed by
// layer as DDP and llm.c do: the model reports each layer's gradient range as its backward pass
// finishes it (Model::set_grad_ready), the sync starts summing that bucket over the ranks at once
// (overlap: the sum of block l runs while block l−1 is differentiated) and finish() completes them.
// Without overlap finish() sums the whole trainable range in one call after the backward pass.
// Frozen layers have no bucket: their gradients are zero on every rank, nothing to send.
//
// Transports: MPI on host memory (the CPU backend), NCCL on device memory (the CUDA backend, when
// built with NCCL), else MPI through a host copy of the device gradients.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "cairn/backend.h"
#include "cairn/dist.h"
#include "cairn/params.h"

namespace cairn::dist {

using GradBucket = LayerRange;  // one layer's floats of the flat gradient buffer (Model::grad_buckets)

class GradSync {
 public:
  GradSync(float* grads, std::vector<GradBucket> buckets, bool overlap)
      : grads_(grads), buckets_(std::move(buckets)), overlap_(overlap) {}
  virtual ~GradSync() = default;
  // The backward pass has finished the gradients of `layer` (called in the buckets' order).
  void ready(int layer);
  // Every bucket summed over the ranks: the gradients are the global batch's, identical everywhere.
  void finish();
  double seconds() const { return seconds_; }  // spent in communication calls (cumulative)

 protected:
  virtual void start(size_t begin, size_t end) = 0;
  virtual void progress() {}
  virtual void wait() = 0;
  float* grads_;

 private:
  std::vector<GradBucket> buckets_;
  bool overlap_;
  size_t next_ = 0;  // buckets started in this step
  double seconds_ = 0;
};

// The transport for `be`'s memory (see above). buckets: in backward order.
std::unique_ptr<GradSync> make_grad_sync(Comm& comm, Backend& be, float* grads, std::vector<GradBucket> buckets,
                                         bool overlap);
// Whether make_grad_sync uses NCCL for a device backend (built with NCCL).
bool nccl_built();

#if defined(CAIRN_HAVE_NCCL)
std::unique_ptr<GradSync> make_nccl_grad_sync(Comm& comm, Backend& be, float* grads, std::vector<GradBucket> buckets,
                                              bool overlap);
#endif

}  // namespace cairn::dist
