package main

import (
	"fmt"
	"net"
	"os"
)

// sdNotify sends state, newline-separated VAR=value assignments, to the
// service manager over the datagram socket named by $NOTIFY_SOCKET
// (sd_notify(3)); without $NOTIFY_SOCKET it does nothing. A name starting
// with "@" is in the abstract namespace, which Go's net package handles.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("failed to notify the service manager: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("failed to notify the service manager: %w", err)
	}
	return nil
}
