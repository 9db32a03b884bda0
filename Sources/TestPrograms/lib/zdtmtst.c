#include "zdtmtst.h"
