package main

// The azure-kv master key: azure-kv://VAULT.vault.azure.net/keys/NAME[/VERSION].
import _ "github.com/cofferfs/coffer/keys/azurekv"
