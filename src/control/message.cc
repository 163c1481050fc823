#include "control/message.h"

#include "common/bytes.h"

namespace bsr::control {

using nlohmann::json;

Reply Reply::Fail(const Status& s) {
  Reply r;
  r.exit_code = s.code() == Errc::kState ? kExitStateRefused : kExitInvalid;
  r.error = s.message();
  return r;
}

json ToJson(const Request& r) {
  return {{"cmd", r.cmd}, {"args", r.args}, {"opts", r.opts}};
}

Result<Request> RequestFromJson(const json& j) {
  Request r;
  if (!j.is_object() || !j.contains("cmd") || !j["cmd"].is_string()) {
    return Error(Errc::kProtocol, "control request without a command");
  }
  r.cmd = j["cmd"].get<std::string>();
  if (j.contains("args")) {
    if (!j["args"].is_array()) return Error(Errc::kProtocol, "control request: args not a list");
    for (const auto& a : j["args"]) {
      if (!a.is_string()) return Error(Errc::kProtocol, "control request: non-string argument");
      r.args.push_back(a.get<std::string>());
    }
  }
  if (j.contains("opts")) {
    if (!j["opts"].is_object()) return Error(Errc::kProtocol, "control request: opts not a map");
    for (const auto& [k, v] : j["opts"].items()) {
      if (!v.is_string())
        return Error(Errc::kProtocol, "control request: option {} not a string", k);
      r.opts[k] = v.get<std::string>();
    }
  }
  return r;
}

json ToJson(const Reply& r) {
  json j = {{"exit", r.exit_code}, {"error", r.error}, {"output", r.output}};
  if (!r.data.is_null()) j["data"] = r.data;
  return j;
}

Result<Reply> ReplyFromJson(const json& j) {
  if (!j.is_object() || !j.contains("exit") || !j["exit"].is_number_integer()) {
    return Error(Errc::kProtocol, "control reply without an exit code");
  }
  Reply r;
  r.exit_code = j["exit"].get<int>();
  if (j.contains("error") && j["error"].is_string()) r.error = j["error"].get<std::string>();
  if (j.contains("output") && j["output"].is_string()) r.output = j["output"].get<std::string>();
  if (j.contains("data")) r.data = j["data"];
  return r;
}

std::vector<uint8_t> EncodeFrame(const json& j) {
  std::string text = j.dump();
  std::vector<uint8_t> out(4 + text.size());
  StoreBe32(out.data(), static_cast<uint32_t>(text.size()));
  std::copy(text.begin(), text.end(), out.begin() + 4);
  return out;
}

void FrameDecoder::Feed(std::span<const uint8_t> bytes) {
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

Result<std::optional<json>> FrameDecoder::Next() {
  if (buf_.size() < 4) return std::optional<json>();
  uint32_t len = LoadBe32(buf_.data());
  if (len > kMaxFrameBytes) {
    return Error(Errc::kProtocol, "control frame of {} bytes exceeds the {} byte limit", len,
                 kMaxFrameBytes);
  }
  if (buf_.size() < 4 + size_t{len}) return std::optional<json>();
  json j = json::parse(buf_.begin() + 4, buf_.begin() + 4 + len, nullptr, false);
  buf_.erase(buf_.begin(), buf_.begin() + 4 + len);
  if (j.is_discarded()) return Error(Errc::kProtocol, "control frame is not valid JSON");
  return std::optional<json>(std::move(j));
}

}  // namespace bsr::control
