#include "forward/target.h"
