// bsrmeta: offline metadata tool (drbdmeta's command line); see meta/tool.h.
#include <iostream>
#include <string>
#include <vector>

#include "meta/tool.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return bsr::meta::RunBsrmeta(args, std::cout, std::cerr);
}
