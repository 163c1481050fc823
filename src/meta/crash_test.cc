// Crash test: the storage stops after the N-th write, for every N over a workload; the
// metadata must always open again and cover every block it promised to cover.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <random>

#include "common/temp_dir.h"
#include "meta/metadata.h"
#include "meta/test_util.h"

namespace bsr::meta {
namespace {

constexpr uint64_t kDev = uint64_t{96} << 20;  // 24 extents, al-extents 7: evictions
constexpr int kSlots = 2;

// Sparse in-memory device (4 KiB pages, absent = zero): cheap to copy per crash point.
class SparseIo final : public MetaIo {
 public:
  explicit SparseIo(uint64_t size) : size_(size) {}
  Status Read(uint64_t offset, std::span<uint8_t> data) override {
    if (offset > size_ || data.size() > size_ - offset) return Error(Errc::kIo, "read beyond end");
    for (size_t done = 0; done < data.size();) {
      uint64_t pos = offset + done;
      size_t in_page = pos % kBlockSize;
      size_t n = std::min<size_t>(kBlockSize - in_page, data.size() - done);
      auto it = pages_.find(pos / kBlockSize);
      if (it == pages_.end()) {
        std::memset(data.data() + done, 0, n);
      } else {
        std::memcpy(data.data() + done, it->second.data() + in_page, n);
      }
      done += n;
    }
    return Status::Ok();
  }
  Status Write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset > size_ || data.size() > size_ - offset) {
      return Error(Errc::kIo, "write beyond end");
    }
    for (size_t done = 0; done < data.size();) {
      uint64_t pos = offset + done;
      size_t in_page = pos % kBlockSize;
      size_t n = std::min<size_t>(kBlockSize - in_page, data.size() - done);
      auto& page = pages_[pos / kBlockSize];
      if (page.empty()) page.resize(kBlockSize, 0);
      std::memcpy(page.data() + in_page, data.data() + done, n);
      done += n;
    }
    return Status::Ok();
  }
  Status Flush() override { return Status::Ok(); }
  uint64_t Size() const override { return size_; }
  std::string Name() const override { return "sparse"; }

 private:
  uint64_t size_;
  std::map<uint64_t, std::vector<uint8_t>> pages_;
};

// Bits as bytes, looped over raw pointers: the sanitizer build runs at -O0, where
// vector<bool>'s iterators made this model most of the test's time.
using Bits = std::vector<uint8_t>;

struct Model {
  std::vector<Bits> durable;  // per slot: bits that must survive a crash
  std::vector<Bits> pending;  // set, durable after the next write-back
  std::deque<std::pair<uint64_t, uint64_t>> inflight;
  uint64_t committed_uuid = kUuidJustCreated;
  uint64_t attempted_uuid = kUuidJustCreated;
  bool stopped = false;

  explicit Model(uint64_t bits) : durable(kSlots, Bits(bits)), pending(kSlots, Bits(bits)) {}
  void Mark(Bits& v, uint64_t first, uint64_t count) {
    uint64_t end = std::min<uint64_t>(first + count, v.size());
    if (first < end) std::memset(v.data() + first, 1, end - first);
  }
  void Unmark(Bits& v, uint64_t first, uint64_t count) {
    uint64_t end = std::min<uint64_t>(first + count, v.size());
    if (first < end) std::memset(v.data() + first, 0, end - first);
  }
  void Promote() {
    for (int s = 0; s < kSlots; ++s) {
      uint8_t* d = durable[s].data();
      const uint8_t* p = pending[s].data();
      for (size_t b = 0, n = pending[s].size(); b < n; ++b) d[b] |= p[b];
      std::memset(pending[s].data(), 0, pending[s].size());
    }
  }
};

SparseIo MakeBase() {
  SparseIo base(kDev);
  CreateOptions c;
  c.max_peers = kSlots;
  c.node_id = 0;
  c.al.extents = 7;
  EXPECT_TRUE(Metadata::Create(base, c).ok());
  FaultPlan plan;  // no faults: only to lend `base` without giving up ownership
  {
    auto m = Metadata::Open(std::make_unique<FaultIo>(&base, &plan), OpenOptions{});
    EXPECT_TRUE(m.ok());
    EXPECT_TRUE((*m)->AssignPeerSlot(1, false).ok());
    EXPECT_TRUE((*m)->AssignPeerSlot(2, false).ok());
    EXPECT_TRUE((*m)->Close().ok());
  }
  return base;
}

