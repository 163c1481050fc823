// The one path every state change takes: validate -> apply -> notify. A change is
// expressed as a mutation of a copy of the current ResourceState; it is applied
// only if ValidateTransition accepts it, and listeners see (old, new) afterwards.
// Owned by the resource's strand: not thread-safe by design (no locks in the
// protocol logic, ARCHITECTURE.md).
#pragma once

#include <functional>
#include <map>
#include <string_view>

#include "common/status.h"
#include "replication/resource_state.h"

namespace bsr::replication {

struct ChangeFlags {
  // The request comes from a peer's accepted cluster-wide change, or from our own
  // connection logic, not from an admin command: user-only restrictions do not apply.
  bool internal = false;
};

// Checks a proposed transition against bsr's rules. Returns an error whose message
// is the reason an admin sees ("State change failed: ...").
Status ValidateTransition(const ResourceState& old_state, const ResourceState& new_state,
                          ChangeFlags flags);

class StateEngine {
 public:
  using Mutation = std::function<void(ResourceState&)>;
  using Listener =
      std::function<void(const ResourceState& old_state, const ResourceState& new_state)>;

  explicit StateEngine(ResourceState initial) : state_(std::move(initial)) {}

  const ResourceState& state() const { return state_; }

  // Validates and applies `mutate`; on refusal the state is unchanged and the
  // Status carries the reason, prefixed by `what` (e.g. "primary").
  Status Change(std::string_view what, const Mutation& mutate, ChangeFlags flags = {});

  // Validates `mutate` without applying it (for callers that must do I/O between
  // the decision and the change, e.g. writing metadata flags before a promotion).
  Status Check(std::string_view what, const Mutation& mutate, ChangeFlags flags = {}) const;

  // Counters and other fields that no rule constrains (statistics) change here
  // without validation, and without notification.
  template <typename F>
  void UpdateStats(F&& f) {
    f(state_);
  }

  int Subscribe(Listener listener);
  void Unsubscribe(int id);

 private:
  ResourceState state_;
  std::map<int, Listener> listeners_;
  int next_listener_id_ = 1;
};

}  // namespace bsr::replication
