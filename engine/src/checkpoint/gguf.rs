//! GGUF import (owned by helper A; in progress).
