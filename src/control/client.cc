#include "control/client.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <cstring>

namespace bsr::control {

std::string ResolveRunDir(const std::string& run_dir_flag) {
  if (!run_dir_flag.empty()) return run_dir_flag;
  if (const char* e = std::getenv("BSR_RUN_DIR"); e && *e) return e;
  return "/run/bsr";
}

std::string ResolveSocketPath(const std::string& socket_flag, const std::string& run_dir_flag) {
  if (!socket_flag.empty()) return socket_flag;
  if (const char* e = std::getenv("BSR_SOCKET"); e && *e) return e;
  return ResolveRunDir(run_dir_flag) + "/bsrd.sock";
}

Result<Client> Client::Connect(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return Error(Errc::kInvalidArgument, "control socket path too long: {}", path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error(Errc::kIo, "socket: {}", std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    return Error(e == ENOENT || e == ECONNREFUSED ? Errc::kNotFound : Errc::kIo,
                 "cannot reach bsrd at {}: {} (is bsrd running? see --socket / BSR_SOCKET)", path,
                 std::strerror(e));
  }
  return Client(std::move(fd));
}

Status Client::Send(const nlohmann::json& j) {
  auto frame = EncodeFrame(j);
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t n = ::send(fd_.get(), frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error(Errc::kIo, "control socket write: {}", std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<nlohmann::json> Client::Receive() {
  for (;;) {
    BSR_ASSIGN_OR_RETURN(auto frame, decoder_.Next());
    if (frame) return std::move(*frame);
    uint8_t buf[65536];
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error(Errc::kIo, "control socket read: {}", std::strerror(errno));
    if (n == 0) return Error(Errc::kIo, "bsrd closed the control connection");
    decoder_.Feed({buf, static_cast<size_t>(n)});
  }
}

Result<Reply> Client::Call(const Request& request) {
  BSR_RETURN_IF_ERROR(Send(ToJson(request)));
  BSR_ASSIGN_OR_RETURN(auto j, Receive());
  return ReplyFromJson(j);
}

Result<Reply> Client::Stream(const Request& request,
                             const std::function<bool(const std::string&)>& on_line) {
  BSR_RETURN_IF_ERROR(Send(ToJson(request)));
  for (;;) {
    BSR_ASSIGN_OR_RETURN(auto j, Receive());
    if (j.is_object() && j.contains("event") && j["event"].is_string()) {
      if (!on_line(j["event"].get<std::string>())) return Reply{};
      continue;
    }
    return ReplyFromJson(j);
  }
}

}  // namespace bsr::control
