#include "fetch/sync.h"
