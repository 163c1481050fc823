#include "protocol/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>

#include "common/bytes.h"
#include "common/crc32c.h"

namespace bsr::protocol {
namespace {

constexpr std::array<std::string_view, 6> kHmacAlgs = {"md5",    "sha1",   "sha224",
                                                       "sha256", "sha384", "sha512"};

std::string_view StripHmac(std::string_view alg) {
  if (alg.size() > 6 && alg.starts_with("hmac(") && alg.ends_with(")")) {
    return alg.substr(5, alg.size() - 6);
  }
  return alg;
}

Result<const EVP_MD*> HmacMd(std::string_view alg) {
  std::string_view base = StripHmac(alg);
  for (std::string_view known : kHmacAlgs) {
    if (base == known) {
      const EVP_MD* md = EVP_get_digestbyname(std::string(known).c_str());
      if (md == nullptr) {
        return Error(Errc::kUnsupported, "cram-hmac-alg '{}' is not available in this OpenSSL",
                     alg);
      }
      return md;
    }
  }
  return Error(Errc::kInvalidArgument,
               "unknown cram-hmac-alg '{}' (known: md5, sha1, sha224, sha256, sha384, sha512)",
               alg);
}

}  // namespace

Status CheckHmacAlg(std::string_view alg) {
  return HmacMd(alg).status();
}

Result<size_t> HmacSize(std::string_view alg) {
  BSR_ASSIGN_OR_RETURN(const EVP_MD* md, HmacMd(alg));
  return static_cast<size_t>(EVP_MD_get_size(md));
}

Result<std::vector<uint8_t>> MakeChallenge() {
  std::vector<uint8_t> c(kChallengeSize);
  if (RAND_bytes(c.data(), static_cast<int>(c.size())) != 1) {
    return Error(Errc::kInternal, "auth: OpenSSL RAND_bytes failed to make a challenge");
  }
  return c;
}

Result<std::vector<uint8_t>> ComputeAuthResponse(std::string_view alg, std::string_view secret,
                                                 std::span<const uint8_t> challenge,
                                                 uint16_t responder_node_id) {
  BSR_ASSIGN_OR_RETURN(const EVP_MD* md, HmacMd(alg));
  std::vector<uint8_t> msg = {'b', 's', 'r', '-', 'a', 'u', 't', 'h'};
  msg.insert(msg.end(), challenge.begin(), challenge.end());
  msg.push_back(static_cast<uint8_t>(responder_node_id >> 8));
  msg.push_back(static_cast<uint8_t>(responder_node_id));
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (HMAC(md, secret.data(), static_cast<int>(secret.size()), msg.data(), msg.size(), out.data(),
           &len) == nullptr) {
    return Error(Errc::kInternal, "auth: OpenSSL HMAC({}) failed", alg);
  }
  out.resize(len);
  return out;
}

Status VerifyAuthResponse(std::string_view alg, std::string_view secret,
                          std::span<const uint8_t> my_challenge, uint16_t peer_node_id,
                          std::span<const uint8_t> response) {
  BSR_ASSIGN_OR_RETURN(auto expected, ComputeAuthResponse(alg, secret, my_challenge, peer_node_id));
  if (response.size() != expected.size() ||
      CRYPTO_memcmp(response.data(), expected.data(), expected.size()) != 0) {
    return Error(Errc::kPermission,
                 "authentication of peer node-id {} failed: its {} response to our challenge "
                 "does not match (different shared-secret?)",
                 peer_node_id, alg);
  }
  return Status::Ok();
}

Status CheckPeerChallenge(std::string_view my_alg, std::span<const uint8_t> my_challenge,
                          const AuthChallenge& peer) {
  if (StripHmac(peer.alg) != StripHmac(my_alg)) {
    return Error(Errc::kPermission,
                 "authentication refused: cram-hmac-alg is '{}' here but '{}' on the peer", my_alg,
                 peer.alg);
  }
  if (peer.challenge.size() == my_challenge.size() &&
      CRYPTO_memcmp(peer.challenge.data(), my_challenge.data(), my_challenge.size()) == 0) {
    return Error(Errc::kPermission, "authentication refused: the peer sent our own challenge back");
  }
  return Status::Ok();
}

namespace {

Result<const EVP_MD*> DigestMd(std::string_view alg) {
  const EVP_MD* md = alg.empty() ? nullptr : EVP_get_digestbyname(std::string(alg).c_str());
  if (md == nullptr) {
    return Error(Errc::kInvalidArgument,
                 "unknown digest algorithm '{}' (use crc32c, md5, sha1, sha256, sha512, ...)", alg);
  }
  if (EVP_MD_get_size(md) <= 0 || EVP_MD_get_size(md) > static_cast<int>(kMaxDigestSize)) {
    return Error(Errc::kInvalidArgument, "digest algorithm '{}' has an unusable size of {} bytes",
                 alg, EVP_MD_get_size(md));
  }
  return md;
}

}  // namespace

Status CheckDigestAlg(std::string_view alg) {
  if (alg == "crc32c") return Status::Ok();
  return DigestMd(alg).status();
}

Result<std::vector<uint8_t>> ComputeDigest(std::string_view alg, std::span<const uint8_t> data) {
  if (alg == "crc32c") {
    std::vector<uint8_t> out(4);
    StoreBe32(out.data(), Crc32c(data));
    return out;
  }
  BSR_ASSIGN_OR_RETURN(const EVP_MD* md, DigestMd(alg));
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) {
    return Error(Errc::kInternal, "OpenSSL digest {} failed", alg);
  }
  out.resize(len);
  return out;
}

}  // namespace bsr::protocol
