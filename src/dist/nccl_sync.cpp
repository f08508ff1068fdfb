// Gradient all-reduce on device memory with NCCL (docs/distributed.md#gradients), one GPU per rank:
// rank 0 makes the NCCL unique id and broadcasts it over MPI (the pattern of NCCL's "one device per
// process" example and llm.c's zero.cuh); every rank joins the NCCL communicator of that id.
// Buckets are summed on a stream of their own, after an event on the backend's stream marks the
// bucket's gradients written: the sums overlap the rest of the backward pass; finish() makes the
// backend's stream wait for them, so the optimizer step reads the summed gradients.
#include <cuda_runtime.h>
#include <nccl.h>

#include <stdexcept>
#include <string>

#include "dist/grad_sync.h"

namespace cairn::dist {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("NCCL gradient sync: ") + what + ": " + cudaGetErrorString(e));
}
void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("NCCL gradient sync: ") + what + ": " + ncclGetErrorString(r));
}

class NcclSync final : public GradSync {
 public:
  NcclSync(Comm& comm, Backend& be, float* grads, std::vector<GradBucket> buckets, bool overlap)
      : GradSync(grads, std::move(buckets), overlap), compute_(static_cast<cudaStream_t>(be.native_stream())) {
    if (!compute_) throw std::runtime_error("NCCL gradient sync: the backend has no CUDA stream");
    ncclUniqueId id;
    if (comm.root()) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    comm.bcast(&id, sizeof id, 0);
    check(ncclCommInitRank(&nccl_, comm.size(), id, comm.rank()), "ncclCommInitRank");
    check(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaEventCreateWithFlags(&written_, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&summed_, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~NcclSync() override {
    cudaStreamSynchronize(comm_stream_);
    ncclCommDestroy(nccl_);
    cudaEventDestroy(written_);
    cudaEventDestroy(summed_);
    cudaStreamDestroy(comm_stream_);
  }

 private:
  void start(size_t b, size_t e) override {
    check(cudaEventRecord(written_, compute_), "cudaEventRecord");
    check(cudaStreamWaitEvent(comm_stream_, written_, 0), "cudaStreamWaitEvent");
    check(ncclAllReduce(grads_ + b, grads_ + b, e - b, ncclFloat, ncclSum, nccl_, comm_stream_), "ncclAllReduce");
  }
  void wait() override {
    check(cudaEventRecord(summed_, comm_stream_), "cudaEventRecord");
    check(cudaStreamWaitEvent(compute_, summed_, 0), "cudaStreamWaitEvent");
    // A rank that failed leaves the others inside NCCL; the host waits here with the job's bound
    // (MPI ends every rank when one exits), and an asynchronous NCCL error surfaces as an exception.
    check(cudaStreamSynchronize(comm_stream_), "all-reduce");
    ncclResult_t async = ncclSuccess;
    check(ncclCommGetAsyncError(nccl_, &async), "ncclCommGetAsyncError");
    check(async, "all-reduce");
  }

  cudaStream_t compute_, comm_stream_ = nullptr;
  cudaEvent_t written_ = nullptr, summed_ = nullptr;
  ncclComm_t nccl_ = nullptr;
};

}  // namespace

std::unique_ptr<GradSync> make_nccl_grad_sync(Comm& comm, Backend& be, float* grads, std::vector<GradBucket> buckets,
                                              bool overlap) {
  return std::make_unique<NcclSync>(comm, be, grads, std::move(buckets), overlap);
}

}  // namespace cairn::dist
