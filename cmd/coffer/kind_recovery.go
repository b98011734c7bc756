package main

// Recovery keys (recovery:): "coffer recovery new" and --recovery-key.
import _ "github.com/cofferfs/coffer/keys/recovery"
