#include "storage/completion_scope.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "common/temp_dir.h"

namespace bsr::storage {
namespace {

class CompletionScopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "disk.img").string();
    std::vector<char> zero(1 << 20);
    std::ofstream(path_, std::ios::binary).write(zero.data(), zero.size());
    BackingOptions options;
    options.cache = CacheMode::kBuffered;
    options.inline_slow = std::chrono::seconds(10);  // a loaded machine must not trip it
    auto dev = BackingDevice::Open(io_, path_, options);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    dev_ = std::move(dev).value();
  }

  TempDir dir_;
  std::string path_;
  asio::io_context io_;
  std::unique_ptr<BackingDevice> dev_;
  std::vector<uint8_t> data_ = std::vector<uint8_t>(4096, 0x5a);
};

// Inline completions run at RunQueued, after the call, without the io_context.
TEST_F(CompletionScopeTest, InlineCompletionsRunAtRunQueuedNotInsideTheCall) {
  std::vector<int> order;
  {
    CompletionScope scope(io_);
    dev_->Write(0, data_, false, [&](IoResult r) {
      EXPECT_TRUE(r.ok()) << r.status.ToString();
      order.push_back(1);
      // A completion that starts more I/O: its completion runs in the same RunQueued.
      dev_->Write(4096, data_, false, [&](IoResult r2) {
        EXPECT_TRUE(r2.ok());
        order.push_back(3);
      });
    });
    // Out of range: the error completion is deferred as well.
    dev_->Write(2 << 20, data_, false, [&](IoResult r) {
      EXPECT_EQ(r.err, EINVAL);
      order.push_back(2);
    });
    EXPECT_TRUE(order.empty());  // never inside Write
    scope.RunQueued();
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  }
  EXPECT_EQ(io_.poll(), 0u);  // nothing was posted
  EXPECT_EQ(dev_->stats().inline_writes, 2u);
}

// Without RunQueued (an exception left the scope), completions are posted as before;
// a nested scope is inert and a scope for another io_context takes nothing.
TEST_F(CompletionScopeTest, LeftoversArePostedAndNestedOrForeignScopesAreInert) {
  int done = 0;
  asio::io_context other;
  {
    CompletionScope outer(io_);
    {
      CompletionScope inner(io_);
      dev_->Write(0, data_, false, [&](IoResult) { ++done; });
      inner.RunQueued();
      EXPECT_EQ(done, 0);
    }
  }
  EXPECT_EQ(done, 0);
  EXPECT_EQ(io_.poll(), 1u);
  EXPECT_EQ(done, 1);
  io_.restart();
  {
    CompletionScope foreign(other);
    dev_->Write(0, data_, false, [&](IoResult) { ++done; });
    foreign.RunQueued();
    EXPECT_EQ(done, 1);
  }
  EXPECT_EQ(io_.poll(), 1u);
  EXPECT_EQ(done, 2);
}

// A device destroyed before RunQueued: its completions are dropped, as posted ones are.
TEST_F(CompletionScopeTest, DestroyedDeviceCompletionsAreDropped) {
  int done = 0;
  CompletionScope scope(io_);
  dev_->Write(0, data_, false, [&](IoResult) { ++done; });
  dev_.reset();
  scope.RunQueued();
  EXPECT_EQ(done, 0);
}

}  // namespace
}  // namespace bsr::storage
