// Data parallelism (docs/distributed.md): the process group a launcher (mpirun, srun) started, and
// the host-memory collectives cairn needs from it. MPI is optional at build time (CAIRN_HAVE_MPI):
// without it, and in a process no launcher started, world() is one rank and every collective is the
// identity, so the single-process code path is the K = 1 case of the same calls.
//
// Every collective must be called by all ranks in the same order (the MPI rule). Counts are in
// elements; large buffers are sent in chunks below MPI's int limit.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace cairn::dist {

bool mpi_built();  // this build has MPI

class Comm {
 public:
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // rank among the processes of this node
  int local_size() const { return local_size_; }
  bool root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }
  // A launcher started this process and MPI is initialised, with any number of ranks: training
  // then takes the data-parallel path even at K = 1 (so `mpirun -np 1` exercises it, NCCL included).
  bool launched() const { return launched_; }

  void barrier() const;
  void bcast(void* data, size_t bytes, int root = 0) const;
  // In-place sums over ranks, on host memory.
  void allreduce_sum(double* x, size_t n) const;
  void allreduce_sum(float* x, size_t n) const;
  bool any(bool flag) const;  // logical OR over ranks
  // all[...] = every rank's `mine` in rank order; counts[r]: elements of rank r (counts[rank] = n).
  void allgatherv(const float* mine, size_t n, float* all, const std::vector<size_t>& counts) const;
  void allgatherv(const double* mine, size_t n, double* all, const std::vector<size_t>& counts) const;
  // Every rank's slice (dist::slice) of n items gathered in order: the item count of each rank.
  std::vector<size_t> slice_counts(size_t n, size_t per_item = 1) const;

  // Non-blocking in-place sum of host floats (bucketed gradient all-reduce): started in the same
  // order on every rank, advanced by progress() (MPI moves non-blocking collectives only inside MPI
  // calls), all completed by wait_all().
  void start_allreduce_sum(float* x, size_t n);
  void progress();
  void wait_all();

  // Ends every rank of the job with `code` (MPI_Abort); in a single process, exits.
  [[noreturn]] void abort(int code) const;

  Comm() = default;  // one rank; init() makes world() the launcher's group

 private:
  friend void init(int* argc, char*** argv);
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool launched_ = false;
};

// The process group: initialises MPI when a launcher started this process (its environment says so:
// OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE, SLURM_* under srun --mpi), else stays one rank.
void init(int* argc, char*** argv);
void finalize();  // MPI_Finalize when init() initialised MPI
Comm& world();

// The items [b, e) of n that rank r of K takes: contiguous, sizes differing by at most one.
inline std::pair<size_t, size_t> slice(size_t n, int r, int K) {
  return {n * static_cast<size_t>(r) / static_cast<size_t>(K), n * static_cast<size_t>(r + 1) / static_cast<size_t>(K)};
}

}  // namespace cairn::dist
