#include "comm/local_comm.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "core/check.h"

namespace moerack {

class LocalComm final : public Communicator {
  enum Op { kAllToAllV = 1, kAllGather, kAllReduce, kBarrier };

  // After the first rendezvous: every rank must be in the same collective.
  Status SameOp(int op, const char* name) const {
    for (int s = 0; s < size(); ++s) {
      if (g_->posts_[s].op != op) {
        return Error(std::string(name) + ": rank " + std::to_string(s) +
                     " is in a different collective");
      }
    }
    return Status::Ok();
  }

 public:
  LocalComm(LocalCommGroup* group, int rank) : g_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->size_; }
  std::string name() const override { return "local"; }

  Status AllToAllV(const void* send, std::span<const int64_t> send_bytes, void* recv,
                   std::span<const int64_t> recv_bytes) override {
    CHECK(static_cast<int>(send_bytes.size()) == size() &&
          static_cast<int>(recv_bytes.size()) == size());
    g_->posts_[rank_] = {kAllToAllV, send, send_bytes.data(), 0, nullptr};
    MR_RETURN_IF_ERROR(g_->Barrier("alltoallv"));
    Status st = SameOp(kAllToAllV, "alltoallv");
    int64_t at = 0;
    for (int s = 0; s < size() && st.ok(); ++s) {
      const LocalCommGroup::Post& p = g_->posts_[s];
      int64_t offset = 0;
      for (int d = 0; d < rank_; ++d) offset += p.send_bytes[d];
      if (p.send_bytes[rank_] != recv_bytes[s]) {
        st = Error("alltoallv: rank " + std::to_string(s) + " sends " +
                   std::to_string(p.send_bytes[rank_]) + " bytes to rank " +
                   std::to_string(rank_) + ", which expects " + std::to_string(recv_bytes[s]));
        break;
      }
      if (recv_bytes[s] > 0)
        std::memcpy(static_cast<char*>(recv) + at, static_cast<const char*>(p.send) + offset,
                    static_cast<size_t>(recv_bytes[s]));
      at += recv_bytes[s];
    }
    MR_RETURN_IF_ERROR(g_->Barrier("alltoallv"));
    if (!st.ok()) g_->Abort(st.message());
    return st;
  }

  Status AllGather(const void* in, int64_t bytes, void* out) override {
    g_->posts_[rank_] = {kAllGather, in, nullptr, bytes, nullptr};
    MR_RETURN_IF_ERROR(g_->Barrier("allgather"));
    Status st = SameOp(kAllGather, "allgather");
    for (int s = 0; s < size() && st.ok(); ++s) {
      if (g_->posts_[s].bytes != bytes) {
        st = Error("allgather: rank " + std::to_string(s) + " contributes " +
                   std::to_string(g_->posts_[s].bytes) + " bytes, rank " + std::to_string(rank_) +
                   " " + std::to_string(bytes));
        break;
      }
      std::memcpy(static_cast<char*>(out) + s * bytes, g_->posts_[s].send, static_cast<size_t>(bytes));
    }
    MR_RETURN_IF_ERROR(g_->Barrier("allgather"));
    if (!st.ok()) g_->Abort(st.message());
    return st;
  }

  Status AllReduceSum(std::span<double> values) override {
    g_->posts_[rank_] = {kAllReduce, nullptr, nullptr, static_cast<int64_t>(values.size()),
                         values.data()};
    MR_RETURN_IF_ERROR(g_->Barrier("allreduce"));
    Status st = SameOp(kAllReduce, "allreduce");
    std::vector<double> sum(values.size(), 0.0);
    for (int s = 0; s < size() && st.ok(); ++s) {
      if (g_->posts_[s].bytes != static_cast<int64_t>(values.size())) {
        st = Error("allreduce: ranks disagree on the number of values");
        break;
      }
      for (size_t i = 0; i < values.size(); ++i) sum[i] += g_->posts_[s].values[i];
    }
    MR_RETURN_IF_ERROR(g_->Barrier("allreduce"));  // everyone has read the inputs
    if (!st.ok()) {
      g_->Abort(st.message());
      return st;
    }
    std::copy(sum.begin(), sum.end(), values.begin());
    return Status::Ok();
  }

