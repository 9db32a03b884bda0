// Debian's libzstd-dev (ci/deps.sh): compression of checkpoint streams (docs/STREAM.md).
#include <zstd.h>
