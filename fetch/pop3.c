#include "fetch/source.h"
