#include "storage/completion_scope.h"

#include <asio/post.hpp>
#include <utility>
#include <vector>

namespace bsr::storage {
namespace {

struct Deferred {
  std::shared_ptr<bool> alive;
  IoCallback done;
  IoResult result;
};

// The open scope of this thread. The vector keeps its capacity across scopes, so a
// completion costs no allocation once the thread has run a few.
struct ThreadQueue {
  asio::io_context* io = nullptr;
  std::vector<Deferred> items;
  size_t head = 0;
};
thread_local ThreadQueue tq;

}  // namespace

CompletionScope::CompletionScope(asio::io_context& io) {
  if (tq.io != nullptr) return;
  tq.io = &io;
  owner_ = true;
}

CompletionScope::~CompletionScope() {
  if (!owner_) return;
  for (size_t i = tq.head; i < tq.items.size(); ++i) {
    Deferred& d = tq.items[i];
    asio::post(*tq.io, [alive = std::move(d.alive), done = std::move(d.done),
                        result = std::move(d.result)]() mutable {
      if (*alive) done(std::move(result));
    });
  }
  tq.items.clear();
  tq.head = 0;
  tq.io = nullptr;
}

void CompletionScope::RunQueued() {
  if (!owner_) return;
  while (tq.head < tq.items.size()) {
    // Moved out first: a callback may queue more and so reallocate the vector.
    Deferred d = std::move(tq.items[tq.head]);
    ++tq.head;
    if (*d.alive) d.done(std::move(d.result));
  }
  tq.items.clear();
  tq.head = 0;
}

bool CompletionScope::Defer(asio::io_context& io, const std::shared_ptr<bool>& alive,
                            IoCallback& done, IoResult& result) {
  if (tq.io != &io) return false;
  tq.items.push_back(Deferred{alive, std::move(done), std::move(result)});
  return true;
}

}  // namespace bsr::storage
