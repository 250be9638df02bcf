#include "forward/message.h"