// Runs the workload until the storage refuses a write; the model records what must hold.
void RunWorkload(MetaIo* disk, FaultPlan* plan, Model* model) {
  std::mt19937_64 rng(20261121);
  auto open = [&]() -> std::unique_ptr<Metadata> {
    auto m = Metadata::Open(std::make_unique<FaultIo>(disk, plan), OpenOptions{});
    if (!m.ok()) {
      EXPECT_TRUE(plan->refused) << m.status().ToString();
      return nullptr;
    }
    return std::move(*m);
  };
  std::unique_ptr<Metadata> m = open();
  if (!m) return;
  uint64_t bits = m->data_bits();
  auto fail = [&](const Status& st) {
    EXPECT_TRUE(plan->refused) << "unexpected error without a crash: " << st.ToString();
    model->stopped = true;
  };
  for (int step = 0; step < 400 && !model->stopped; ++step) {
    uint64_t x = rng() % 100;
    if (x < 40) {
      uint64_t len = (rng() & 1) ? 4096 * (1 + rng() % 16) : kExtentSize + 4096 * (rng() % 64);
      uint64_t off = (rng() % (m->data_size() / 4096)) * 4096;
      if (off + len > m->data_size()) len = m->data_size() - off;
      auto r = m->BeginIo(off, len);
      if (!r.ok() && r.status().code() == Errc::kBusy && !model->inflight.empty()) {
        auto [o, l] = model->inflight.front();
        model->inflight.pop_front();
        ASSERT_TRUE(m->CompleteIo(o, l).ok());
        r = m->BeginIo(off, len);
      }
      if (!r.ok()) {
        if (r.status().code() == Errc::kBusy) continue;
        fail(r.status());
        break;
      }
      model->inflight.emplace_back(off, len);
      if (rng() & 1) {  // peer 2 disconnected: the write path marks its bits
        Status st = m->SetOutOfSync(1, off, len);
        ASSERT_TRUE(st.ok()) << st.ToString();
        model->Mark(model->durable[1], off / 4096, (len + 4095) / 4096);
      }
    } else if (x < 70) {
      if (model->inflight.empty()) continue;
      size_t i = rng() % model->inflight.size();
      auto [o, l] = model->inflight[i];
      model->inflight.erase(model->inflight.begin() + static_cast<long>(i));
      ASSERT_TRUE(m->CompleteIo(o, l).ok());
    } else if (x < 78) {
      int slot = static_cast<int>(rng() % kSlots);
      uint64_t first = rng() % bits, count = 1 + rng() % 3000;
      if (first + count > bits) count = bits - first;
      ASSERT_TRUE(m->SetBits(slot, first, count).ok());
      model->Mark(model->pending[slot], first, count);
    } else if (x < 79) {
      Status st = m->WriteDirtyBitmap();
      if (!st.ok()) {
        fail(st);
        break;
      }
      model->Promote();
    } else if (x < 88) {
      uint64_t first = rng() % bits, count = 1 + rng() % 2000;
      if (first + count > bits) count = bits - first;
      ASSERT_TRUE(m->ClearBits(0, first, count).ok());
      model->Unmark(model->durable[0], first, count);
      model->Unmark(model->pending[0], first, count);
    } else if (x < 94) {
      uint64_t uuid = 0x1000 + static_cast<uint64_t>(step);
      model->attempted_uuid = uuid;
      int track[] = {1};
      Status st = (rng() & 1) ? m->NewCurrentUuid(uuid, track) : m->SetCurrentUuid(uuid);
      if (!st.ok()) {
        fail(st);
        break;
      }
      model->committed_uuid = uuid;
    } else if (x < 95) {
      while (!model->inflight.empty()) {
        auto [o, l] = model->inflight.front();
        model->inflight.pop_front();
        ASSERT_TRUE(m->CompleteIo(o, l).ok());
      }
      Status st = m->Close();
      if (!st.ok()) {
        fail(st);
        break;
      }
      model->Promote();
      m = open();
      if (!m) {
        model->stopped = true;
        break;
      }
    } else {
      Status st = m->SetPeerFlags(0, kPeerConnectedOnce, 0);
      if (!st.ok()) {
        fail(st);
        break;
      }
    }
  }
}

