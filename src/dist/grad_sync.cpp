// Bucketed gradient all-reduce over host memory, see grad_sync.h (NCCL: nccl_sync.cpp).
#include "dist/grad_sync.h"

#include <algorithm>
#include <vector>

#include "util/timing.h"

namespace cairn::dist {

void GradSync::ready(int layer) {
  if (!overlap_ || next_ >= buckets_.size() || buckets_[next_].layer != layer) return;
  const double t0 = now_seconds();
  start(buckets_[next_].begin, buckets_[next_].end);
  ++next_;
  progress();
  seconds_ += now_seconds() - t0;
}

void GradSync::finish() {
  const double t0 = now_seconds();
  if (!overlap_ && !buckets_.empty()) {
    size_t b = buckets_[0].begin, e = buckets_[0].end;  // the trainable range is contiguous
    for (const GradBucket& k : buckets_) b = std::min(b, k.begin), e = std::max(e, k.end);
    start(b, e);
  }
  for (; overlap_ && next_ < buckets_.size(); ++next_) start(buckets_[next_].begin, buckets_[next_].end);
  wait();
  next_ = 0;
  seconds_ += now_seconds() - t0;
}

namespace {

// Host memory (the CPU backend): non-blocking MPI all-reduces, advanced at each bucket boundary.
class HostSync final : public GradSync {
 public:
  HostSync(Comm& c, float* g, std::vector<GradBucket> b, bool overlap) : GradSync(g, std::move(b), overlap), comm_(c) {}

 private:
  void start(size_t b, size_t e) override { comm_.start_allreduce_sum(grads_ + b, e - b); }
  void progress() override { comm_.progress(); }
  void wait() override { comm_.wait_all(); }
  Comm& comm_;
};

// Device memory without NCCL: each bucket through a host copy when the step's backward is done.
class StagedSync final : public GradSync {
 public:
  StagedSync(Comm& c, Backend& be, float* g, std::vector<GradBucket> b) : GradSync(g, std::move(b), false), comm_(c), be_(be) {}

 private:
  void start(size_t b, size_t e) override { ranges_.push_back({b, e}); }
  void wait() override {
    for (auto [b, e] : ranges_) {
      host_.resize(e - b);
      be_.to_host(host_.data(), grads_ + b, (e - b) * sizeof(float));
      comm_.allreduce_sum(host_.data(), e - b);
      be_.to_device(grads_ + b, host_.data(), (e - b) * sizeof(float));
    }
    ranges_.clear();
  }
  Comm& comm_;
  Backend& be_;
  std::vector<std::pair<size_t, size_t>> ranges_;
  std::vector<float> host_;
};

}  // namespace

#if defined(CAIRN_HAVE_NCCL)
bool nccl_built() { return true; }
#else
bool nccl_built() { return false; }
#endif

std::unique_ptr<GradSync> make_grad_sync(Comm& comm, Backend& be, float* grads, std::vector<GradBucket> buckets,
                                         bool overlap) {
  if (be.host_memory()) return std::make_unique<HostSync>(comm, grads, std::move(buckets), overlap);
#if defined(CAIRN_HAVE_NCCL)
  return make_nccl_grad_sync(comm, be, grads, std::move(buckets), overlap);
#else
  return std::make_unique<StagedSync>(comm, be, grads, std::move(buckets));
#endif
}

}  // namespace cairn::dist
