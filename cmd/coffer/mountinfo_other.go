//go:build !linux

package main

// mountsOf returns no mount points: coffer mounts only on Linux.
func mountsOf(string) ([]string, error) { return nil, nil }

func staleMount(string) bool { return false }
