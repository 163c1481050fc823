// The daemon side of the control socket: validates each request against the
// command table and dispatches it, through one table keyed by command name, to the
// Node. Runs on the daemon's io_context thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "control/server.h"
#include "replication/node.h"

namespace bsr::control {

class Service {
 public:
  explicit Service(replication::Node& node);
  ~Service();

  void Handle(std::shared_ptr<Session> session, Request request);
  // Answers `request` (every command except events2) through `done`, on the io thread.
  void Call(const Request& request, std::function<void(Reply)> done);

 private:
  using Done = std::function<void(Reply)>;
  using Handler = std::function<void(const Request&, Done)>;
  void StartEvents(std::shared_ptr<Session> session, const Request& request);

  Reply NewResource(const Request& r);
  Reply ResourceOptions(const Request& r);
  Reply DelResource(const Request& r);
  Reply NewMinor(const Request& r);
  Reply DelMinor(const Request& r);
  Reply Attach(const Request& r);
  Reply DiskOptions(const Request& r);
  Reply Detach(const Request& r);
  Reply NewPeer(const Request& r);
  Reply NetOptions(const Request& r);
  Reply PeerDeviceOptions(const Request& r);
  Reply DelPeer(const Request& r);
  Reply NewPath(const Request& r);
  Reply DelPath(const Request& r);
  Reply Connect(const Request& r);
  Reply Disconnect(const Request& r);
  void Primary(const Request& r, Done done);
  void Secondary(const Request& r, Done done);
  void Down(const Request& r, Done done);
  Reply StatusCmd(const Request& r);
  Reply Show(const Request& r);

  replication::Node& node_;
  std::map<std::string, Handler> table_;
};

}  // namespace bsr::control
