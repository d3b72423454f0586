// Where the bundled data (default model, configs) lives. Looked up, in order:
// $MOERACK_DATA_DIR, <dir of the binary>/share/moerack (build tree), and
// <dir of the binary>/../share/moerack (after `cmake --install`).
#pragma once

#include <string>

#include "core/status.h"

namespace moerack {

StatusOr<std::string> FindDataDir();
// <data dir>/models/default, the model every --model flag defaults to.
StatusOr<std::string> DefaultModelDir();

}  // namespace moerack
