#include "fetch/seen.h"
