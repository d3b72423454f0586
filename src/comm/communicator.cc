#include "comm/communicator.h"

#include <functional>
#include <thread>

namespace moerack {

namespace {
class ThreadPending final : public Communicator::Pending {
 public:
  explicit ThreadPending(std::function<Status()> fn)
      : thread_([this, fn = std::move(fn)] { status_ = fn(); }) {}
  ~ThreadPending() override {
    if (thread_.joinable()) thread_.join();
  }
  Status Wait() override {
    if (thread_.joinable()) thread_.join();
    return status_;
  }

 private:
  Status status_;
  std::thread thread_;
};
}  // namespace

std::unique_ptr<Communicator::Pending> Communicator::StartAllToAllV(
    const void* send, std::vector<int64_t> send_bytes, void* recv, std::vector<int64_t> recv_bytes) {
  return std::make_unique<ThreadPending>(
      [this, send, recv, sb = std::move(send_bytes), rb = std::move(recv_bytes)] {
        return AllToAllV(send, sb, recv, rb);
      });
}

}  // namespace moerack
