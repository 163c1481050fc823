// CompletionScope: lets the caller of BackingDevice run completions of requests done
// inline as soon as its own call returns, instead of from a handler posted to the
// io_context. Thread-local; used on the io_context thread that owns the devices.
#pragma once

#include <asio/io_context.hpp>
#include <functional>

#include "storage/backing_device.h"

namespace bsr::storage {

// While a scope for `io` is open on this thread, BackingDevice queues the completions
// it would post to `io` (inline page-cache I/O, refused requests) in the scope, and
// RunQueued() runs them. A posted handler runs only after the io_context's queue
// reaches it, which on a busy loop means after a poll of the reactor (an epoll_wait
// system call) that a request served from the page cache never needed.
// Callbacks still never run inside the BackingDevice call that started the request:
// the caller decides when (after everything up its stack has returned). A scope opened
// while another is open on the thread is inert; the outer one runs everything.
class CompletionScope {
 public:
  explicit CompletionScope(asio::io_context& io);
  // Completions RunQueued() did not run (an exception left the scope early, or they
  // were queued after it) are posted to the io_context as before.
  ~CompletionScope();
  CompletionScope(const CompletionScope&) = delete;
  CompletionScope& operator=(const CompletionScope&) = delete;

  // Runs the queued completions in the order they were queued, including those that
  // the callbacks queue meanwhile. A no-op for an inert scope.
  void RunQueued();

  // BackingDevice's hook: takes `done` (to be called with `result` while *alive)
  // when a scope for `io` is open on this thread; false otherwise (then post it).
  static bool Defer(asio::io_context& io, const std::shared_ptr<bool>& alive, IoCallback& done,
                    IoResult& result);

 private:
  bool owner_ = false;
};

}  // namespace bsr::storage
