// cram-hmac-alg challenge-response: both nodes run the full flow through real
// encoded packets; right secret passes, wrong secret / alg / reflection is refused.
#include "protocol/auth.h"

#include <gtest/gtest.h>

#include "protocol/dispatch.h"

namespace bsr::protocol {
namespace {

struct Node {
  uint16_t id;
  std::string alg;
  std::string secret;
  std::vector<uint8_t> challenge;
};

template <typename T>
T Wire(const T& p) {
  auto frame = EncodePacket(p);
  StreamDecoder dec;
  dec.Feed(frame);
  auto f = dec.Next();
  EXPECT_TRUE(f.ok() && f->has_value());
  auto packet = DecodePacket(**f, SocketKind::kData);
  EXPECT_TRUE(packet.ok());
  return std::get<T>(*packet);
}

// Runs the flow one way: `checker` verifies `responder`. Returns checker's verdict.
Status Authenticate(const Node& checker, const Node& responder) {
  AuthChallenge challenge = Wire(AuthChallenge{checker.alg, checker.challenge});
  BSR_RETURN_IF_ERROR(CheckPeerChallenge(responder.alg, responder.challenge, challenge));
  BSR_ASSIGN_OR_RETURN(auto digest, ComputeAuthResponse(responder.alg, responder.secret,
                                                        challenge.challenge, responder.id));
  AuthResponse response = Wire(AuthResponse{digest});
  return VerifyAuthResponse(checker.alg, checker.secret, checker.challenge, responder.id,
                            response.digest);
}

Node MakeNode(uint16_t id, std::string alg, std::string secret) {
  auto c = MakeChallenge();
  EXPECT_TRUE(c.ok());
  return Node{id, std::move(alg), std::move(secret), *c};
}

TEST(Auth, RightSecretPassesForEveryAlg) {
  for (std::string alg : {"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "hmac(sha256)"}) {
    SCOPED_TRACE(alg);
    Node a = MakeNode(0, alg, "s3cret");
    Node b = MakeNode(1, alg, "s3cret");
    EXPECT_TRUE(Authenticate(a, b).ok());
    EXPECT_TRUE(Authenticate(b, a).ok());
    auto size = HmacSize(alg);
    ASSERT_TRUE(size.ok());
    auto digest = ComputeAuthResponse(alg, "s3cret", a.challenge, 1);
    ASSERT_TRUE(digest.ok());
    EXPECT_EQ(digest->size(), *size);
  }
}

TEST(Auth, WrongSecretFailsWithClearMessage) {
  Node a = MakeNode(0, "sha256", "right");
  Node b = MakeNode(1, "sha256", "wrong");
  for (const Status& s : {Authenticate(a, b), Authenticate(b, a)}) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), Errc::kPermission);
    EXPECT_NE(s.message().find("shared-secret"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("authentication of peer node-id"), std::string::npos);
  }
}

TEST(Auth, ResponseIsBoundToChallengeAndNode) {
  Node a = MakeNode(0, "sha1", "k");
  auto digest = ComputeAuthResponse("sha1", "k", a.challenge, 1);
  ASSERT_TRUE(digest.ok());
  EXPECT_TRUE(VerifyAuthResponse("sha1", "k", a.challenge, 1, *digest).ok());
  // Another responder id, another challenge, a truncated or flipped digest: refused.
  EXPECT_FALSE(VerifyAuthResponse("sha1", "k", a.challenge, 2, *digest).ok());
  auto other = MakeChallenge();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*other, a.challenge);
  EXPECT_FALSE(VerifyAuthResponse("sha1", "k", *other, 1, *digest).ok());
  auto cut = *digest;
  cut.pop_back();
  EXPECT_FALSE(VerifyAuthResponse("sha1", "k", a.challenge, 1, cut).ok());
  auto flipped = *digest;
  flipped[0] ^= 1;
  EXPECT_FALSE(VerifyAuthResponse("sha1", "k", a.challenge, 1, flipped).ok());
}

TEST(Auth, ReflectedChallengeAndAlgMismatchAreRefused) {
  Node a = MakeNode(0, "sha256", "k");
  Status reflected =
      CheckPeerChallenge("sha256", a.challenge, AuthChallenge{"sha256", a.challenge});
  ASSERT_FALSE(reflected.ok());
  EXPECT_NE(reflected.message().find("our own challenge"), std::string::npos);
  Node b = MakeNode(1, "sha1", "k");
  Status s = Authenticate(a, b);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cram-hmac-alg is 'sha1' here but 'sha256' on the peer"),
            std::string::npos)
      << s.message();
}

TEST(Auth, UnknownAlgIsAClearError) {
  Status s = CheckHmacAlg("whirlpool9");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("unknown cram-hmac-alg 'whirlpool9' (known: md5, sha1"),
            std::string::npos)
      << s.message();
  EXPECT_FALSE(ComputeAuthResponse("crc32c", "k", std::vector<uint8_t>(64), 0).ok());
  EXPECT_TRUE(CheckHmacAlg("sha512").ok());
}

TEST(Auth, DigestAlgs) {
  std::vector<uint8_t> data = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  auto crc = ComputeDigest("crc32c", data);
  ASSERT_TRUE(crc.ok());
  EXPECT_EQ(*crc, (std::vector<uint8_t>{0xE3, 0x06, 0x92, 0x83}));
  auto sha1 = ComputeDigest("sha1", data);
  ASSERT_TRUE(sha1.ok());
  EXPECT_EQ(sha1->size(), 20u);
  EXPECT_EQ((*sha1)[0], 0xf7);  // sha1("123456789") = f7c3bc1d...
  EXPECT_EQ((*sha1)[1], 0xc3);
  EXPECT_TRUE(CheckDigestAlg("md5").ok());
  Status bad = CheckDigestAlg("nope");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("unknown digest algorithm 'nope'"), std::string::npos);
  EXPECT_FALSE(CheckDigestAlg("").ok());
}

}  // namespace
}  // namespace bsr::protocol
