// Challenge-response authentication (cram-hmac-alg + shared-secret) and the digest
// algorithms named in net options (data-integrity-alg, csums-alg, verify-alg), on top
// of OpenSSL EVP. Pure functions; any thread.
//
// Flow on each socket, both sides at once: send AuthChallenge{alg, MakeChallenge()};
// on the peer's challenge send AuthResponse{ComputeAuthResponse(...)}; on the peer's
// response call VerifyAuthResponse and send AuthResult; both results must be accepted.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "protocol/handshake_packets.h"

namespace bsr::protocol {

inline constexpr size_t kChallengeSize = 64;

// Checks a cram-hmac-alg name: md5, sha1, sha224, sha256, sha384, sha512 (also in the
// kernel spelling "hmac(sha256)"). Unknown -> kInvalidArgument naming the known ones.
Status CheckHmacAlg(std::string_view alg);
// Digest size of a valid cram-hmac-alg in bytes.
Result<size_t> HmacSize(std::string_view alg);

// kChallengeSize random bytes from OpenSSL's CSPRNG.
Result<std::vector<uint8_t>> MakeChallenge();

// HMAC(secret, "bsr-auth" || challenge || u16 responder_node_id): the response the
// node `responder_node_id` sends to a challenge it received. Binding the responder's
// id stops a peer from reflecting our own challenge back at us.
Result<std::vector<uint8_t>> ComputeAuthResponse(std::string_view alg, std::string_view secret,
                                                 std::span<const uint8_t> challenge,
                                                 uint16_t responder_node_id);

// Checks the peer's response to the challenge we sent (constant-time compare).
// kPermission with a clear message when it does not match (wrong shared-secret).
Status VerifyAuthResponse(std::string_view alg, std::string_view secret,
                          std::span<const uint8_t> my_challenge, uint16_t peer_node_id,
                          std::span<const uint8_t> response);

// Checks the peer's AuthChallenge before answering it: same cram-hmac-alg as ours
// (else "cram-hmac-alg differs: 'sha1' here but 'sha256' on the peer") and not
// our own challenge reflected back.
Status CheckPeerChallenge(std::string_view my_alg, std::span<const uint8_t> my_challenge,
                          const AuthChallenge& peer);

// Digest algorithms of data-integrity-alg / csums-alg / verify-alg: "crc32c" (4 bytes,
// big-endian) or an OpenSSL digest name (md5, sha1, sha256, sha512, ...).
Status CheckDigestAlg(std::string_view alg);
Result<std::vector<uint8_t>> ComputeDigest(std::string_view alg, std::span<const uint8_t> data);

}  // namespace bsr::protocol
