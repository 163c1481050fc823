#include "common/status.h"

#include <gtest/gtest.h>

#include <memory>

namespace bsr {
namespace {

Result<int> Half(int v) {
  if (v % 2) return Error(Errc::kInvalidArgument, "{} is odd", v);
  return v / 2;
}

Result<int> Quarter(int v) {
  BSR_ASSIGN_OR_RETURN(int h, Half(v));
  return Half(h);
}

Status CheckEven(int v) {
  BSR_RETURN_IF_ERROR(Half(v).status());
  return Status::Ok();
}

TEST(Status, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(Status, ContextPrefixesMessage) {
  Status s = Error(Errc::kIo, "read failed at {}", 4096).WithContext("attach r0/0");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Errc::kIo);
  EXPECT_EQ(s.message(), "attach r0/0: read failed at 4096");
  EXPECT_EQ(s.ToString(), "attach r0/0: read failed at 4096 (I/O error)");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(Result, PropagatesErrors) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(5).code(), Errc::kInvalidArgument);
}

TEST(Result, HoldsMoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

}  // namespace
}  // namespace bsr
