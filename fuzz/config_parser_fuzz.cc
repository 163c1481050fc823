// libFuzzer target: the configuration parser, model builder, dump and planner must
// never crash on any input; a dump that loads must load again from its own output.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/adm_plan.h"
#include "config/config.h"
#include "config/dump.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto loaded = bsr::config::LoadString("fuzz.res", text);
  if (!loaded.ok()) return 0;
  std::string dumped = bsr::config::Dump(*loaded);
  auto again = bsr::config::LoadString("fuzz2.res", dumped);
  if (!again.ok() || !(again->config == loaded->config)) std::abort();  // dump must round-trip
  for (const auto& r : loaded->config.resources) {
    for (const auto& h : r.hosts) {
      for (const char* cmd : {"up", "down", "create-md", "show-gi", "primary"}) {
        (void)bsr::config::PlanCommand(loaded->config, h.Name(), cmd, r.name);
      }
      (void)bsr::config::ShQuery(loaded->config, h.Name(), "sh-ip", r.name);
    }
  }
  return 0;
}