  Status Barrier() override {
    g_->posts_[rank_] = {kBarrier, nullptr, nullptr, 0, nullptr};
    MR_RETURN_IF_ERROR(g_->Barrier("barrier"));
    const Status st = SameOp(kBarrier, "barrier");
    MR_RETURN_IF_ERROR(g_->Barrier("barrier"));
    if (!st.ok()) g_->Abort(st.message());
    return st;
  }

  Status Send(int dest, int tag, const void* data, int64_t bytes) override {
    if (dest < 0 || dest >= size()) return Error("send: no rank " + std::to_string(dest));
    std::vector<uint8_t> msg(static_cast<const uint8_t*>(data),
                             static_cast<const uint8_t*>(data) + bytes);
    {
      std::lock_guard<std::mutex> lock(g_->mu_);
      g_->mail_[{rank_, dest, tag}].push_back(std::move(msg));
    }
    g_->cv_.notify_all();
    return Status::Ok();
  }

  Status Recv(int source, int tag, void* data, int64_t bytes) override {
    if (source < 0 || source >= size()) return Error("recv: no rank " + std::to_string(source));
    std::unique_lock<std::mutex> lock(g_->mu_);
    auto& queue = g_->mail_[{source, rank_, tag}];
    const bool ok = g_->cv_.wait_for(lock, std::chrono::duration<double>(g_->timeout_s_),
                                     [&] { return g_->aborted_ || !queue.empty(); });
    if (g_->aborted_) return Error("recv: aborted: " + g_->abort_reason_);
    if (!ok) return Error("recv: timed out waiting for rank " + std::to_string(source));
    std::vector<uint8_t> msg = std::move(queue.front());
    queue.pop_front();
    if (static_cast<int64_t>(msg.size()) != bytes) {
      return Error("recv: rank " + std::to_string(source) + " sent " +
                   std::to_string(msg.size()) + " bytes, expected " + std::to_string(bytes));
    }
    std::memcpy(data, msg.data(), msg.size());
    return Status::Ok();
  }

  void Abort(const Status& why) override {
    g_->Abort("rank " + std::to_string(rank_) + ": " + why.message());
  }

 private:
  LocalCommGroup* g_;
  int rank_;
};

LocalCommGroup::LocalCommGroup(int size, double timeout_s)
    : size_(size), timeout_s_(timeout_s), posts_(static_cast<size_t>(size)) {
  CHECK_GE(size, 1);
}

std::unique_ptr<Communicator> LocalCommGroup::Rank(int r) {
  CHECK(r >= 0 && r < size_);
  return std::make_unique<LocalComm>(this, r);
}

Status LocalCommGroup::Barrier(const char* op) {
  std::unique_lock<std::mutex> lock(mu_);
  if (aborted_) return Error(std::string(op) + ": aborted: " + abort_reason_);
  const uint64_t gen = generation_;
  if (++arrived_ == size_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return Status::Ok();
  }
  const bool ok = cv_.wait_for(lock, std::chrono::duration<double>(timeout_s_),
                               [&] { return aborted_ || generation_ != gen; });
  if (generation_ != gen) return Status::Ok();
  if (aborted_) return Error(std::string(op) + ": aborted: " + abort_reason_);
  if (!ok) {
    aborted_ = true;
    abort_reason_ = std::string(op) + " timed out after " + std::to_string(timeout_s_) + " s";
    cv_.notify_all();
  }
  return Error(std::string(op) + ": " + abort_reason_);
}

void LocalCommGroup::Abort(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!aborted_) {
      aborted_ = true;
      abort_reason_ = why;
    }
  }
  cv_.notify_all();
}

Status LocalCommGroup::Run(int size, const std::function<Status(Communicator&)>& fn,
                           double timeout_s) {
  LocalCommGroup group(size, timeout_s);
  std::vector<Status> results(static_cast<size_t>(size), Status::Ok());
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<Communicator> comm = group.Rank(r);
      results[r] = fn(*comm);
      if (!results[r].ok()) comm->Abort(results[r]);
    });
  }
  for (auto& t : threads) t.join();
  // The root cause is the first rank that failed for a reason other than the abort.
  for (int r = 0; r < size; ++r) {
    if (!results[r].ok() && results[r].message().find("aborted") == std::string::npos)
      return Error("rank " + std::to_string(r) + ": " + results[r].message());
  }
  for (int r = 0; r < size; ++r) {
    if (!results[r].ok()) return Error("rank " + std::to_string(r) + ": " + results[r].message());
  }
  return Status::Ok();
}

}  // namespace moerack
