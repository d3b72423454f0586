#include "comm/mpi_comm.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/check.h"

#ifdef MOERACK_HAVE_MPI
#include <mpi.h>
#endif

namespace moerack {

bool LaunchedByMpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

#ifndef MOERACK_HAVE_MPI

StatusOr<std::unique_ptr<Communicator>> MpiWorld() {
  return Error("this moerack was built without MPI (install libopenmpi-dev and rebuild)");
}

#else

namespace {

Status MpiStatus(int code, const char* op) {
  if (code == MPI_SUCCESS) return Status::Ok();
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return Error(std::string("MPI ") + op + ": " + std::string(text, static_cast<size_t>(len)));
}

StatusOr<std::vector<int>> ToInts(std::span<const int64_t> v, const char* op) {
  std::vector<int> out;
  for (int64_t x : v) {
    if (x < 0 || x > INT_MAX) return Error(std::string(op) + ": a count exceeds 2 GiB");
    out.push_back(static_cast<int>(x));
  }
  return out;
}

std::vector<int> Displacements(const std::vector<int>& counts) {
  std::vector<int> d(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) d[i] = d[i - 1] + counts[i - 1];
  return d;
}

class MpiComm final : public Communicator {
 public:
  MpiComm() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiComm() override { MPI_Finalize(); }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  Status AllToAllV(const void* send, std::span<const int64_t> send_bytes, void* recv,
                   std::span<const int64_t> recv_bytes) override {
    CHECK(static_cast<int>(send_bytes.size()) == size_ &&
          static_cast<int>(recv_bytes.size()) == size_);
    int64_t send_total = 0, recv_total = 0;
    for (int64_t b : send_bytes) send_total += b;
    for (int64_t b : recv_bytes) recv_total += b;
    if (send_total > INT_MAX || recv_total > INT_MAX)  // MPI's int displacements
      return Error("alltoallv: more than 2 GiB in one exchange; use smaller batches");
    MR_ASSIGN_OR_RETURN(std::vector<int> sc, ToInts(send_bytes, "alltoallv"));
    MR_ASSIGN_OR_RETURN(std::vector<int> rc, ToInts(recv_bytes, "alltoallv"));
    const std::vector<int> sd = Displacements(sc), rd = Displacements(rc);
    return MpiStatus(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_BYTE, recv, rc.data(), rd.data(),
                                   MPI_BYTE, MPI_COMM_WORLD),
                     "alltoallv");
  }
  std::unique_ptr<Pending> StartAllToAllV(const void* send, std::vector<int64_t> send_bytes,
                                          void* recv, std::vector<int64_t> recv_bytes) override {
    // MPI_Ialltoallv: progresses inside MPI while this thread computes.
    class MpiPending final : public Pending {
     public:
      Status status;
      std::vector<int> sc, sd, rc, rd;
      MPI_Request request = MPI_REQUEST_NULL;
      Status Wait() override {
        if (!status.ok() || request == MPI_REQUEST_NULL) return status;
        return MpiStatus(MPI_Wait(&request, MPI_STATUS_IGNORE), "ialltoallv wait");
      }
    };
    auto p = std::make_unique<MpiPending>();
    int64_t send_total = 0, recv_total = 0;
    for (int64_t b : send_bytes) send_total += b;
    for (int64_t b : recv_bytes) recv_total += b;
    if (send_total > INT_MAX || recv_total > INT_MAX) {
      p->status = Error("ialltoallv: more than 2 GiB in one exchange; use smaller batches");
      return p;
    }
    auto sc = ToInts(send_bytes, "ialltoallv"), rc = ToInts(recv_bytes, "ialltoallv");
    p->sc = *sc;
    p->rc = *rc;
    p->sd = Displacements(p->sc);
    p->rd = Displacements(p->rc);
    p->status = MpiStatus(MPI_Ialltoallv(send, p->sc.data(), p->sd.data(), MPI_BYTE, recv,
                                         p->rc.data(), p->rd.data(), MPI_BYTE, MPI_COMM_WORLD,
                                         &p->request),
                          "ialltoallv");
    return p;
  }
  Status AllGather(const void* in, int64_t bytes, void* out) override {
    if (bytes > INT_MAX) return Error("allgather: more than 2 GiB per rank");
    return MpiStatus(MPI_Allgather(in, static_cast<int>(bytes), MPI_BYTE, out,
                                   static_cast<int>(bytes), MPI_BYTE, MPI_COMM_WORLD),
                     "allgather");
  }
  Status AllReduceSum(std::span<double> values) override {
    // Gather and add in rank order: every rank gets the same bits whatever MPI's reduction tree.
    std::vector<double> all(values.size() * static_cast<size_t>(size_));
    MR_RETURN_IF_ERROR(AllGather(values.data(), static_cast<int64_t>(values.size() * sizeof(double)),
                                 all.data()));
    for (size_t i = 0; i < values.size(); ++i) {
      double s = 0;
      for (int r = 0; r < size_; ++r) s += all[r * values.size() + i];
      values[i] = s;
    }
    return Status::Ok();
  }
  Status Barrier() override { return MpiStatus(MPI_Barrier(MPI_COMM_WORLD), "barrier"); }
  Status Send(int dest, int tag, const void* data, int64_t bytes) override {
    if (bytes > INT_MAX) return Error("send: more than 2 GiB");
    return MpiStatus(MPI_Send(data, static_cast<int>(bytes), MPI_BYTE, dest, tag, MPI_COMM_WORLD),
                     "send");
  }
  Status Recv(int source, int tag, void* data, int64_t bytes) override {
    if (bytes > INT_MAX) return Error("recv: more than 2 GiB");
    MPI_Status status;
    MR_RETURN_IF_ERROR(MpiStatus(
        MPI_Recv(data, static_cast<int>(bytes), MPI_BYTE, source, tag, MPI_COMM_WORLD, &status),
        "recv"));
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    if (count != bytes) {
      return Error("recv: rank " + std::to_string(source) + " sent " + std::to_string(count) +
                   " bytes, expected " + std::to_string(bytes));
    }
    return Status::Ok();
  }
  void Abort(const Status& why) override {
    std::fprintf(stderr, "moerack: rank %d: %s\n", rank_, why.message().c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace

StatusOr<std::unique_ptr<Communicator>> MpiWorld() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return Error("MPI is already initialised in this process");
  int provided = 0;
  MR_RETURN_IF_ERROR(
      MpiStatus(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init"));
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return std::unique_ptr<Communicator>(std::make_unique<MpiComm>());
}

#endif

}  // namespace moerack
