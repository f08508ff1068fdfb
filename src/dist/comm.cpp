// The process group and its host collectives, see include/cairn/dist.h. With CAIRN_HAVE_MPI the
// collectives are MPI's (MPI_COMM_WORLD, errors fatal: a failing rank ends the job); without it the
// group is always one rank.
#include "cairn/dist.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#ifdef CAIRN_HAVE_MPI
#include <mpi.h>
#endif

namespace cairn::dist {
namespace {

Comm g_world;
bool g_initialised = false;  // by us: finalize() undoes it

// allgatherv's checks, and the whole of it for one rank: true when nothing is left to send.
template <class T>
bool gathered_locally(const Comm& c, const T* mine, size_t n, T* all, const std::vector<size_t>& counts) {
  if (counts.size() != static_cast<size_t>(c.size()) || counts[c.rank()] != n)
    throw std::invalid_argument("allgatherv: counts do not match the ranks");
  if (c.distributed()) return false;
  std::copy(mine, mine + n, all);
  return true;
}

#ifdef CAIRN_HAVE_MPI
std::vector<MPI_Request> g_pending;
constexpr size_t kChunk = static_cast<size_t>(INT_MAX / 2);  // elements per MPI call

// Calls f(offset, count) over [0, n) in pieces an MPI count (an int) can hold.
template <class F>
void in_chunks(size_t n, F&& f) {
  for (size_t o = 0; o < n; o += kChunk) f(o, static_cast<int>(std::min(kChunk, n - o)));
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MV2_COMM_WORLD_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}
#endif

}  // namespace

#ifdef CAIRN_HAVE_MPI
bool mpi_built() { return true; }

void init(int* argc, char*** argv) {
  if (g_initialised || !launched_by_mpi()) return;
  int provided = 0;
  // FUNNELED: only the main thread calls MPI (OpenMP threads never do).
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  g_initialised = true;
  g_world.launched_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world.size_);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_world.rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &g_world.local_rank_);
  MPI_Comm_size(node, &g_world.local_size_);
  MPI_Comm_free(&node);
}

void finalize() {
  if (!g_initialised) return;
  g_initialised = false;
  MPI_Finalize();
}

void Comm::barrier() const {
  if (distributed()) MPI_Barrier(MPI_COMM_WORLD);
}

void Comm::bcast(void* data, size_t bytes, int root) const {
  if (!distributed()) return;
  in_chunks(bytes, [&](size_t o, int k) { MPI_Bcast(static_cast<char*>(data) + o, k, MPI_BYTE, root, MPI_COMM_WORLD); });
}

void Comm::allreduce_sum(double* x, size_t n) const {
  if (!distributed()) return;
  in_chunks(n, [&](size_t o, int k) { MPI_Allreduce(MPI_IN_PLACE, x + o, k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); });
}

void Comm::allreduce_sum(float* x, size_t n) const {
  if (!distributed()) return;
  in_chunks(n, [&](size_t o, int k) { MPI_Allreduce(MPI_IN_PLACE, x + o, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
}

bool Comm::any(bool flag) const {
  if (!distributed()) return flag;
  int v = flag ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return v != 0;
}

namespace {
template <class T>
void gatherv(const Comm& c, const T* mine, size_t n, T* all, const std::vector<size_t>& counts, MPI_Datatype type) {
  if (gathered_locally(c, mine, n, all, counts)) return;
  std::vector<int> cnt(c.size()), disp(c.size());
  size_t total = 0;
  for (int r = 0; r < c.size(); ++r) {
    if (counts[r] > static_cast<size_t>(INT_MAX) || total > static_cast<size_t>(INT_MAX))
      throw std::invalid_argument("allgatherv: more than 2^31 elements");
    cnt[r] = static_cast<int>(counts[r]), disp[r] = static_cast<int>(total), total += counts[r];
  }
  MPI_Allgatherv(mine, static_cast<int>(n), type, all, cnt.data(), disp.data(), type, MPI_COMM_WORLD);
}
}  // namespace

void Comm::allgatherv(const float* mine, size_t n, float* all, const std::vector<size_t>& counts) const {
  gatherv(*this, mine, n, all, counts, MPI_FLOAT);
}
void Comm::allgatherv(const double* mine, size_t n, double* all, const std::vector<size_t>& counts) const {
  gatherv(*this, mine, n, all, counts, MPI_DOUBLE);
}

void Comm::start_allreduce_sum(float* x, size_t n) {
  if (!distributed()) return;
  in_chunks(n, [&](size_t o, int k) {
    g_pending.emplace_back();
    MPI_Iallreduce(MPI_IN_PLACE, x + o, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &g_pending.back());
  });
}

void Comm::progress() {
  if (g_pending.empty()) return;
  int done = 0;
  MPI_Testall(static_cast<int>(g_pending.size()), g_pending.data(), &done, MPI_STATUSES_IGNORE);
  if (done) g_pending.clear();
}

void Comm::wait_all() {
  if (g_pending.empty()) return;
  MPI_Waitall(static_cast<int>(g_pending.size()), g_pending.data(), MPI_STATUSES_IGNORE);
  g_pending.clear();
}

void Comm::abort(int code) const {
  std::fflush(stdout), std::fflush(stderr);
  if (g_initialised && distributed()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

#else  // one rank, collectives are the identity

bool mpi_built() { return false; }
void init(int*, char***) {}
void finalize() {}
void Comm::barrier() const {}
void Comm::bcast(void*, size_t, int) const {}
void Comm::allreduce_sum(double*, size_t) const {}
void Comm::allreduce_sum(float*, size_t) const {}
bool Comm::any(bool flag) const { return flag; }
void Comm::allgatherv(const float* mine, size_t n, float* all, const std::vector<size_t>& counts) const {
  gathered_locally(*this, mine, n, all, counts);
}
void Comm::allgatherv(const double* mine, size_t n, double* all, const std::vector<size_t>& counts) const {
  gathered_locally(*this, mine, n, all, counts);
}
void Comm::start_allreduce_sum(float*, size_t) {}
void Comm::progress() {}
void Comm::wait_all() {}
void Comm::abort(int code) const {
  std::fflush(stdout), std::fflush(stderr);
  std::_Exit(code);
}

#endif

Comm& world() { return g_world; }

std::vector<size_t> Comm::slice_counts(size_t n, size_t per_item) const {
  std::vector<size_t> c(size_);
  for (int r = 0; r < size_; ++r) {
    const auto [b, e] = slice(n, r, size_);
    c[r] = (e - b) * per_item;
  }
  return c;
}

}  // namespace cairn::dist
