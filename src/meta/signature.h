// Detection of well-known on-disk signatures (file systems, swap, LVM) so create-md does
// not silently destroy data. Pure reads through MetaIo; any thread.
#pragma once

#include <string>

#include "common/status.h"
#include "meta/io.h"

namespace bsr::meta {

// Name and offset of a signature found in the area starting at `offset`
// ("ext2/ext3/ext4 file system at offset 1080"), or "" when none was found.
Result<std::string> DetectSignature(MetaIo& io, uint64_t offset);

}  // namespace bsr::meta
