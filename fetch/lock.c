#include "fetch/lock.h"