void CheckAfterCrash(MetaIo* disk, const Model& model, const std::string& what) {
  OpenReport rep;
  FaultPlan no_faults;
  auto m = Metadata::Open(std::make_unique<FaultIo>(disk, &no_faults), OpenOptions{}, &rep);
  ASSERT_TRUE(m.ok()) << what << ": metadata does not open: " << m.status().ToString();
  uint64_t uuid = (*m)->superblock().current_uuid;
  EXPECT_TRUE(uuid == model.committed_uuid || uuid == model.attempted_uuid)
      << what << ": current uuid " << uuid;
  for (int s = 0; s < kSlots; ++s) {
    Bits need = model.durable[s];
    for (auto [o, l] : model.inflight) {
      for (uint64_t b = o / 4096; b < (o + l + 4095) / 4096; ++b) need[b] = 1;
    }
    uint64_t missing = 0, first_missing = 0;
    for (uint64_t b = 0; b < need.size(); ++b) {
      if (need[b] && !*(*m)->TestBit(s, b)) {
        if (!missing++) first_missing = b;
      }
    }
    ASSERT_EQ(missing, 0u) << what << ": slot " << s << " lost " << missing << " set bits, first "
                           << first_missing << "; " << rep.Summary();
  }
  ASSERT_TRUE((*m)->Close().ok()) << what;
}

TEST(CrashTest, EveryWritePointOpensAndCoversWrites) {
  SparseIo base = MakeBase();
  // Dry run: how many writes the workload does.
  FaultPlan count_plan;
  {
    SparseIo disk = base;
    Model model(kDev / 4096);
    RunWorkload(&disk, &count_plan, &model);
    ASSERT_FALSE(count_plan.refused);
  }
  uint64_t total = count_plan.writes;
  ASSERT_GT(total, 50u);
  for (bool tear : {false, true}) {
    for (uint64_t n = 0; n <= total; ++n) {
      SparseIo disk = base;
      FaultPlan plan{.write_limit = n, .tear = tear, .writes = 0, .refused = false};
      Model model(kDev / 4096);
      RunWorkload(&disk, &plan, &model);
      CheckAfterCrash(&disk, model,
                      fmt::format("crash after write {} of {}{}", n, total, tear ? " (torn)" : ""));
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  RecordProperty("write_points", static_cast<int>(total));
  std::printf("crash test: %llu write points, each plain and torn\n",
              static_cast<unsigned long long>(total));
}

// The same workload on real files (pwrite + fdatasync), crashing at a sample of points.
TEST(CrashTest, RealFileSample) {
  SparseIo base = MakeBase();
  TempDir dir;
  std::string path = (dir / "disk").string();
  // Only the metadata area (the device tail) differs from zero.
  const uint64_t tail = uint64_t{1} << 20;
  std::vector<uint8_t> tail_bytes(tail);
  ASSERT_TRUE(base.Read(kDev - tail, tail_bytes).ok());
  auto fresh = [&]() -> std::unique_ptr<MetaIo> {
    testing::MakeSparseFile(path, kDev);
    auto io = testing::OpenFile(path);
    EXPECT_TRUE(io->Write(kDev - tail, tail_bytes).ok());
    return io;
  };
  FaultPlan count_plan;
  {
    auto io = fresh();
    Model model(kDev / 4096);
    RunWorkload(io.get(), &count_plan, &model);
    ASSERT_FALSE(count_plan.refused);
  }
  uint64_t total = count_plan.writes;
  for (uint64_t n : {uint64_t{0}, uint64_t{5}, total / 3, total / 2, total - 1}) {
    auto io = fresh();
    FaultPlan plan{.write_limit = n, .tear = (n & 1) != 0, .writes = 0, .refused = false};
    Model model(kDev / 4096);
    RunWorkload(io.get(), &plan, &model);
    CheckAfterCrash(io.get(), model, fmt::format("file crash after write {} of {}", n, total));
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace bsr::meta
