package main

// The Windows DPAPI master key: dpapi:machine or dpapi:user.
import _ "github.com/cofferfs/coffer/keys/dpapi"
