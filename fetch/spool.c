#include "fetch/spool.h"
